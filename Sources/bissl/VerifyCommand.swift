import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `bissl verify [REF ...] [--reindex]`.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check entries: content ids recomputed, files readable, provenance valid, health warnings.",
        discussion: """
            Without REF, checks every entry and reports files interrupted writers left (bissl gc removes \
            them). Exits 1 when an entry is damaged; health warnings and leftovers do not fail. --reindex \
            first rebuilds the catalog from the object, ref and tombstone files alone.
            """)

    @Argument(help: "Entries to check (default: all).")
    var refs: [String] = []
    @Flag(help: "Rebuild the catalog from the zoo's files before checking.")
    var reindex = false
    @OptionGroup var zooOptions: ZooOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false

    struct Output: Encodable {
        var reindex: ReindexReport?
        var report: VerifyReport
    }

    func run() throws {
        var reindexed: ReindexReport?
        if reindex { reindexed = try Zoo.reindex(zooOptions.layout) }
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        let report = try zoo.verify(refs.isEmpty ? nil : refs)
        if json {
            try ZooOutput.printJSON(Output(reindex: reindexed, report: report))
        } else {
            if let r = reindexed {
                if let aside = r.movedAside { print("moved the damaged catalog to \(aside)") }
                print("reindexed: \(r.entries) entries, \(r.labels) labels, \(r.tombstones) tombstones")
                for s in r.skipped { print("  skipped \(s)") }
            }
            for f in report.findings {
                let subject = f.id.map { String($0.prefix(12)) } ?? f.path ?? ""
                print("\(f.level.rawValue): \(subject): \(f.message)")
            }
            let counts = [VerifyReport.Level.problem, .warning, .leftover].map { level in (level, report.findings.filter { $0.level == level }.count) }
            print("checked \(report.checked) entr\(report.checked == 1 ? "y" : "ies"): " + counts.map { "\($0.1) \($0.0.rawValue)\($0.1 == 1 ? "" : "s")" }.joined(separator: ", "))
        }
        if !report.problems.isEmpty {
            throw CLIError("\(report.problems.count) damaged entr\(report.problems.count == 1 ? "y" : "ies") in \(zooOptions.layout.root.path) (listed above)")
        }
    }
}

/// `bissl gc`.
struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "List unlisted complete objects again, move damaged ones to damaged/, remove files of interrupted writers; repair ref files.")

    @Flag(help: "Report what would be removed without removing it.")
    var dryRun = false
    @OptionGroup var zooOptions: ZooOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let zoo = try zooOptions.open()
        defer { try? zoo.close() }
        let r = try zoo.gc(dryRun: dryRun)
        if json { return try ZooOutput.printJSON(r) }
        let verb = dryRun ? "would remove" : "removed"
        for path in r.relistedObjects { print("\(dryRun ? "would list" : "listed") unlisted complete object \(path)") }
        for path in r.damagedObjects { print("\(dryRun ? "would move" : "moved") damaged unlisted object aside to \(path)") }
        for path in r.writerLeftovers { print("\(verb) leftover \(path)") }
        for path in r.strayRefs { print("\(verb) stray ref \(path)") }
        for path in r.rewrittenRefs { print("\(dryRun ? "would rewrite" : "rewrote") ref \(path)") }
        for path in r.restoredObjects { print("\(dryRun ? "would restore" : "restored") object \(path)") }
        let n = r.writerLeftovers.count + r.strayRefs.count
        print("\(verb) \(n) file\(n == 1 ? "" : "s"), \(ZooOutput.bytes(r.bytes))")
    }
}
