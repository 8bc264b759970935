import Checkpoint
import Foundation

/// The contents of `<zoo>/runs/<id>/run.json`: what a run is, how it was started and where it stands.
/// Rewritten atomically (`AtomicFile`) on every status change and every saved state.
public struct RunRecord: Codable, Equatable, Sendable {
    /// `running`: started or resumed (also what a run killed by Ctrl-C or SIGKILL still says; its lock
    /// is then free, see `RunListing`); `completed`: the zoo entry `entryId` exists; `failed`: stopped by
    /// the error `error`. Running and failed runs can be resumed, completed ones cannot.
    public enum Status: String, Codable, Sendable { case running, completed, failed }

    /// `<kind>-<UTC yyyyMMdd-HHmmss>-<6 hex>`, also the directory name.
    public var id: String
    /// What the run does (`pretrain`, `finetune`, `align`, ...).
    public var kind: String
    public var status: Status
    /// Every resolved option of the command, as given to `Run.create`.
    public var config: [String: JSONValue]
    /// argv of the command that started the run.
    public var commandLine: [String]
    /// ISO 8601 UTC time of the first start.
    public var startedAt: String
    /// ISO 8601 UTC time of the last change of this record.
    public var updatedAt: String
    /// ISO 8601 UTC time the run completed or failed; nil while running.
    public var endedAt: String?
    /// Steps the run will make in total.
    public var totalSteps: Int
    /// `step` of the last saved training state (0 before the first).
    public var step: Int
    /// Seconds of work: for every earlier segment, its time up to its last saved state (later work is
    /// redone after a resume), plus the current segment so far (at the time of the last write).
    public var durationSeconds: Double
    /// Number of segments: 1 plus the number of resumes.
    public var segments: Int
    /// argv of each resume, in order.
    public var resumeCommandLines: [[String]]
    /// Content id of the zoo entry, once completed.
    public var entryId: String?
    /// One-line error, when failed.
    public var error: String?
    /// Process that ran the run last.
    public var pid: Int32?
    /// The ranks and engine threads of each segment, in order (docs/distributed.md, "Resuming with
    /// another number of ranks"); nil in records written before it was kept (their history is unknown).
    public var parallelism: [Parallelism]? = nil

    /// How one segment of a run trained: from which step, on how many ranks, with how many threads.
    /// Batch statistics (BatchNorm without `--sync-bn`) and SimCLR's negatives are per rank, so a run
    /// resumed on another number of ranks computes something else from there on.
    public struct Parallelism: Codable, Equatable, Sendable {
        /// The first step the segment trains (the saved step it resumed from, plus 1).
        public var fromStep: Int
        /// Ranks of the job (`mpirun -np`; 1 for one process).
        public var ranks: Int
        /// Engine threads of rank 0 (`EngineEnvironment.threads`).
        public var threads: Int

        public init(fromStep: Int, ranks: Int, threads: Int) {
            self.fromStep = fromStep
            self.ranks = ranks
            self.threads = threads
        }
    }

    /// The steps `1...last` as the segments trained them: each segment from its `fromStep` up to the
    /// step before the next one's (work after its last saved state was redone by the next), the last
    /// one up to `last`; segments left with no step are dropped. Empty when `parallelism` is nil.
    public func parallelHistory(through last: Int) -> [(steps: ClosedRange<Int>, ranks: Int, threads: Int)] {
        guard let segments = parallelism else { return [] }
        var out: [(steps: ClosedRange<Int>, ranks: Int, threads: Int)] = []
        for (i, segment) in segments.enumerated() {
            let end = min(i + 1 < segments.count ? segments[i + 1].fromStep - 1 : last, last)
            guard segment.fromStep <= end else { continue }
            out.append((segment.fromStep...end, segment.ranks, segment.threads))
        }
        return out
    }

    /// `mixed: steps 1-87 on 2 ranks, 88-213 on 1 rank` when the steps `1...last` ran on different
    /// numbers of ranks (adjacent segments on the same number merged); nil when they ran on one number
    /// of ranks or the history is unknown.
    public func mixedRanks(through last: Int) -> String? {
        var merged: [(from: Int, to: Int, ranks: Int)] = []
        for h in parallelHistory(through: last) {
            if let previous = merged.last, previous.ranks == h.ranks { merged[merged.count - 1].to = h.steps.upperBound } else {
                merged.append((h.steps.lowerBound, h.steps.upperBound, h.ranks))
            }
        }
        guard merged.count > 1 else { return nil }
        let parts = merged.enumerated().map { i, m in
            "\(i == 0 ? "steps " : "")\(m.from)-\(m.to) on \(m.ranks) rank\(m.ranks == 1 ? "" : "s")"
        }
        return "mixed: " + parts.joined(separator: ", ")
    }

    public static let fileName = "run.json"

    /// Reads `<directory>/run.json`.
    /// - Throws: `TrainingError.invalid` (one line) when the directory or file is missing or the
    ///   file is not a run record.
    public static func read(directory: URL) throws -> RunRecord {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrainingError.invalid("run \(directory.lastPathComponent): its directory \(directory.path) is gone")
        }
        let url = directory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TrainingError.invalid("run \(directory.lastPathComponent): \(url.path) is missing (not a run directory?)")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TrainingError.invalid("run \(directory.lastPathComponent): cannot read \(url.path): \(AtomicFile.reason(error))")
        }
        do {
            return try JSONDecoder.bissl().decode(RunRecord.self, from: data)
        } catch {
            throw TrainingError.invalid("run \(directory.lastPathComponent): \(url.path) is unreadable (not a bissl run record)")
        }
    }

    /// Writes `<directory>/run.json` atomically (pretty JSON, sorted keys).
    /// - Throws: `TrainingError.io` when it cannot be written.
    public func write(directory: URL) throws {
        let encoder = JSONEncoder.bissl(pretty: true)
        let data: Data
        do { data = try encoder.encode(self) } catch {
            throw TrainingError.invalid("cannot encode run \(id) as JSON: \(error)")
        }
        try AtomicFile.write(data + Data("\n".utf8), to: directory.appendingPathComponent(Self.fileName))
    }}

/// ISO 8601 UTC times (`2026-11-29T10:24:09Z`) as provenance uses them.
enum RunClock {
    static func iso(_ date: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: date)
    }

    /// `yyyyMMdd-HHmmss` in UTC, for run ids.
    static func compact(_ date: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02d-%02d%02d%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// Seconds on a clock that never goes back (for durations).
    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
