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
        abstract: "List training runs (id, kind, status, step/total, started, entry) or show one.",
        subcommands: [RunsList.self, RunsShow.self],
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
        if runs.isEmpty { print("no runs in \(zooOptions.layout.runs.path)"); return }
        let rows = runs.map { r -> [String] in
            guard let rec = r.record else { return [r.id, "?", r.state, "", "", r.problem ?? ""] }
            return [r.id, rec.kind, r.state, r.stepText ?? "", rec.startedAt,
                    rec.entryId.map { String($0.prefix(12)) } ?? (rec.error ?? "")]
        }
        print(ZooOutput.table(["ID", "KIND", "STATUS", "STEP", "STARTED", "ENTRY"], rows))
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
            FileHandle.standardError.write(Data("wrote \(url.path)\n".utf8))
        }
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        if json {
            try ZooOutput.printJSON(Report(summary: summary, lastMetrics: metrics, files: files))
            return
        }
        print("run:        \(record.id)")
        print("directory:  \(directory.path)")
        print("kind:       \(record.kind)")
        print("status:     \(summary.state)\(record.error.map { " (\($0))" } ?? "")")
        print("step:       \(summary.loggedStep ?? record.step)/\(record.totalSteps) logged, \(record.step) in the last saved state")
        print("started:    \(record.startedAt)")
        if let ended = record.endedAt { print("ended:      \(ended)") }
        print("work time:  \(String(format: "%.1f", record.durationSeconds)) s in \(record.segments) segment\(record.segments == 1 ? "" : "s")")
        if let entry = record.entryId { print("entry:      \(entry)") }
        print("command:    \(record.commandLine.joined(separator: " "))")
        for resume in record.resumeCommandLines { print("resumed by: \(resume.joined(separator: " "))") }
        print("files:      \(files.joined(separator: " "))")
        if !record.config.isEmpty {
            print("config:")
            for (key, value) in record.config.sorted(by: { $0.key < $1.key }) { print("  \(key) = \(value)") }
        }
        if metrics.isEmpty {
            print("metrics:    none logged")
        } else {
            print("last metrics:")
            let rows = metrics.sorted { $0.key < $1.key }.map { name, m in
                [name, String(format: "%.6g", m.value), "\(m.step)", m.phase]
            }
            print(ZooOutput.table(["  METRIC", "VALUE", "STEP", "PHASE"], rows.map { ["  " + $0[0]] + $0.dropFirst() }))
        }
    }
}
