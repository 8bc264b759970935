import Checkpoint
import Foundation
import Zoo

/// The runs of a zoo as `bissl runs` shows them, read from the files alone (no catalog, no lock
/// taken): `<zoo>/runs/*/run.json` and, for one run, the last metrics of its `log.jsonl`.
public struct RunSummary: Codable, Equatable, Sendable {
    public var id: String
    public var directory: String
    /// The run record, nil when run.json cannot be read (`problem` says why).
    public var record: RunRecord?
    /// `running` (a process has it open), `interrupted` (run.json says running but no process holds
    /// its lock: killed or Ctrl-C; resumable), `completed`, `failed`, or `unreadable`.
    public var state: String
    public var problem: String?
    /// Step of the last saved training state, the one a resume continues from: the step `state.h5`
    /// records when the run is not completed and the file is readable (a SIGKILL between writing
    /// `state.h5` and `run.json` leaves run.json one save behind), else `record.step`; nil when
    /// run.json is unreadable.
    public var savedStep: Int?
    /// Largest step in the run's log.jsonl (how far the run got, possibly past the saved state); nil
    /// when nothing was logged yet or the log cannot be read.
    public var loggedStep: Int?
    /// Seconds of work: run.json's `durationSeconds` (written at each save and at the end), or the
    /// work time of the last logged line when that is later (a run killed between saves); nil when
    /// run.json is unreadable.
    public var workSeconds: Double?
    /// Bytes of the run directory's files.
    public var bytes: Int64 = 0

    /// Every run directory under `layout.runs`, newest first (by start time, then id).
    public static func all(_ layout: ZooLayout) -> [RunSummary] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: layout.runs.path)) ?? []
        var out: [RunSummary] = []
        for name in names where !name.hasPrefix(".") {
            let dir = layout.runs.appendingPathComponent(name, isDirectory: true)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            out.append(summary(directory: dir))
        }
        return out.sorted { ($0.record?.startedAt ?? "", $0.id) > ($1.record?.startedAt ?? "", $1.id) }
    }

    /// Config keys under which a run records the zoo entry it starts from: `from` (`pretrain --from`),
    /// `ref` (`finetune REF`, `align REF`). The commands store the resolved full id there.
    public static let startingEntryKeys = ["from", "ref"]

    /// The runs whose run.json status is `running` (active, or interrupted and resumable) and whose
    /// config names entry `id` under one of `startingEntryKeys`: resuming them needs that entry, so
    /// `bissl rm` refuses to remove it. Unreadable run directories are skipped. Newest first.
    public static func unfinished(startingFrom id: String, _ layout: ZooLayout) -> [RunSummary] {
        all(layout).filter { run in
            guard let record = run.record, record.status == .running else { return false }
            return startingEntryKeys.contains { record.config[$0] == .string(id) }
        }
    }

    /// The summary of the run in `directory`.
    public static func summary(directory: URL) -> RunSummary {
        let id = directory.lastPathComponent
        do {
            let record = try RunRecord.read(directory: directory)
            let state: String
            switch record.status {
            case .running: state = Run.isActive(directory: directory) ? "running" : "interrupted"
            case .completed: state = "completed"
            case .failed: state = "failed"
            }
            let logged = lastLogged(directory: directory)
            return RunSummary(id: record.id, directory: directory.path, record: record, state: state, problem: nil,
                              savedStep: savedStep(record, directory: directory), loggedStep: logged?.step,
                              workSeconds: max(record.durationSeconds, logged?.time ?? 0), bytes: RunMaintenance.size(of: directory))
        } catch {
            return RunSummary(id: id, directory: directory.path, record: nil, state: "unreadable", problem: "\(error)",
                              savedStep: nil, loggedStep: nil, workSeconds: nil, bytes: RunMaintenance.size(of: directory))
        }
    }

    /// The step a resume of the run in `directory` continues from (`Run.open` reads it from `state.h5`):
    /// `state.h5`'s step for a run that is not completed, else (no state, an unreadable one, or a
    /// completed run, whose state is dropped) `record.step`.
    static func savedStep(_ record: RunRecord, directory: URL) -> Int {
        let state = directory.appendingPathComponent(Run.stateFileName)
        guard record.status != .completed, FileManager.default.fileExists(atPath: state.path),
              let step = try? TrainingState.storedStep(state) else { return record.step }
        return step
    }

    /// The largest `step` among the complete lines of the run's log.jsonl (a torn last line is ignored);
    /// nil when the log is missing, empty or unreadable.
    public static func lastLoggedStep(directory: URL) -> Int? { lastLogged(directory: directory)?.step }

    /// The largest `step` and `time` (work seconds) among the complete lines of the run's log.jsonl.
    static func lastLogged(directory: URL) -> (step: Int, time: Double)? {
        guard let log = try? RunLog.read(directory.appendingPathComponent(RunLog.fileName)),
              let step = log.entries.map(\.entry.step).max() else { return nil }
        return (step, log.entries.map(\.entry.time).max() ?? 0)
    }

    /// `17/102 (saved 0)` (logged step / total, and the saved step when it differs), or `saved/total`
    /// when nothing was logged; the STEP column of `bissl runs`.
    public var stepText: String? {
        guard let record else { return nil }
        let saved = savedStep ?? record.step
        guard let logged = loggedStep, logged != saved else { return "\(saved)/\(record.totalSteps)" }
        return "\(logged)/\(record.totalSteps) (saved \(saved))"
    }

    /// The last value of every metric in the run's log, with its step and phase.
    /// - Throws: `TrainingError.io` when the log exists but cannot be read.
    public static func lastMetrics(directory: URL) throws -> [String: LastMetric] {
        let (entries, _) = try RunLog.read(directory.appendingPathComponent(RunLog.fileName))
        var out: [String: LastMetric] = [:]
        for (entry, _) in entries {
            for (name, value) in entry.metrics { out[name] = LastMetric(step: entry.step, phase: entry.phase, value: value) }
        }
        return out
    }

    /// Draws `<directory>/curves.png` from the complete lines of its log (as `Run.finish` does).
    /// - Throws: `TrainingError.invalid` when nothing was logged, `.io` when it cannot be written.
    @discardableResult
    public static func drawCurves(directory: URL, title: String) throws -> URL {
        let (entries, _) = try RunLog.read(directory.appendingPathComponent(RunLog.fileName))
        let url = directory.appendingPathComponent(Run.curvesFileName)
        try CurvePlot.write(entries: entries.map { $0.entry }, to: url, title: title)
        return url
    }

    public struct LastMetric: Codable, Equatable, Sendable {
        public var step: Int
        public var phase: String
        public var value: Double
    }
}
