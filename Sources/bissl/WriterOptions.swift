import ArgumentParser
import Checkpoint
import Foundation
import Publish

/// What `export` and `convert` can write: the interchange formats (`Interchange`), the ONNX graph
/// of the network (`ONNXExport`) and, for `export` only, a Hub-style folder (`HubFolder`).
enum OutputFormat: String, CaseIterable, ExpressibleByArgument {
    case pth, safetensors, npz, h5, onnx, hub

    /// The format a path's extension names (`Interchange.format(forPath:)`, and `.onnx`); nil otherwise.
    init?(path: String) {
        if URL(fileURLWithPath: path).pathExtension.lowercased() == "onnx" {
            self = .onnx
        } else if let format = Interchange.format(forPath: path) {
            self.init(rawValue: format.rawValue)
        } else {
            return nil
        }
    }

    /// The tensor format; nil for ONNX and hub folders.
    var interchange: InterchangeFormat? { InterchangeFormat(rawValue: rawValue) }

    /// The single-file formats, as `a|b|c` for messages.
    static let fileNames = allCases.filter { $0 != .hub }.map(\.rawValue).joined(separator: "|")
}

/// Writer options shared by `export` and `convert`: each applies to one output format and is refused
/// for any other, and `write` is the one place both commands dispatch on the format.
struct WriterOptions: ParsableArguments {
    @Flag(help: "Write .pth in the legacy pre-1.6 stream format instead of zip.")
    var legacy = false

    @Flag(help: "Write .npz members deflated, as numpy.savez_compressed does.")
    var compress = false

    @Option(name: .customLong("bf16"), help: ArgumentHelp(
        "bfloat16 tensors in .npz: float32 (exact upcast, the default) or bits (uint16 bit patterns under the same keys, listed in the member dtypes.json; read back as bfloat16).",
        valueName: "float32|bits"))
    var bfloat16: NumPyArchive.BFloat16Encoding?

    @Flag(help: "ONNX: output the pooled backbone features instead of the classifier's logits.")
    var features = false

    @Flag(name: .customLong("fold-bn"), help: "ONNX: fold each BatchNorm into the convolution before it.")
    var foldBatchNorm = false

    var interchange: Interchange.WriteOptions {
        Interchange.WriteOptions(legacy: legacy, compressed: compress, bfloat16: bfloat16)
    }

    /// Refuses options `format` does not use, before anything is read or written.
    /// - Throws: `CLIError` naming the option and the format.
    func check(_ format: OutputFormat) throws {
        let onnxOnly = [("--features", features), ("--fold-bn", foldBatchNorm)]
        let tensorOnly = [("--legacy", "pth", legacy), ("--compress", "npz", compress), ("--bf16", "npz", bfloat16 != nil)]
        if let interchange = format.interchange {
            try Interchange.checkOptions(format: interchange, options: self.interchange)
        } else {
            for (flag, owner, set) in tensorOnly where set {
                throw CLIError("\(flag) applies only to \(owner) output, not \(format.rawValue)")
            }
        }
        if format != .onnx {
            for (flag, set) in onnxOnly where set {
                throw CLIError("\(flag) applies only to onnx output, not \(format.rawValue)")
            }
        }
    }

    /// Writes `checkpoint` as the file format `format` (atomically), `provenance.source.sha256`
    /// completed by `sourceDigest` when given (`Interchange.write`), after removing what killed
    /// writes of `url` left beside it (`removeAbandonedTemporaries`).
    /// - Returns: the writer's notes, one line each (the temporaries removed first).
    /// - Throws: `CLIError` for `.hub` (a folder needs the zoo's lineage:
    ///   `bissl export REF --to hub DIR`), and as `check` and the writers.
    func write(_ checkpoint: Checkpoint, to url: URL, format: OutputFormat, sourceDigest: SourceDigest? = nil) throws -> [String] {
        try check(format)
        if format == .hub {
            throw CLIError("hub folders are written from the zoo (the card needs the lineage): bissl export REF --to hub DIR")
        }
        let removed = Self.removeAbandonedTemporaries(of: url)
        switch format {
        case .onnx:
            return removed + (try ONNXExport.write(try sourceDigest?.completing(checkpoint) ?? checkpoint, to: url,
                                                   options: .init(features: features, foldBatchNorm: foldBatchNorm)))
        default:
            return removed + (try Interchange.write(checkpoint, to: url, format: format.interchange!, options: self.interchange,
                                                    sourceDigest: sourceDigest))
        }
    }

    /// Removes the temporaries that earlier writes of `url` left when they were killed (SIGKILL: no
    /// handler runs; `TemporaryFiles.removeAbandoned` says which files qualify), one note each.
    static func removeAbandonedTemporaries(of url: URL, stagingFiles: Set<String> = []) -> [String] {
        let (removed, kept) = TemporaryFiles.removeAbandoned(for: url, stagingFiles: stagingFiles)
        return removed.map {
            "removed \($0.path) (\(ZooOutput.bytes($0.bytes))), left by an earlier write of this output that did not finish: no process holds its lock"
        } + kept.map { "kept \($0.path), named like a temporary of this output: \($0.reason); remove it yourself if it is not needed" }
    }
}

extension NumPyArchive.BFloat16Encoding: ExpressibleByArgument {}
