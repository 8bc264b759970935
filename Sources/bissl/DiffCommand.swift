import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `bissl diff A B`: what changed between two checkpoints.
struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two entries: per-tensor weight changes, BN statistics, per-stage summary, provenance.",
        discussion: """
            A and B are zoo REFs (id, unique id prefix of 6+ hex digits, name or tag); a path to a checkpoint \
            file that names no entry is read as bissl convert reads it. Per tensor: added, removed, changed or \
            unchanged, L2 norm of the change, relative change, cosine similarity, max abs difference; BN running \
            statistics and counters have their own sections. The summary comes first; each tensor table lists \
            the 10 largest changes. Command lines are compared option by option. Times, durations and the \
            derived seeds (the `seed` setting stays visible) are hidden: --all shows them and every tensor.
            """)

    @Argument(help: "First entry (or checkpoint file).")
    var a: String
    @Argument(help: "Second entry (or checkpoint file).")
    var b: String
    @Option(help: "Tensors to list: changed or all.")
    var tensors: CheckpointDiff.TensorListing = .changed
    @Flag(help: "Show everything: volatile provenance keys (times, durations, derived seeds) and every changed tensor.")
    var all = false
    @Flag(name: .customLong("no-provenance"), help: "Leave out provenance and hyperparameter differences (weights and architecture only).")
    var noProvenance = false
    @OptionGroup var zooOptions: ZooOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        // Without a zoo both sides must be files; a zoo that exists but cannot be opened is an error.
        let zoo: Zoo? = Zoo.isZoo(zooOptions.layout) ? try zooOptions.open(readOnly: true) : nil
        defer { try? zoo?.close() }
        let (checkpointA, labelA) = try load(a, zoo: zoo)
        let (checkpointB, labelB) = try load(b, zoo: zoo)
        var diff = try CheckpointDiff(checkpointA, checkpointB, labelA: labelA, labelB: labelB, listing: tensors)
        if !all { diff = diff.hidingVolatile() }
        if noProvenance { diff = diff.withoutProvenance() }
        if json {
            printJSONText(try DiffJSONRenderer.render(diff), terminator: "")
        } else {
            print(DiffTextRenderer.render(diff, maxTensorRows: all || tensors == .all ? nil : 10), terminator: "")
        }
    }

    /// A zoo entry by REF, else a checkpoint file at that path.
    private func load(_ ref: String, zoo: Zoo?) throws -> (Checkpoint, String) {
        var refError: Error?
        if let zoo {
            do {
                let id = try zoo.resolve(ref)
                let record = try zoo.record(id)
                return (try zoo.checkpoint(id), ZooOutput.label(id, record.name))
            } catch let error as ZooError {
                if case .invalid = error {
                    refError = error
                } else {
                    throw error
                }
            }
        }
        if FileManager.default.fileExists(atPath: ref) {
            let checkpoint: Checkpoint
            do {
                checkpoint = try Interchange.load(URL(fileURLWithPath: ref), options: LayoutOptions(), allowPlainTensors: true)
            } catch CheckpointError.ambiguous(let message) {
                // diff has no --select: the way to choose is importing the file with one.
                var found = message.components(separatedBy: "pick one with --select").first ?? message
                while let last = found.last, last == " " || last == ";" || last == ":" { found.removeLast() }
                throw CLIError("\(ref): \(found); bissl diff cannot choose: import it with bissl import \(ref) --select KEYPATH first and diff the entry")
            }
            return (checkpoint, URL(fileURLWithPath: ref).lastPathComponent)
        }
        // A REF written as a path (a folder in it, or a checkpoint's extension) that names no file
        // gets the one wording for a missing file; a bare word stays a question about the zoo.
        let ext = URL(fileURLWithPath: ref).pathExtension.lowercased()
        if ref.contains("/") || ["h5", "pth", "pt", "bin", "ckpt", "safetensors", "npz", "tar"].contains(ext) {
            let zooPart = zoo == nil ? "" : ", and no entry, name or tag '\(ref)' in the zoo at \(zooOptions.layout.root.path)"
            throw CLIError("cannot read \(ref.quotedPathIfNeeded): no such file\(zooPart)")
        }
        throw refError ?? CLIError("'\(ref)' is neither a checkpoint file nor an entry: \(zooOptions.layout.root.path) is not a zoo")
    }
}

extension CheckpointDiff.TensorListing: ExpressibleByArgument {}
