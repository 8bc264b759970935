import ArgumentParser
import Checkpoint
import Foundation
import Training
import Zoo

/// `bissl runs`: the training runs of a zoo (`<zoo>/runs/`), newest first; `bissl runs show ID`: one
/// run's record and its last metrics.
struct Runs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List training runs (id, kind, status, step/total, started, entry, size), show one, remove or prune them.",
        subcommands: [RunsList.self, RunsShow.self, RunsRemove.self, RunsPrune.self],
        defaultSubcommand: RunsList.self)
}

struct RunsList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List training runs, newest first. Status interrupted: killed or stopped, resume it with --resume ID.",
        discussion: """
            STEP is the last logged step over the total, with the step of the last saved state when it differs \
            (`17/102 (saved 0)`: a resume continues from step 0). JSON: loggedStep and savedStep.
            """)

    @OptionGroup var zooOptions: ZooOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let runs = RunSummary.all(zooOptions.layout)
        if json { try ZooOutput.printJSON(runs); return }
        if runs.isEmpty { ZooOutput.printLine("no runs in \(zooOptions.layout.runs.path)"); return }
        let rows = runs.map { r -> [String] in
            guard let rec = r.record else { return [r.id, "?", r.state, "", "", ZooOutput.bytes(r.bytes), r.problem ?? ""] }
            return [r.id, rec.kind, r.state, r.stepText ?? "", rec.startedAt, ZooOutput.bytes(r.bytes),
                    rec.entryId.map { String($0.prefix(12)) } ?? (rec.error ?? "")]
        }
        print(ZooOutput.table(["ID", "KIND", "STATUS", "STEP", "STARTED", "SIZE", "ENTRY"], rows))
        let total = runs.reduce(Int64(0)) { $0 + $1.bytes }
        ZooOutput.printLine("\(runs.count) run\(runs.count == 1 ? "" : "s"), \(ZooOutput.bytes(total)) in \(zooOptions.layout.runs.path)")
    }
}

struct RunsShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a run's record (run.json) and the last value of each logged metric.")

    @Argument(help: "Run id, unique id prefix, or run directory.")
    var id: String

    @OptionGroup var zooOptions: ZooOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Also (re)draw curves.png in the run directory from the metrics logged so far.")
    var curves = false

    struct Report: Encodable {
        var summary: RunSummary
        var lastMetrics: [String: RunSummary.LastMetric]
        var files: [String]
    }

    func run() throws {
        let directory = try Run.resolve(layout: zooOptions.layout, id: id)
        let summary = RunSummary.summary(directory: directory)
        guard let record = summary.record else { throw CLIError(summary.problem ?? "run \(id) is unreadable") }
        let metrics = try RunSummary.lastMetrics(directory: directory)
        if curves {
            let url = try RunSummary.drawCurves(directory: directory, title: record.id)
            printStandardError("wrote \(url.path)")
        }
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        if json {
            try ZooOutput.printJSON(Report(summary: summary, lastMetrics: metrics, files: files))
            return
        }
        ZooOutput.printLine("run:        \(record.id)")
        ZooOutput.printLine("directory:  \(directory.path)")
        ZooOutput.printLine("kind:       \(record.kind)")
        ZooOutput.printLine("status:     \(summary.state)\(record.error.map { " (\($0))" } ?? "")")
        ZooOutput.printLine("step:       \(summary.loggedStep ?? record.step)/\(record.totalSteps) logged, \(summary.savedStep ?? record.step) in the last saved state")
        ZooOutput.printLine("started:    \(record.startedAt)")
        if let ended = record.endedAt { ZooOutput.printLine("ended:      \(ended)") }
        ZooOutput.printLine("work time:  \(String(format: "%.1f", summary.workSeconds ?? record.durationSeconds)) s in \(record.segments) segment\(record.segments == 1 ? "" : "s")")
        if let entry = record.entryId { ZooOutput.printLine("entry:      \(entry)") }
        ZooOutput.printLine("command:    \(record.commandLine.joined(separator: " "))")
        for resume in record.resumeCommandLines { ZooOutput.printLine("resumed by: \(resume.joined(separator: " "))") }
        // The ranks of the steps done so far (saved, or logged past the saved state).
        let done = max(summary.savedStep ?? record.step, summary.loggedStep ?? 0)
        if let mixed = record.mixedRanks(through: done) {
            ZooOutput.printLine("ranks:      \(mixed)")
        } else if let ranks = record.parallelHistory(through: done).first?.ranks, ranks > 1 {
            ZooOutput.printLine("ranks:      \(ranks)")
        }
        ZooOutput.printLine("files:      \(files.joined(separator: " "))")
        if !record.config.isEmpty {
            ZooOutput.printLine("config:")
            for (key, value) in record.config.sorted(by: { $0.key < $1.key }) { ZooOutput.printLine("  \(key) = \(value)") }
        }
        if metrics.isEmpty {
            ZooOutput.printLine("metrics:    none logged")
        } else {
            ZooOutput.printLine("last metrics:")
            let rows = metrics.sorted { $0.key < $1.key }.map { name, m in
                [name, String(format: "%.6g", m.value), "\(m.step)", m.phase]
            }
            print(ZooOutput.table(["  METRIC", "VALUE", "STEP", "PHASE"], rows.map { ["  " + $0[0]] + $0.dropFirst() }))
        }
    }
}

