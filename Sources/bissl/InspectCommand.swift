import ArgumentParser
import Checkpoint
import Foundation

/// `bissl inspect FILE`: what a file is and what `import` would do with it, without writing anything.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a checkpoint file is: format, tensors, candidate state dicts, the rules import would apply.")

    @Argument(help: "Checkpoint file (.pth, .safetensors, .npz, bissl .h5) or anything else to identify.")
    var file: String

    @OptionGroup var conversion: ConversionOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    /// The report, printed as text or JSON.
    struct Report: Encodable {
        struct TensorLine: Encodable { var name: String; var dtype: String; var shape: [Int]; var location: String? }
        struct CandidateLine: Encodable {
            var select: String; var prefix: String; var tensors: Int; var arch: String?
            var matched: Int; var total: Int; var score: Double; var complete: Bool
            /// Why backbone keys fit no ResNet (`Candidate.misfit`).
            var misfit: String?
        }
        var file: String
        var bytes: Int
        var kind: String
        var format: String?
        var container: String?
        var metadata: [String: String] = [:]
        var tensors: [TensorLine] = []
        var candidates: [CandidateLine] = []
        var architecture: String?
        var components: [String: Int] = [:]
        var rules: [String] = []
        var importError: String?
        var warnings: [String] = []
        var provenance: Provenance?
    }

    func run() throws {
        let url = URL(fileURLWithPath: file)
        try CommandLineHabits.requireFile(file)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else {
            throw CLIError("cannot read \(file): permission denied")
        }
        let kind = try FileSniffer.sniff(url)
        var report = Report(file: file, bytes: (attributes[.size] as? Int) ?? 0, kind: kind.describe(url.lastPathComponent))
        switch kind {
        case .hdf5:
            let checkpoint = try UntrustedCheckpointFile.read(url).checkpoint
            report.format = InterchangeFormat.h5.rawValue
            report.container = "bissl-h5"
            for (component, tensors) in checkpoint.components {
                report.components[component] = tensors.count
                for (key, t) in tensors {
                    report.tensors.append(.init(name: "\(component)/\(key)", dtype: t.dtype.rawValue, shape: t.shape))
                }
            }
            report.architecture = checkpoint.architecture?.label
            report.provenance = checkpoint.provenance
            report.warnings = checkpoint.provenance.warnings
        case .pytorchZip, .pytorchLegacy, .safetensors, .npz:
            let document = try Interchange.readSource(url)
            report.format = document.format.rawValue
            report.container = document.container
            report.metadata = document.metadata
            report.warnings = document.warnings
            report.tensors = document.root.tensorPaths().map {
                .init(name: $0.path, dtype: $0.tensor.tensor.dtype.rawValue, shape: $0.tensor.tensor.shape, location: $0.tensor.location)
            }
            report.candidates = LayoutResolver.candidates(document).map {
                .init(select: $0.selector, prefix: $0.prefix, tensors: $0.tensorCount, arch: $0.architecture?.label,
                      matched: $0.matched, total: $0.total, score: $0.score, complete: $0.complete, misfit: $0.misfit)
            }
            do {
                let resolution = try LayoutResolver.resolve(document, options: conversion.layout)
                report.architecture = resolution.architecture.label
                report.components = resolution.components.reduce(into: [:]) { $0[$1.key] = $1.value.count }
                report.rules = resolution.rules
                report.warnings += resolution.warnings
            } catch {
                report.importError = String(describing: error)
            }
        default:
            throw CLIError(report.kind)
        }
        if json {
            try ZooOutput.printJSON(report)
        } else {
            printText(report)
        }
    }

    private func printText(_ r: Report) {
        ZooOutput.printLine("\(r.kind), \(r.bytes) bytes")
        ZooOutput.printLine("format: \(r.format ?? "?") (\(r.container ?? "?"))")
        for (k, v) in r.metadata.sorted(by: { $0.key < $1.key }) where k != "bissl.provenance" { ZooOutput.printLine("  \(k): \(v)") }
        ZooOutput.printLine("tensors: \(r.tensors.count)")
        for t in r.tensors {
            let location = t.location.map { $0 == "cpu" ? "" : "  (\($0))" } ?? ""
            ZooOutput.printLine("  \(t.name)  \(t.dtype)  \(t.shape)\(location)")
        }
        if !r.candidates.isEmpty {
            ZooOutput.printLine("candidate state dicts:")
            for c in r.candidates {
                let name = c.select.isEmpty ? "<root>" : c.select
                if let arch = c.arch {
                    ZooOutput.printLine("  \(name)  \(arch)  matched \(c.matched)/\(c.total)  score \(String(format: "%.2f", c.score))\(c.complete ? "  complete" : "")")
                } else if let misfit = c.misfit {
                    ZooOutput.printLine("  \(name)  \(c.tensors) tensors, ResNet backbone keys that fit no ResNet: \(misfit)")
                } else {
                    ZooOutput.printLine("  \(name)  \(c.tensors) tensors, no ResNet backbone keys")
                }
            }
        }
        if let arch = r.architecture { ZooOutput.printLine("architecture: \(arch)") }
        if !r.components.isEmpty {
            ZooOutput.printLine("components: " + r.components.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value) tensors)" }.joined(separator: ", "))
        }
        if !r.rules.isEmpty {
            ZooOutput.printLine("import would apply:")
            for rule in r.rules { ZooOutput.printLine("  \(rule)") }
        }
        if let error = r.importError { ZooOutput.printLine("import would fail: \(error)") }
        if let p = r.provenance {
            ZooOutput.printLine("provenance: stage \(p.stage)\(p.method.map { ", method \($0)" } ?? "")\(p.source.map { ", from \($0.fileName) (\($0.format), sha256 \($0.sha256.prefix(12)))" } ?? "")")
        }
        if !r.warnings.isEmpty {
            ZooOutput.printLine("warnings:")
            for w in r.warnings { ZooOutput.printLine("  \(w)") }
        }
    }
}
