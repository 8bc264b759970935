import ArgumentParser
import Checkpoint
import Foundation
import Training
import Zoo

/// `bissl verify [REF ...] [--reindex]`.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check entries: content ids recomputed, files readable, provenance valid, health warnings.",
        discussion: """
            Without REF, checks every entry and reports files interrupted writers left, in the zoo's folders \
            and in training runs' folders (bissl gc removes them) and what an interrupted push or pull keeps to resume from (running it again resumes; bissl \
            gc keeps it for its grace period). Exits 1 when an entry is damaged; health warnings, leftovers and resumable \
            transfers do not fail. --reindex \
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
        var report = try zoo.verify(refs.isEmpty ? nil : refs)
        if refs.isEmpty {
            // Run directories are the training layer's: their dead writers' temporaries are reported here (gc removes them).
            for run in RunSummary.all(zooOptions.layout) {
                for url in RunMaintenance.leftovers(of: run) {
                    report.findings.append(.init(level: .leftover, id: nil, path: url.path,
                                                 message: "temporary of a writer that did not finish (run \(run.id)): no process holds its lock; bissl gc removes it"))
                }
            }
        }
        if json {
            try ZooOutput.printJSON(Output(reindex: reindexed, report: report))
        } else {
            if let r = reindexed {
                if let aside = r.movedAside { ZooOutput.printLine("moved the damaged catalog to \(aside)") }
                ZooOutput.printLine("reindexed: \(r.entries) entries, \(r.labels) labels, \(r.tombstones) tombstones")
                for s in r.skipped { ZooOutput.printLine("  skipped \(s)") }
            }
            for f in report.findings {
                let subject = f.id.map { String($0.prefix(12)) } ?? f.path ?? ""
                ZooOutput.printLine("\(f.level.rawValue): \(subject): \(f.message)")
                if let fix = f.fix { ZooOutput.printLine("  fix: \(fix)") }
            }
            let counts = [VerifyReport.Level.problem, .warning, .leftover].map { level in (level, report.findings.filter { $0.level == level }.count) }
            let transfers = report.findings.filter { $0.level == .transfer }.count
            ZooOutput.printLine("checked \(report.checked) entr\(report.checked == 1 ? "y" : "ies"): " + counts.map { "\($0.1) \($0.0.rawValue)\($0.1 == 1 ? "" : "s")" }.joined(separator: ", ")
                  + (transfers > 0 ? ", \(transfers) resumable transfer\(transfers == 1 ? "" : "s")" : ""))
        }
        if !report.problems.isEmpty {
            throw CLIError("\(report.problems.count) damaged entr\(report.problems.count == 1 ? "y" : "ies") in \(zooOptions.layout.root.path); each 'fix:' line above says what repairs it")
        }
    }
}

/// `bissl gc`.
struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Repair the zoo: unlist damaged entries, list lost objects again, remove files of interrupted writers, repair ref files.",
        discussion: """
            Reads every object. A listed entry whose object is missing, unreadable or holds other content \
            than its id is taken out of the catalog: its object is moved to damaged/ (never deleted) and its \
            provenance and labels are kept as a tombstone, so lineage still names it; re-import its source \
            file to bring it back (with the labels it had that are still free). An object the catalog does not list is listed again when its content id \
            verifies, else moved to damaged/. Temporary files of writers that are no longer running, trashed \
            objects and ref files naming entries the catalog does not list are deleted; a valid ref file of a \
            label the catalog lacks naming a listed entry gets its label back (ref files are the record of \
            labels, as verify --reindex reads them); missing ref files are rewritten. Anything \
            else (a file in refs/ that is not a ref file as bissl writes them, a user's file or folder in the \
            zoo's folders) is kept and printed as 'kept PATH: reason'. What an \
            interrupted push or pull keeps to resume from is kept until it has made no progress for the \
            grace period (--grace, default 24h; --grace 0 removes it). Completed \
            training runs lose their resumable state.h5, which their entry makes unnecessary (as bissl runs \
            prune does); the temporaries of dead writers in any run's folder (a run.json or state.h5 being \
            replaced when the process was killed) are removed.
            """)

    @Flag(help: "Report what would be removed without removing it.")
    var dryRun = false
    @Option(help: ArgumentHelp("Clean this remote instead: delete objects no manifest references and abort stale multipart uploads; the name is needed even when the zoo has one remote.", valueName: "NAME"))
    var remote: String?
    @Option(help: ArgumentHelp("Keep interrupted transfers (with --remote: unreferenced objects and unfinished uploads) younger than this (90s, 30m, 24h, 7d; default 24h).", valueName: "DURATION"))
    var grace: String = "24h"
    @Flag(help: "With --remote: delete the refs and manifests on it that do not decode (listed as damaged otherwise).")
    var removeDamaged = false
    @OptionGroup var zooOptions: ZooOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false

    /// `GCReport` plus the completed runs whose state was dropped (`compactedRuns`, ids), the
    /// temporaries of dead writers removed from run directories (`runLeftovers`, paths), and the
    /// bytes of both.
    struct Output: Encodable {
        var report: GCReport
        var compactedRuns: [String]
        var runLeftovers: [String]
        var runBytes: Int64
        func encode(to encoder: Encoder) throws {
            try report.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(compactedRuns, forKey: .compactedRuns)
            try c.encode(runLeftovers, forKey: .runLeftovers)
            try c.encode(runBytes, forKey: .runBytes)
        }
        enum Keys: String, CodingKey { case compactedRuns, runLeftovers, runBytes }
    }

    func run() throws {
        guard let seconds = Self.duration(grace) else {
            throw CLIError("invalid --grace '\(grace)': give a number with s, m, h or d (90s, 30m, 24h, 7d)")
        }
        if let remote { return try runRemote(remote, grace: seconds) }
        let zoo = try zooOptions.open()
        defer { try? zoo.close() }
        let r = try zoo.gc(dryRun: dryRun, transferGrace: seconds)
        var runBytes: Int64 = 0
        var compacted: [String] = []
        var runLeftovers: [String] = []
        for run in RunSummary.all(zooOptions.layout) {
            let leftovers = RunMaintenance.leftovers(of: run).map(\.path)
            let state = URL(fileURLWithPath: run.directory).appendingPathComponent(Run.stateFileName).path
            let dropsState = run.record?.status == .completed && FileManager.default.fileExists(atPath: state)
            runBytes += try RunMaintenance.compact(run, dryRun: dryRun)
            runLeftovers += leftovers
            if dropsState { compacted.append(run.id) }
        }
        if json { return try ZooOutput.printJSON(Output(report: r, compactedRuns: compacted, runLeftovers: runLeftovers, runBytes: runBytes)) }
        let verb = dryRun ? "would remove" : "removed"
        for path in r.relistedObjects { ZooOutput.printLine("\(dryRun ? "would list" : "listed") unlisted complete object \(path)") }
        for path in r.damagedObjects { ZooOutput.printLine("\(dryRun ? "would move" : "moved") damaged unlisted object aside to \(path)") }
        for path in r.writerLeftovers + runLeftovers { ZooOutput.printLine("\(verb) leftover \(path)") }
        for path in r.keptTransfers { ZooOutput.printLine("kept interrupted transfer \(path) (running it again resumes it; younger than \(grace), --grace 0 removes it)") }
        for k in r.kept { ZooOutput.printLine("kept \(k.path): \(k.reason)") }
        for path in r.strayRefs { ZooOutput.printLine("\(verb) stray ref \(path)") }
        for path in r.adoptedRefs { ZooOutput.printLine("\(dryRun ? "would add" : "added") the label of ref \(path) to the catalog (the ref files are the record of labels; bissl verify --reindex does the same)") }
        for path in r.rewrittenRefs { ZooOutput.printLine("\(dryRun ? "would rewrite" : "rewrote") ref \(path)") }
        for path in r.restoredObjects { ZooOutput.printLine("\(dryRun ? "would restore" : "restored") object \(path)") }
        for d in r.damagedEntries {
            let moved = d.movedTo.map { ", object \(dryRun ? "would move" : "moved") to \($0)" } ?? ""
            let back = d.sourceFile.map { "; bissl import \($0) brings it back with its labels" } ?? ""
            ZooOutput.printLine("\(dryRun ? "would unlist" : "unlisted") damaged entry \(d.id.prefix(12)) (\(d.problem))\(moved), record kept as a tombstone\(back)")
        }
        for id in compacted { ZooOutput.printLine("\(verb) the state of completed run \(id)") }
        let n = r.writerLeftovers.count + runLeftovers.count + r.strayRefs.count + compacted.count
        ZooOutput.printLine("\(verb) \(n) file\(n == 1 ? "" : "s"), \(ZooOutput.bytes(r.bytes + runBytes)) of disk")
        for failure in r.failures { ZooOutput.printLine("failed: \(failure)") }
        if !r.failures.isEmpty {
            throw CLIError("gc could not do \(r.failures.count) thing\(r.failures.count == 1 ? "" : "s") (the failed: lines above); everything else above was done")
        }
    }
}

extension GC {
    func runRemote(_ name: String, grace seconds: TimeInterval) throws {
        let r = try RemoteZoo(Remotes.select(name, zooOptions.layout)).gc(grace: seconds, dryRun: dryRun, removeDamaged: removeDamaged)
        if json { return try ZooOutput.printJSON(r) }
        let verb = dryRun ? "would remove" : "removed"
        for d in r.damaged {
            ZooOutput.printLine(r.removedDamaged.contains(d.key) ? "\(verb) damaged \(d.kind.rawValue) \(d.url) (\(d.problem))" : "warning: \(d.description)")
        }
        if r.keptForDamaged > 0 {
            ZooOutput.printLine("warning: kept \(r.keptForDamaged) unreferenced object\(r.keptForDamaged == 1 ? "" : "s") older than \(grace): a damaged manifest without a copy in the index may reference \(r.keptForDamaged == 1 ? "it" : "them")")
        }
        for key in r.removedObjects { ZooOutput.printLine("\(verb) unreferenced object \(key)") }
        for key in r.abortedUploads { ZooOutput.printLine("\(dryRun ? "would abort" : "aborted") unfinished upload of \(key)") }
        for id in r.missingObjects { ZooOutput.printLine("warning: the object of entry \(id.prefix(12)) is missing; push it again from a zoo that holds it") }
        for label in r.danglingLabels { ZooOutput.printLine("warning: label \(label) points at an entry the remote does not hold") }
        // What the grace period kept, when it kept anything (with --grace 0 it keeps nothing).
        let kept = r.keptRecent == 0 ? "" : "; kept \(r.keptRecent) unreferenced object\(r.keptRecent == 1 ? "" : "s") or upload\(r.keptRecent == 1 ? "" : "s") younger than the grace period (\(grace))"
        ZooOutput.printLine("\(verb) \(r.removedObjects.count) object\(r.removedObjects.count == 1 ? "" : "s") (\(ZooOutput.bytes(r.bytes))), \(dryRun ? "would abort" : "aborted") \(r.abortedUploads.count) upload\(r.abortedUploads.count == 1 ? "" : "s")\(kept)")
    }

    /// Seconds of `90s`, `30m`, `24h`, `7d` or a bare number of seconds; nil otherwise.
    static func duration(_ text: String) -> TimeInterval? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        let (digits, unit) = text.last.flatMap { units[$0] }.map { (text.dropLast(), $0) } ?? (Substring(text), 1)
        guard let value = Double(digits), value >= 0, value.isFinite else { return nil }
        return value * unit
    }
}
