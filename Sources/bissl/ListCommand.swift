import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `bissl list`: the zoo's entries, newest first.
struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List zoo entries (newest first), optionally filtered.")

    @Option(help: "Only this stage: imported, pretext, bissl, finetune, probe.")
    var stage: String?
    @Option(help: "Only this method (simclr, byol, bissl, ...).")
    var method: String?
    @Option(help: ArgumentHelp("Only this architecture, matching the parts given: resnet50 matches resnet50-w1-small, resnet50-small matches resnet50-w8-small, resnet50-w64 matches resnet50.", valueName: "NAME"))
    var arch: String?
    @Option(help: "Only entries whose dataset URI contains this text.")
    var dataset: String?
    @Option(help: "Only entries with a name or tag matching this glob pattern (best-*).")
    var tag: String?

    @Option(help: ArgumentHelp("List the entries of this remote instead (reads manifests, no tensors).", valueName: "NAME"))
    var remote: String?

    @OptionGroup var zooOptions: ZooOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    struct Row: Encodable {
        var id: String
        var shortID: String
        var name: String?
        var tags: [String]
        var stage: String
        var method: String?
        var arch: String?
        var parents: [Provenance.Parent]
        var dataset: String?
        var headlineMetric: String?
        var headlineValue: Double?
        var metrics: [String: Double]
        var created: String
        var size: Int64
        var tensors: Int
        var components: [String]
        var sourceFile: String?
    }

    func run() throws {
        if let stage, !ProvenanceCheck.stages.contains(stage) {
            throw CLIError("unknown stage '\(stage)': use one of imported, pretext, bissl, finetune, probe")
        }
        let filter = ListFilter(stage: stage, method: method, dataset: dataset, tag: tag)
        let archName = try arch.map { try ArchitectureName(parsing: $0) }
        var records: [EntryRecord]
        let place: String
        if let remote {
            let config = try Remotes.select(remote, zooOptions.layout)
            records = try RemoteZoo(config).list().filter(filter.matches)
            place = "remote \(config.name) (\(config.url))"
        } else {
            let zoo = try zooOptions.open(readOnly: true)
            defer { try? zoo.close() }
            records = try zoo.list(filter, withProvenance: false)
            place = zoo.layout.root.path
        }
        records = records.filter { r in archName.map { name in r.summary.arch.map(name.matches(label:)) ?? false } ?? true }
        if json {
            return try ZooOutput.printJSON(records.map { r in
                let s = r.summary
                return Row(id: r.id, shortID: r.shortID, name: r.name, tags: r.tags, stage: s.stage, method: s.method, arch: s.arch,
                           parents: s.parents, dataset: s.dataset, headlineMetric: s.headlineMetric, headlineValue: s.headlineValue,
                           metrics: s.metrics, created: s.created, size: s.size, tensors: s.tensorCount, components: s.components,
                           sourceFile: s.sourceFile)
            })
        }
        if records.isEmpty {
            print("no entries\(stage ?? method ?? arch ?? dataset ?? tag == nil ? "" : " match") in \(place)")
            return
        }
        let rows = records.map { r -> [String] in
            let s = r.summary
            let parent = s.parents.first.map { String($0.id.prefix(12)) + (s.parents.count > 1 ? "+\(s.parents.count - 1)" : "") } ?? "-"
            return [r.shortID, r.name ?? "-", s.stage, s.method ?? "-", s.arch ?? "-", parent,
                    s.dataset.map(Self.shortDataset) ?? "-",
                    s.headlineMetric == nil ? "-" : ZooOutput.metric(s.headlineMetric.map { MetricNames.meaningful($0, stage: s.stage) }, s.headlineValue),
                    String(decoding: s.created.utf8.prefix(16).map { $0 == UInt8(ascii: "T") ? UInt8(ascii: " ") : $0 }, as: UTF8.self),
                    ZooOutput.bytes(s.size)]
        }
        print(ZooOutput.table(["ID", "NAME", "STAGE", "METHOD", "ARCH", "PARENT", "DATASET", "METRIC", "CREATED", "SIZE"], rows))
    }

    /// A dataset URI in a few characters: the last path component of the dataset, plus the split
    /// file's name or `#test` (`digits.h5#train.txt`, `fashion-mnist#test`).
    static func shortDataset(_ uri: String) -> String {
        let parts = uri.split(separator: "#", maxSplits: 1).map(String.init)
        let base = parts[0].split(separator: "/").last.map(String.init) ?? parts[0]
        guard parts.count == 2 else { return base }
        let fragment = parts[1].split(separator: "&").map { option -> String in
            option.hasPrefix("split=") ? (option.split(separator: "/").last.map(String.init) ?? String(option)) : String(option)
        }
        return base + "#" + fragment.joined(separator: "&")
    }
}
