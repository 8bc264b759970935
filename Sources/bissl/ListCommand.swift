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

    @Option(help: ArgumentHelp("List the entries of this remote instead (reads manifests, no tensors); the name is needed even when the zoo has one remote.", valueName: "NAME"))
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
        /// The entry's record, metrics included, is carried from an imported bissl .h5: that file's claim.
        var carried: Bool
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
        func archMatches(_ label: String?) -> Bool { archName.map { name in label.map(name.matches(label:)) ?? false } ?? true }
        var table = TextTable(header: ["ID", "NAME", "STAGE", "METHOD", "ARCH", "PARENT", "DATASET", "METRIC", "CREATED", "SIZE"])
        let place: String
        if let remote {
            let config = try Remotes.select(remote, zooOptions.layout)
            let listing = try RemoteZoo(config).list()
            RemoteNotes.warn(listing.damaged)
            let records = listing.entries.filter { filter.matches($0) && archMatches($0.summary.arch) }
            place = "remote \(config.name) (\(config.url))"
            if json { return try printJSON(records) }
            for record in records { record.withListingRow { Self.append($0, to: &table) } }
        } else {
            let zoo = try zooOptions.open(readOnly: true)
            defer { try? zoo.close() }
            place = zoo.layout.root.path
            if json { return try printJSON(try zoo.list(filter, withProvenance: false).filter { archMatches($0.summary.arch) }) }
            // Rows go from SQLite's buffers into the table's bytes (`Zoo.visitListing`).
            try zoo.visitListing(filter) { row in
                if archName != nil, !archMatches(row.arch.map { String(decoding: $0, as: UTF8.self) }) { return }
                Self.append(row, to: &table)
            }
        }
        if table.rowCount == 1 {
            ZooOutput.printLine("no entries\(stage ?? method ?? arch ?? dataset ?? tag == nil ? "" : " match") in \(place)")
            return
        }
        var text = table.rendered()
        text.append(0x0A)
        ZooOutput.writeStandardOutput(text)
    }

    private func printJSON(_ records: [EntryRecord]) throws {
        try ZooOutput.printJSON(records.map { r in
            let s = r.summary
            return Row(id: r.id, shortID: r.shortID, name: r.name, tags: r.tags, stage: s.stage, method: s.method, arch: s.arch,
                       parents: s.parents, dataset: s.dataset, headlineMetric: s.headlineMetric, headlineValue: s.headlineValue,
                       carried: s.carried, metrics: s.metrics, created: s.created, size: s.size, tensors: s.tensorCount, components: s.components,
                       sourceFile: s.sourceFile)
        })
    }

    /// One table row: short id, name, stage, method, architecture, first parent (`+N` more),
    /// short dataset, headline metric under its meaningful name (followed by `(carried)` when the
    /// record is carried from an imported bissl .h5), creation minute, size; `-` for what an entry lacks.
    static func append(_ r: ListingRow, to table: inout TextTable) {
        let dash = "-"
        table.append(UnsafeRawBufferPointer(rebasing: r.id.prefix(12)))
        r.name.map { table.append($0) } ?? table.append(dash)
        table.append(r.stage)
        r.method.map { table.append($0) } ?? table.append(dash)
        r.arch.map { table.append($0) } ?? table.append(dash)
        if let parent = r.firstParent {
            table.extend(UnsafeRawBufferPointer(rebasing: parent.prefix(12)))
            if r.parentCount > 1 { table.extend("+\(r.parentCount - 1)") }
            table.endCell()
        } else {
            table.append(dash)
        }
        r.dataset.map { table.append(shortDataset(String(decoding: $0, as: UTF8.self))) } ?? table.append(dash)
        if let metric = r.headlineMetric {
            let name = MetricNames.meaningful(String(decoding: metric, as: UTF8.self), stage: String(decoding: r.stage, as: UTF8.self))
            // A carried record's metric is the imported file's claim (`show` says so at length).
            table.append(ZooOutput.metric(name, r.headlineValue) + (r.carried ? " (carried)" : ""))
        } else {
            table.append(dash)
        }
        table.extend(UnsafeRawBufferPointer(rebasing: r.created.prefix(16)), replacing: UInt8(ascii: "T"), with: UInt8(ascii: " "))
        table.endCell()
        table.append(ZooOutput.bytes(r.size))
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
