import ArgumentParser
import BisslCore
import Checkpoint
import Foundation
import Zoo

/// `bissl show REF`: everything the zoo knows about one entry.
struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show an entry: provenance, architecture, components, tensor summary, metrics, lineage, warnings.")

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String

    @Flag(help: "List every tensor (name, dtype, shape).")
    var tensors = false

    @OptionGroup var zooOptions: ZooOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    struct TensorLine: Encodable { var component: String; var name: String; var dtype: String; var shape: [Int] }
    struct ParentLine: Encodable {
        var id: String
        var relation: String
        var note: String?
        /// listed, removed or unknown.
        var status: String
        var name: String?
        var stage: String?
    }
    struct Report: Encodable {
        var id: String
        var name: String?
        var tags: [String]
        var size: Int64
        var created: String
        var architecture: Architecture?
        var components: [String: EntryDetails.Component]
        var componentOrder: [String]
        var provenance: Provenance
        var metricHistory: [String: Int]
        var parents: [ParentLine]
        var children: [String]
        var warnings: [String]
        var tensors: [TensorLine]?
    }

    func run() throws {
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        let id = try zoo.resolve(ref)
        let record = try zoo.record(id)
        // The catalog row answers (details recorded when the entry was listed). The object is only
        // checked to be intact (one stat while its recorded file facts hold), opened for --tensors
        // (metadata, no tensor bytes), and read whole for a row from before schema version 2.
        let details: EntryDetails
        if let recorded = record.summary.details {
            try zoo.checkIntact(id)
            details = recorded
        } else {
            details = EntryDetails(try zoo.checkpoint(id))
        }
        guard let p = record.summary.provenance else {
            throw ZooError.corrupt("the catalog row of \(id.prefix(12)) holds unreadable provenance; rebuild the catalog with bissl verify --reindex")
        }
        let lines = try tensors ? zoo.tensorList(id).map { TensorLine(component: $0.component, name: $0.key, dtype: $0.dtype.rawValue, shape: $0.shape) } : nil
        let parents = try p.parents.map { parent -> ParentLine in
            if let r = try? zoo.record(parent.id) {
                return ParentLine(id: parent.id, relation: parent.relation, note: parent.note, status: "listed", name: r.name, stage: r.summary.stage)
            }
            if let t = try zoo.tombstone(parent.id) {
                return ParentLine(id: parent.id, relation: parent.relation, note: parent.note, status: "removed", name: t.labels.first, stage: t.stage)
            }
            return ParentLine(id: parent.id, relation: parent.relation, note: parent.note, status: "unknown", name: nil, stage: nil)
        }
        let report = Report(
            id: id, name: record.name, tags: record.tags, size: record.summary.size, created: record.summary.created,
            architecture: details.architecture, components: details.components, componentOrder: record.summary.components,
            provenance: p, metricHistory: details.metricHistory, parents: parents, children: try zoo.children(of: id),
            // The converter records BatchNorm findings in provenance.warnings, which the health scan
            // finds again: once each (as import prints them).
            warnings: p.warnings + details.health.filter { !p.warnings.contains($0) }, tensors: lines)
        if json { return try ZooOutput.printJSON(report) }
        printText(report)
    }

    /// One line of the text report (`ZooOutput.printLine`): provenance, file names and notes come
    /// from files (an imported or pulled entry's), and must neither move the terminal nor add lines.
    private func print(_ line: String) { ZooOutput.printLine(line) }

    private func printText(_ r: Report) {
        let p = r.provenance
        print("entry    \(r.id)")
        if let name = r.name { print("name     \(name)") }
        if !r.tags.isEmpty { print("tags     \(r.tags.joined(separator: ", "))") }
        if let step = p.carriedStep {
            print("carried  from \(step.fileName) (sha256 \(step.sha256)), imported \(step.importedAt): \(step.commandLine.joined(separator: " "))")
            print("         stage, parents, source, data, hyperparameters, seeds, metrics and tool below are that file's claims, not bissl's records")
        }
        print("stage    \(p.stage)\(p.method.map { " (\($0))" } ?? "")")
        print("created  \(r.created)   size \(ZooOutput.bytes(r.size))")
        if let a = r.architecture {
            let heads = a.heads.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.kind) \($0.value.dims.map(String.init).joined(separator: "->"))" }
            print("arch     \(a.label): \(a.family) depth \(a.depth), \(a.block) blocks \(a.layers.map(String.init).joined(separator: "-")), width \(a.width), \(a.stem) stem\(heads.isEmpty ? "" : "; heads: " + heads.joined(separator: ", "))")
        } else {
            print("arch     unknown")
        }
        print("components")
        for name in r.componentOrder {
            guard let c = r.components[name] else { continue }
            let dtypes = c.dtypes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            print("  \(name): \(c.tensors) tensors, \(c.parameters) values, \(ZooOutput.bytes(Int64(c.bytes))) (\(dtypes))")
        }
        if !r.parents.isEmpty {
            print(p.carriedFrom == nil ? "parents" : "parents (claimed by the file)")
            for parent in r.parents {
                let what = parent.status == "listed" ? (parent.name.map { "\($0), " } ?? "") + (parent.stage ?? "")
                    : parent.status == "removed" ? "removed\(parent.stage.map { ", was \($0)" } ?? "")\(parent.name.map { " '\($0)'" } ?? "")" : "not in this zoo"
                print("  \(parent.relation) \(parent.id.prefix(12)) (\(what))\(parent.note.map { ": \($0)" } ?? "")")
            }
        }
        if !r.children.isEmpty { print("children \(r.children.map { String($0.prefix(12)) }.joined(separator: ", "))") }
        if let s = p.source {
            print("source   \(s.fileName) (\(s.format), \(s.container)) sha256 \(s.sha256)")
            if !s.keyPath.isEmpty { print("  key path: \(s.keyPath)") }
            if let prefix = s.strippedPrefix { print("  stripped prefix: \(prefix)") }
            for rule in s.rules { print("  rule: \(rule)") }
            if !s.droppedKeys.isEmpty { print("  dropped \(s.droppedKeys.count) keys: \(s.droppedKeys.prefix(5).joined(separator: ", "))\(s.droppedKeys.count > 5 ? ", ..." : "")") }
            if !s.filledKeys.isEmpty { print("  filled \(s.filledKeys.count) keys: \(s.filledKeys.prefix(5).joined(separator: ", "))\(s.filledKeys.count > 5 ? ", ..." : "")") }
            if !s.locations.isEmpty { print("  storage locations: \(s.locations.joined(separator: ", "))") }
            for (k, v) in s.aliases.sorted(by: { $0.key < $1.key }) { print("  alias: \(k) = \(v)") }
        }
        for d in p.datasets { print("dataset  \(d.role): \(d.uri) (sha256 \(d.fingerprint.prefix(12)))") }
        if !p.hyperparameters.isEmpty {
            print("hyperparameters")
            for (k, v) in p.hyperparameters.sorted(by: { $0.key < $1.key }) { print("  \(k) = \(v)") }
        }
        if !p.seeds.isEmpty { print("seeds    \(p.seeds.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))") }
        if !p.metrics.isEmpty {
            print("metrics  \(p.metrics.sorted { $0.key < $1.key }.map { ZooOutput.metric($0.key, $0.value.isNaN ? nil : $0.value) }.joined(separator: ", "))")
        }
        if !r.metricHistory.isEmpty { print("history  \(r.metricHistory.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value) values)" }.joined(separator: ", "))") }
        print("tool     \(p.tool.name) \(p.tool.version)\(p.commandLine.isEmpty ? "" : ": " + p.commandLine.joined(separator: " "))")
        for w in r.warnings { print("warning: \(w)") }
        if let tensors = r.tensors {
            print("tensors")
            for t in tensors { print("  \(t.component)/\(t.name)  \(t.dtype)  [\(t.shape.map(String.init).joined(separator: ", "))]") }
        }
    }
}
