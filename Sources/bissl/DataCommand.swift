import ArgumentParser
import Checkpoint
import Datasets
import Foundation

/// `bissl data ...`: look at image datasets (`idx:`, `cifar:`, `folder:`, `h5:` URIs).
struct DataGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Inspect image datasets (idx:DIR, cifar:DIR, folder:DIR, h5:FILE, with #part=train|test and #split=FILE).",
        subcommands: [DataInfo.self])
}

/// `bissl data info URI`: classes, counts per class, image sizes, channels and fingerprint, after
/// decoding every image once.
struct DataInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Decode every image of a dataset and show its classes, counts per class, image sizes and fingerprint.")

    @Argument(help: "Dataset URI: idx:DIR, cifar:DIR, folder:DIR or h5:FILE, optionally #part=train|test and/or #split=FILE (joined with &).")
    var uri: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Fail on the first image that cannot be decoded (default: skip it with a warning).")
    var strict = false

    struct Report: Encodable {
        struct ClassLine: Encodable { var label: Int; var name: String; var count: Int }
        struct SizeLine: Encodable { var height: Int; var width: Int; var count: Int }
        struct SkippedLine: Encodable { var file: String; var reason: String }
        var uri: String
        var scheme: String
        var part: String?
        var split: String?
        var count: Int
        var classes: [ClassLine]
        var sizes: [SizeLine]
        var minSize: SizeLine?
        var maxSize: SizeLine?
        var channels: Int
        var sourceChannels: [String: Int]
        var skipped: [SkippedLine]
        var fingerprint: String
    }

    func run() throws {
        do {
            let dataset = try ImageDataset(parsing: uri)
            let summary = try dataset.scan(onCorrupt: strict ? .fail : .skip)
            let sizes = summary.sizes.sorted { $0.key < $1.key }.map { Report.SizeLine(height: $0.key.height, width: $0.key.width, count: $0.value) }
            let byArea = sizes.sorted { ($0.height * $0.width, $0.height) < ($1.height * $1.width, $1.height) }
            let channelNames = [1: "gray", 2: "gray+alpha", 3: "rgb", 4: "rgba"]
            let report = Report(
                uri: uri, scheme: dataset.uri.scheme.rawValue,
                part: dataset.uri.scheme == .folder ? nil : dataset.uri.part.rawValue,
                split: dataset.uri.splitFile, count: dataset.count,
                classes: summary.classNames.enumerated().map { .init(label: $0.offset, name: $0.element, count: summary.countsPerClass[$0.offset]) },
                sizes: sizes, minSize: byArea.first, maxSize: byArea.last, channels: 3,
                sourceChannels: Dictionary(uniqueKeysWithValues: summary.sourceChannels.map { (channelNames[$0.key] ?? "\($0.key)", $0.value) }),
                skipped: summary.skipped.map { .init(file: $0.name, reason: $0.reason) },
                fingerprint: try dataset.fingerprint())
            for s in summary.skipped {
                FileHandle.standardError.write(Data("warning: skipped \(s.reason)\n".utf8))
            }
            if !summary.skipped.isEmpty {
                FileHandle.standardError.write(Data("warning: skipped \(summary.skipped.count) image(s) that could not be decoded (use --strict to fail instead)\n".utf8))
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                printText(report)
            }
        } catch let error as DatasetError {
            throw CheckpointError.invalid(error.description)
        }
    }

    private func printText(_ r: Report) {
        print("dataset: \(r.uri)")
        print("format: \(r.scheme)\(r.part.map { ", part \($0)" } ?? "")\(r.split.map { ", split \($0)" } ?? "")")
        print("images: \(r.count)")
        print("classes: \(r.classes.count)")
        let width = r.classes.map(\.name.count).max() ?? 1
        for c in r.classes {
            print("  \(String(repeating: " ", count: max(0, 3 - String(c.label).count)))\(c.label)  \(c.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(c.count)")
        }
        if r.sizes.count <= 8 {
            print("image sizes (HxW): " + r.sizes.map { "\($0.height)x\($0.width) (\($0.count))" }.joined(separator: ", "))
        } else if let lo = r.minSize, let hi = r.maxSize {
            print("image sizes (HxW): \(r.sizes.count) distinct, smallest \(lo.height)x\(lo.width), largest \(hi.height)x\(hi.width)")
        }
        print("channels: 3 (RGB); in the files: " + r.sourceChannels.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if !r.skipped.isEmpty { print("skipped: \(r.skipped.count) undecodable image(s)") }
        print("fingerprint: sha256:\(r.fingerprint)")
    }
}
