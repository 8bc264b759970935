import ArgumentParser
import BisslCore
import Checkpoint
import Foundation

/// `bissl convert IN OUT`: file to file, with the same layout rules as `import`.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint between .pth, safetensors, .npz and bissl HDF5, or write its network as ONNX.",
        discussion: """
            The input format is detected from the file's bytes; the output format from --to or OUT's \
            extension. The output is written to a temporary name and renamed, so a failure leaves nothing; \
            the temporary of an earlier write of OUT that was killed (its process has ended) is removed.
            """)

    @Argument(help: "Input checkpoint (.pth zip or legacy, .safetensors, .npz, bissl .h5).")
    var input: String

    @Argument(help: "Output file.")
    var output: String

    @Option(help: "Output format: pth, safetensors, npz, h5 or onnx (default: from OUT's extension).")
    var to: OutputFormat?

    @OptionGroup var conversion: ConversionOptions

    @OptionGroup var writer: WriterOptions

    @Option(help: "Cast floating-point tensors to float16, bfloat16, float32 or float64 (also fp16, bf16, fp32, fp64; integer tensors are never cast; BN running statistics keep their precision on a narrowing cast).")
    var dtype: CastType?

    @Flag(help: "With --dtype: cast BN running statistics too.")
    var castBuffers = false

    /// True when both paths lead to one file (device and inode, symbolic links followed): a link
    /// between them, a hard link or a bind mount; false when either does not exist.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var x = stat(), y = stat()
        return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    func run() throws {
        try CommandLineHabits.requireFile(input)
        try CommandLineHabits.requireOutputFolder(output)
        guard let format = to ?? OutputFormat(path: output) else {
            throw ValidationError("cannot tell the output format from '\(output)': pass --to \(OutputFormat.fileNames)")
        }
        let inURL = URL(fileURLWithPath: input)
        let outURL = URL(fileURLWithPath: output)
        guard !Self.sameFile(input, output) else {   // the input exists (requireFile), so equal paths are caught too
            throw ValidationError("input and output are the same file")
        }
        try ZooOutput.refuseZooObjectsPath(output)
        try writer.check(format)
        // The source's SHA-256 is still being hashed: the writer waits for it last (`SourceDigest`).
        // A bissl .h5 whose stored content id does not match its tensors is refused, as `import` does.
        let loaded = try Interchange.loadDeferringDigest(inURL, options: conversion.layout, allowPlainTensors: true,
                                                         verifyStoredContentID: true)
        var checkpoint = loaded.checkpoint
        // A bissl file is taken as it is: its recorded rules did not run now.
        var rules = CheckpointFile.isHDF5(inURL) ? [] : checkpoint.provenance.source?.rules ?? []
        var warnings = CheckpointFile.isHDF5(inURL) ? [] : checkpoint.provenance.warnings
        if let dtype {
            let (cast, castWarnings) = try checkpoint.casting(to: dtype.dtype, castBuffers: castBuffers)
            checkpoint = cast
            rules.append(cast.provenance.source?.rules.last ?? "cast to \(dtype.rawValue)")
            warnings += castWarnings
        } else if castBuffers {
            throw ValidationError("--cast-buffers needs --dtype")
        }
        let notes = try writer.write(checkpoint, to: outURL, format: format, sourceDigest: loaded.sourceDigest)
        let tensors = checkpoint.components.values.reduce(0) { $0 + $1.count }
        let arch = checkpoint.architecture?.label ?? "unknown architecture"
        ZooOutput.printLine("wrote \(output.quotedPathIfNeeded) (\(format.rawValue), \(arch), \(tensors) tensors in \(checkpoint.components.keys.joined(separator: ", ")))")
        for rule in rules { ZooOutput.printLine("  rule: \(rule)") }
        for note in notes { ZooOutput.printLine("  note: \(note)") }
        for warning in warnings { ZooOutput.printLine("  warning: \(warning)") }
    }
}
