import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `bissl export REF -o FILE`: a zoo entry as a file other tools load.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a zoo entry as .pth, safetensors, .npz or bissl .h5.",
        discussion: """
            .pth, safetensors and .npz get one flat state dict (backbone and classifier keys as torchvision \
            names them, other heads prefixed with their component name); .h5 is the entry's own format with \
            its full provenance. The file is written to a temporary name and renamed.
            """)

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String

    @Option(name: .shortAndLong, help: "Output file.")
    var output: String

    @Option(help: "pth, safetensors, npz or h5 (default: from the output file's extension).")
    var format: InterchangeFormat?

    @Option(help: "Components to write: backbone or all.")
    var component: ComponentSelection = .all

    @Flag(help: "Write .pth in the legacy pre-1.6 stream format instead of zip.")
    var legacy = false

    @Flag(help: "Write .npz members deflated, as numpy.savez_compressed does.")
    var compress = false

    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        guard let format = format ?? Interchange.format(forPath: output) else {
            throw ValidationError("cannot tell the output format from '\(output)': pass --format pth|safetensors|npz|h5")
        }
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        try ZooOutput.refuseZooObjectsPath(output, objects: zoo.layout.objects)
        let id = try zoo.resolve(ref)
        let checkpoint = try zoo.checkpoint(id).selecting(component)
        let notes = try Interchange.write(checkpoint, to: URL(fileURLWithPath: output), format: format,
                                          legacy: legacy, compressed: compress)
        let tensors = checkpoint.components.values.reduce(0) { $0 + $1.count }
        print("wrote \(output) (\(format.rawValue), entry \(id.prefix(12)), \(tensors) tensors in \(checkpoint.components.keys.joined(separator: ", ")))")
        for note in notes { print("  note: \(note)") }
    }
}
