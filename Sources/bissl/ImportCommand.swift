import ArgumentParser
import Checkpoint
import Foundation
import Publish
import Zoo

/// `bissl import FILE`: a checkpoint file becomes an immutable zoo entry.
struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Add a checkpoint file to the zoo as an immutable, content-addressed entry.",
        discussion: """
            FILE is read by what its bytes are (.pth zip or legacy, safetensors, .npz, bissl .h5) and resolved \
            to a ResNet layout with the same rules as bissl convert; the rules applied are recorded in the \
            entry's provenance. A folder is read as a Hub-style model folder (model.safetensors, config.json, \
            README.md, as bissl export --to hub writes it): config.json is checked against the weights, and it \
            and the card are recorded in provenance. Prints the entry id. Importing content the zoo already \
            holds changes nothing.
            """)

    @Argument(help: "Checkpoint file (or Hub-style model folder) to import.")
    var file: String

    @Option(help: "Name of the new entry (unique in the zoo).")
    var name: String?

    @Option(name: .customLong("tag"), help: ArgumentHelp("Tag for the new entry (repeatable).", valueName: "T"))
    var tags: [String] = []

    @OptionGroup var conversion: ConversionOptions
    @OptionGroup var zooOptions: ZooOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    struct Report: Encodable {
        var id: String
        var added: Bool
        var name: String?
        var tags: [String]
        var size: Int64
        var labelsAdded: [String]
        var labelsRestored: [String]
        var labelsNotRestored: [String]
        var arch: String?
        var components: [String: Int]
        var rules: [String]
        var warnings: [String]
    }

    func run() throws {
        // Read the file first: a file that cannot be imported leaves no trace, not even a new zoo.
        try CommandLineHabits.requireFile(file)
        let url = URL(fileURLWithPath: file)
        var isFolder: ObjCBool = false
        // A converted file's SHA-256 is still being hashed: the zoo's writer waits for it last (`SourceDigest`).
        let (checkpoint, sourceDigest) = FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) && isFolder.boolValue
            ? (try HubFolder.read(url, options: conversion.layout), nil)
            : try Interchange.loadDeferringDigest(url, options: conversion.layout, allowPlainTensors: false, verifyStoredContentID: true,
                                                  recordCarriedStep: true)
        let result = try zooOptions.adding { zoo in try zoo.add(checkpoint, name: name, tags: tags, sourceDigest: sourceDigest) }
        // The loader records BatchNorm findings in provenance.warnings, which HealthCheck finds again: once each.
        var seen = Set<String>()
        let health = result.health ?? HealthCheck.warnings(checkpoint)
        let warnings = (checkpoint.provenance.warnings + health).filter { seen.insert($0).inserted }
        let report = Report(
            id: result.id, added: result.added, name: result.name, tags: result.tags, size: result.size, labelsAdded: result.labelsAdded,
            labelsRestored: result.labelsRestored, labelsNotRestored: result.labelsNotRestored,
            arch: checkpoint.architecture?.label,
            components: Dictionary(uniqueKeysWithValues: checkpoint.components.map { ($0.key, $0.value.count) }),
            rules: checkpoint.provenance.source?.rules ?? [], warnings: warnings)
        if json { return try ZooOutput.printJSON(report) }
        print(result.id)
        if result.added {
            let parts = checkpoint.components.map { "\($0.key) \($0.value.count)" }.joined(separator: ", ")
            ZooOutput.printLine("imported \(ZooOutput.label(result.id, result.name)): \(report.arch ?? "unknown architecture"), tensors: \(parts), \(ZooOutput.bytes(result.size))")
            for rule in report.rules { ZooOutput.printLine("  rule: \(rule)") }
            if !result.labelsRestored.isEmpty {
                ZooOutput.printLine("  restored \(result.labelsRestored.joined(separator: ", ")): the labels this content had before bissl gc unlisted it as damaged")
            }
            if !result.labelsNotRestored.isEmpty {
                ZooOutput.printLine("  not restored: \(result.labelsNotRestored.joined(separator: ", ")) (another entry holds it now, or this import names the entry otherwise)")
            }
        } else {
            if result.labelsAdded.isEmpty {
                ZooOutput.printLine("already in the zoo as \(ZooOutput.label(result.id, result.name)): identical content, nothing changed")
            } else {
                ZooOutput.printLine("already in the zoo as \(ZooOutput.label(result.id, result.name)): identical content; added label\(result.labelsAdded.count == 1 ? "" : "s") \(result.labelsAdded.joined(separator: ", ")) to it")
            }
        }
        for warning in warnings { ZooOutput.printLine("  warning: \(warning)") }
    }
}
