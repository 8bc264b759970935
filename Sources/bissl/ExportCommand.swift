import ArgumentParser
import BisslCore
import Checkpoint
import Foundation
import Publish
import Training
import Zoo

/// `bissl export REF -o FILE` (or `--to hub DIR`): a zoo entry as a file, or a Hub-style folder,
/// that other tools load.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a zoo entry as .pth, safetensors, .npz, bissl .h5, an ONNX graph or a Hub-style folder.",
        discussion: """
            .pth, safetensors and .npz get one flat state dict (backbone and classifier keys as torchvision \
            names them, other heads prefixed with their component name); .h5 is the entry's own format with \
            its full provenance. .onnx is the eval-mode network (backbone and classifier, or --features for the \
            pooled features; --fold-bn folds BatchNorm into the convolutions). --to hub DIR writes a folder as \
            timm publishes models: model.safetensors, config.json and README.md (the model card, as bissl card \
            writes it). Files are written to a temporary name and renamed; the temporary of an earlier \
            write of the same output that was killed (its process has ended) is removed.
            """)

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String

    @Argument(help: ArgumentHelp("Output file or folder (instead of -o).", valueName: "OUT"))
    var destination: String?

    @Option(name: .shortAndLong, help: "Output file (a folder with --to hub).")
    var output: String?

    @Option(name: [.customLong("format"), .customLong("to")],
            help: "pth, safetensors, npz, h5, onnx or hub (default: from the output file's extension).")
    var format: OutputFormat?

    @Option(help: "Components to write: backbone or all.")
    var component: ComponentSelection = .all

    @OptionGroup var writer: WriterOptions

    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        guard (output == nil) != (destination == nil) else {
            throw ValidationError(output == nil ? "name the output: -o FILE, or OUT after REF" : "name the output once: -o FILE or OUT, not both")
        }
        let output = output ?? destination!
        try CommandLineHabits.requireOutputFolder(output, folderAllowed: format == .hub)
        guard let format = format ?? OutputFormat(path: output) else {
            throw ValidationError("cannot tell the output format from '\(output)': pass --format \(OutputFormat.allCases.map(\.rawValue).joined(separator: "|"))")
        }
        try writer.check(format)
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        try ZooOutput.refuseZooObjectsPath(output, objects: zoo.layout.objects)
        let id = try zoo.resolve(ref)
        // Only the backbone's tensors are read when only the backbone is exported (and the entry has one).
        var only: Set<String>?
        if component == .backbone, try zoo.record(id).summary.components.contains("backbone") { only = ["backbone"] }
        let checkpoint = try zoo.checkpoint(id, components: only).selecting(component)
        let url = URL(fileURLWithPath: output)
        let notes: [String]
        if format == .hub {
            let lineage = try CardLineage.gather(zoo, id: id)
            let removed = WriterOptions.removeAbandonedTemporaries(of: url, stagingFiles: HubFolder.files)
            notes = try removed + HubFolder.write(checkpoint, id: id, lineage: lineage, preprocessing: .init(lineage: lineage), to: url)
            ZooOutput.printLine("wrote \(output.quotedPathIfNeeded)/ (hub folder of entry \(id.prefix(12)): \(HubFolder.weightsFile), \(HubFolder.configFile), \(HubFolder.cardFile))")
        } else {
            notes = try writer.write(checkpoint, to: url, format: format)
            let tensors = checkpoint.components.values.reduce(0) { $0 + $1.count }
            ZooOutput.printLine("wrote \(output.quotedPathIfNeeded) (\(format.rawValue), entry \(id.prefix(12)), \(tensors) tensors in \(checkpoint.components.keys.joined(separator: ", ")))")
        }
        for note in notes { ZooOutput.printLine("  note: \(note)") }
    }
}