/// `bissl runs rm RUN...`: deletes run directories.
struct RunsRemove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Delete run directories (a completed run's entry stays in the zoo).",
        discussion: """
            A running run is refused; an interrupted or failed run, which a resume would continue, needs \
            --force, and so does a run holding files that zoo entries cite as their data (the hold-out \
            split files of a finetune run without --val, named in the entry's provenance and model card).
            """)

    @Argument(help: "Run ids, unique id prefixes, or run directories.")
    var ids: [String]
    @Flag(help: "Also delete interrupted and failed runs (their work is lost) and runs holding files zoo entries cite.")
    var force = false
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        guard !ids.isEmpty else { throw CLIError("give the runs to delete (bissl runs lists them)") }
        let runs = try ids.map { RunSummary.summary(directory: try Self.runDirectory($0, zooOptions.layout)) }
        for r in runs where r.state == "running" || (!force && (r.state == "interrupted" || r.state == "failed")) {
            _ = try RunMaintenance.remove(r, force: force, dryRun: true)   // throws the refusal, before anything is deleted
        }
        let zoo = try RunsPrune.openZoo(zooOptions)
        defer { try? zoo?.close() }
        let cited = try RunMaintenance.citations(of: runs, in: zoo)
        if !force, let i = cited.firstIndex(where: { !$0.isEmpty }) {
            throw CLIError("run \(runs[i].id) holds \(RunMaintenance.describe(cited[i])); deleting it leaves that record naming missing files; bissl runs rm --force \(runs[i].id) deletes it anyway")
        }
        var freed: Int64 = 0
        for (r, c) in zip(runs, cited) {
            freed += try RunMaintenance.remove(r, force: force)
            ZooOutput.printLine("removed run \(r.id)" + (c.isEmpty ? "" : " (with \(RunMaintenance.describe(c)))"))
        }
        ZooOutput.printLine("freed \(ZooOutput.bytes(freed))")
    }
}

extension RunsRemove {
    /// The directory of run `id` (`Run.resolve`), which must be a folder directly in the zoo's
    /// `runs/` (symbolic links resolved): a path naming any other folder (`/home/me`, another zoo's
    /// run) is refused, as rm would delete it whole.
    static func runDirectory(_ id: String, _ layout: ZooLayout) throws -> URL {
        try layout.requireOwnRunsFolder("bissl runs rm")
        let directory = try Run.resolve(layout: layout, id: id)
        let runs = layout.runs.resolvingSymlinksInPath().standardizedFileURL.path
        let resolved = directory.resolvingSymlinksInPath().standardizedFileURL
        var isFolder: ObjCBool = false
        guard resolved.deletingLastPathComponent().path == runs,
              FileManager.default.fileExists(atPath: resolved.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw CLIError("\(id.quotedPathIfNeeded) is not a run of the zoo at \(layout.root.path) (runs are the folders in \(layout.runs.path); bissl runs lists them)")
        }
        return directory
    }
}

/// `bissl runs prune`: frees what finished runs no longer need.
struct RunsPrune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Free disk: drop the resumable state of completed runs; with --completed, delete completed runs.",
        discussion: """
            A completed run keeps run.json, log.jsonl and curves.png (its entry holds the weights and its \
            provenance the metric history); its state.h5 is only needed to resume, which a completed run never \
            does. bissl gc does the same. --completed deletes completed run directories altogether; \
            --failed also deletes failed runs. Running and interrupted runs are never touched, nor is a run \
            holding files that zoo entries cite as their data (the hold-out split files of a finetune run \
            without --val): it only loses its state (bissl runs rm --force deletes it).
            """)

    @Flag(help: "Delete completed run directories, not only their state.")
    var completed = false
    @Flag(help: "Also delete failed runs.")
    var failed = false
    @Flag(help: "Report what would be freed without changing anything.")
    var dryRun = false
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        var freed: Int64 = 0
        let verb = dryRun ? "would " : ""
        let zoo = (completed || failed) ? try Self.openZoo(zooOptions) : nil
        defer { try? zoo?.close() }
        let runs = RunSummary.all(zooOptions.layout)
        let isRemovable = { (r: RunSummary) in (completed && r.state == "completed") || (failed && r.state == "failed") }
        // One pass over the catalog for every removable run (not one per run).
        let removableRuns = runs.filter(isRemovable)
        let citations = Dictionary(zip(removableRuns.map(\.directory), try RunMaintenance.citations(of: removableRuns, in: zoo)),
                                   uniquingKeysWith: { a, _ in a })
        for r in runs {
            let removable = isRemovable(r)
            let cited = removable ? citations[r.directory] ?? [] : []
            if removable && cited.isEmpty {
                freed += try RunMaintenance.remove(r, force: true, dryRun: dryRun)
                ZooOutput.printLine("\(verb)remove run \(r.id) (\(r.state))")
                continue
            }
            if !cited.isEmpty {
                ZooOutput.printLine("\(dryRun ? "would keep" : "kept") run \(r.id) (\(r.state)): it holds \(RunMaintenance.describe(cited)); bissl runs rm --force \(r.id) deletes it anyway")
            }
            if r.state == "completed" {
                let bytes = try RunMaintenance.compact(r, dryRun: dryRun)
                if bytes > 0 { ZooOutput.printLine("\(verb)drop the state of completed run \(r.id) (\(ZooOutput.bytes(bytes)))") }
                freed += bytes
            }
        }
        ZooOutput.printLine("\(dryRun ? "would free" : "freed") \(ZooOutput.bytes(freed))")
    }

    /// The zoo the runs belong to, read-only, to ask which run files its entries cite; nil when
    /// there is no zoo (run folders alone: nothing cites them).
    static func openZoo(_ options: ZooOptions) throws -> Zoo? {
        Zoo.isZoo(options.layout) ? try options.open(readOnly: true) : nil
    }
}
