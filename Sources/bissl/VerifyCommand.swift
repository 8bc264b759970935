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
    @Option(help: ArgumentHelp("Clean this remote instead: delete objects no manifest references and abort stale multipart uploads.", valueName: "NAME"))
    var remote: String?
    @Option(help: ArgumentHelp("With --remote: keep what is younger than this (90s, 30m, 24h, 7d; default 24h).", valueName: "DURATION"))
    var grace: String = "24h"
    @OptionGroup var zooOptions: ZooOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        if let remote { return try runRemote(remote) }
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

extension GC {
    func runRemote(_ name: String) throws {
        guard let seconds = Self.duration(grace) else {
            throw CLIError("invalid --grace '\(grace)': give a number with s, m, h or d (90s, 30m, 24h, 7d)")
        }
        let r = try RemoteZoo(Remotes.select(name, zooOptions.layout)).gc(grace: seconds, dryRun: dryRun)
        if json { return try ZooOutput.printJSON(r) }
        let verb = dryRun ? "would remove" : "removed"
        for key in r.removedObjects { print("\(verb) unreferenced object \(key)") }
        for key in r.abortedUploads { print("\(dryRun ? "would abort" : "aborted") unfinished upload of \(key)") }
        for id in r.missingObjects { print("warning: the object of entry \(id.prefix(12)) is missing; push it again from a zoo that holds it") }
        for label in r.danglingLabels { print("warning: label \(label) points at an entry the remote does not hold") }
        print("\(verb) \(r.removedObjects.count) object\(r.removedObjects.count == 1 ? "" : "s") (\(ZooOutput.bytes(r.bytes))), \(dryRun ? "would abort" : "aborted") \(r.abortedUploads.count) upload\(r.abortedUploads.count == 1 ? "" : "s"); kept \(r.keptRecent) younger than \(grace)")
    }

    /// Seconds of `90s`, `30m`, `24h`, `7d` or a bare number of seconds; nil otherwise.
    static func duration(_ text: String) -> TimeInterval? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        let (digits, unit) = text.last.flatMap { units[$0] }.map { (text.dropLast(), $0) } ?? (Substring(text), 1)
        guard let value = Double(digits), value >= 0, value.isFinite else { return nil }
        return value * unit
    }
}
