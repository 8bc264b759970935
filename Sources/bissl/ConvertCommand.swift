import ArgumentParser
import Checkpoint
import Foundation

/// `bissl convert IN OUT`: file to file, with the same layout rules as `import`.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint between .pth, safetensors, .npz and bissl HDF5.",
        discussion: """
            The input format is detected from the file's bytes; the output format from --to or OUT's \
            extension. The output is written to a temporary name and renamed, so a failure leaves nothing.
            """)

    @Argument(help: "Input checkpoint (.pth zip or legacy, .safetensors, .npz, bissl .h5).")
    var input: String

    @Argument(help: "Output file.")
    var output: String

    @Option(help: "Output format: pth, safetensors, npz or h5 (default: from OUT's extension).")
    var to: InterchangeFormat?

    @OptionGroup var conversion: ConversionOptions

    @Flag(help: "Write .pth in the legacy pre-1.6 stream format instead of zip.")
    var legacy = false

    @Flag(help: "Write .npz members deflated, as numpy.savez_compressed does.")
    var compress = false

    func run() throws {
        guard let format = to ?? Interchange.format(forPath: output) else {
            throw ValidationError("cannot tell the output format from '\(output)': pass --to pth|safetensors|npz|h5")
        }
        let inURL = URL(fileURLWithPath: input)
        let outURL = URL(fileURLWithPath: output)
        guard inURL.standardizedFileURL != outURL.standardizedFileURL else {
            throw ValidationError("input and output are the same file")
        }
        let checkpoint = try Interchange.load(inURL, options: conversion.layout, allowPlainTensors: true)
        let notes = try Interchange.write(checkpoint, to: outURL, format: format, legacy: legacy, compressed: compress)
        let tensors = checkpoint.components.values.reduce(0) { $0 + $1.count }
        let arch = checkpoint.architecture?.label ?? "unknown architecture"
        print("wrote \(output) (\(format.rawValue), \(arch), \(tensors) tensors in \(checkpoint.components.keys.joined(separator: ", ")))")
        for note in notes { print("  note: \(note)") }
        guard !CheckpointFile.isHDF5(inURL) else { return }  // a bissl file is taken as it is: no rules ran now
        for rule in checkpoint.provenance.source?.rules ?? [] { print("  rule: \(rule)") }
        for warning in checkpoint.provenance.warnings { print("  warning: \(warning)") }
    }
}
