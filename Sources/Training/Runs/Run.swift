import Checkpoint
import Engine
import Foundation
import Zoo

/// A training run: the directory `<zoo>/runs/<kind>-<UTC yyyyMMdd-HHmmss>-<6 hex>/` holding
///
/// ```
/// run.json     RunRecord: id, kind, status, config, commandLine, startedAt, totalSteps, step, ...
/// log.jsonl    one RunLogEntry per line, appended as the run goes
/// state.h5     the last TrainingState (atomically replaced by saveState)
/// curves.png   every logged metric against the step, drawn by finish
/// lock         held with flock(2) while a process has the run open
/// ```
///
/// Life cycle: `create` -> `log` / `saveState` ... -> `finish` (draws the curves, adds the zoo entry,
/// marks the run completed and deletes `state.h5`, which the entry makes unnecessary). Ctrl-C or SIGKILL leaves the directory and no zoo
/// entry; `open` then resumes it: the lines logged after the last saved state are dropped (the
/// resumed run logs them again), so the final `log.jsonl` has each step once.
///
/// Only one process at a time can have a run open (an exclusive `flock` on `lock`, released when the
/// object is dropped or the process ends). In a data-parallel job (docs/distributed.md) that process is
/// rank 0; the other ranks `follow` the run: they read its config and state and write nothing.
///
/// The loop of a command (every random choice derived from the seed and the step or the epoch and
/// batch position, so restoring the state is all a resume needs):
///
/// ```swift
/// let run = try resume.map { try Run.open(zoo: zoo, id: $0, expectedKind: "pretrain") }
///     ?? Run.create(zoo: zoo, kind: "pretrain", config: config, commandLine: CommandLine.arguments, totalSteps: total)
/// var start = 1
/// if let state = try run.loadState() {
///     try state.restore(net); try state.restore(lars); try state.restore(&schedule)
///     start = state.step + 1
/// }
/// do {
///     for step in start...total {
///         let loss = trainStep(step)
///         run.log(step: step, phase: "train", ["loss": loss, "lr": lr])   // also updates the progress bar
///         try run.boundary(step: step, every: checkpointEvery, save: step == total) {
///             var state = TrainingState(step: step)
///             state.capture(net); state.capture(lars); state.capture(schedule)
///             return state
///         }
///     }
///     var provenance = run.provenance(stage: "pretext", method: "simclr")   // + parents, datasets, seeds, metrics
///     let result = try run.finish(net.checkpoint(provenance: provenance), name: name)
/// } catch {
///     run.fail(error)
///     throw error
/// }
/// ```
public final class Run {
    public let id: String
    public let directory: URL
    public let kind: String
    public let config: [String: JSONValue]
    public let commandLine: [String]
    public let totalSteps: Int
    /// Progress on stderr for this run (bar on a terminal, plain lines otherwise).
    public let progress: ProgressReporter
    /// The zoo `finish` adds the entry to.
    public let zoo: Zoo

    /// False for a rank other than 0 of a data-parallel job (`follow`): logging keeps the history in
    /// memory only, `saveState`, `fail` and `finish` write nothing.
    public let writes: Bool

    /// Number of log lines `open` left out because they were torn or unreadable.
    public let droppedLogLines: Int
    /// Number of log lines `open` dropped because they came after the last saved state.
    public let rewoundLogLines: Int

    private var record: RunRecord
    private var entries: [RunLogEntry]
    private var logFD: Int32
    private var lockFD: Int32
    /// Work seconds before this segment, and when this segment started (monotonic clock).
    private let priorSeconds: Double
    private let segmentStart: Double
    private var logFailureReported = false
    /// Monotonic time of the last saveState (or of the segment's start).
    private var lastSaveTime: Double

    /// Current status (`running` until `finish` or `fail`).
    public var status: RunRecord.Status { record.status }
    /// A copy of the current run record.
    public var runRecord: RunRecord { record }
    /// Entry id after `finish`.
    public var entryId: String? { record.entryId }
    /// Every log entry kept so far, in order (including those from before a resume).
    public var logEntries: [RunLogEntry] { entries }

    public static let stateFileName = "state.h5"
    public static let curvesFileName = "curves.png"
    static let lockFileName = "lock"

    public var logURL: URL { directory.appendingPathComponent(RunLog.fileName) }
    public var stateURL: URL { directory.appendingPathComponent(Self.stateFileName) }
    public var curvesURL: URL { directory.appendingPathComponent(Self.curvesFileName) }

    private init(zoo: Zoo, directory: URL, record: RunRecord, entries: [RunLogEntry], logFD: Int32, lockFD: Int32,
                 dropped: Int, rewound: Int, progress: ProgressReporter?, writes: Bool = true) {
        self.zoo = zoo
        self.writes = writes
        self.directory = directory
        self.record = record
        self.entries = entries
        self.logFD = logFD
        self.lockFD = lockFD
        self.id = record.id
        self.kind = record.kind
        self.config = record.config
        self.commandLine = record.commandLine
        self.totalSteps = record.totalSteps
        self.progress = progress ?? ProgressReporter(total: record.totalSteps)
        self.droppedLogLines = dropped
        self.rewoundLogLines = rewound
        self.priorSeconds = record.durationSeconds
        self.segmentStart = RunClock.monotonic()
        self.lastSaveTime = segmentStart
        StopRequest.watch(resumeCommand: Self.resumeCommand(kind: record.kind, id: record.id, commandLine: CommandLine.arguments),
                          savedStep: record.step)
    }

    deinit {
        if logFD >= 0 { close(logFD) }
        if lockFD >= 0 { close(lockFD) }
    }

    // MARK: - create / open

    /// Creates `<zoo>/runs/<kind>-<UTC yyyyMMdd-HHmmss>-<6 hex>/` with `run.json` (status running)
    /// and an empty `log.jsonl`.
    /// - Parameters:
    ///   - kind: `pretrain`, `finetune`, ... (1-40 characters of `a-z 0-9 -`, starting with a letter).
    ///   - config: every resolved option (recorded, and the provenance's hyperparameters).
    ///   - totalSteps: steps of the whole run (for progress and `bissl runs`).
    ///   - progress: progress reporter (default: `ProgressReporter(total: totalSteps)` on stderr).
    /// - Throws: `TrainingError.invalid` for a bad kind, `.io` when the directory cannot be made.
    public static func create(zoo: Zoo, kind: String, config: [String: JSONValue], commandLine: [String], totalSteps: Int,
                              progress: ProgressReporter? = nil) throws -> Run {
        try validateKind(kind)
        let runs = zoo.layout.runs
        do { try FileManager.default.createDirectory(at: runs, withIntermediateDirectories: true) } catch {
            throw TrainingError.io("cannot create \(runs.path): \(AtomicFile.reason(error))")
        }
        let now = Date()
        var directory: URL!
        var id = ""
        for _ in 0..<100 {
            id = "\(kind)-\(RunClock.compact(now))-" + String(format: "%06x", UInt32.random(in: 0..<(1 << 24)))
            let candidate = runs.appendingPathComponent(id, isDirectory: true)
            if mkdir(candidate.path, 0o755) == 0 { directory = candidate; break }
            guard errno == EEXIST else {
                throw TrainingError.io("cannot create run directory \(candidate.path): \(String(cString: strerror(errno)))")
            }
        }
        guard let directory else { throw TrainingError.io("cannot find a free run id under \(runs.path)") }
        let lockFD = try lock(directory, id: id)
        let stamp = RunClock.iso(now)
        let record = RunRecord(id: id, kind: kind, status: .running, config: config, commandLine: commandLine,
                               startedAt: stamp, updatedAt: stamp, endedAt: nil, totalSteps: totalSteps, step: 0,
                               durationSeconds: 0, segments: 1, resumeCommandLines: [], entryId: nil, error: nil,
                               pid: getpid(), parallelism: [thisSegment(fromStep: 1)])
        do {
            try record.write(directory: directory)
            let fd = try RunLog.openForAppend(directory.appendingPathComponent(RunLog.fileName))
            return Run(zoo: zoo, directory: directory, record: record, entries: [], logFD: fd, lockFD: lockFD,
                       dropped: 0, rewound: 0, progress: progress)
        } catch {
            close(lockFD)
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    /// Reopens a run for `--resume`: by id (`<zoo>/runs/<id>`), unique id prefix, or directory path.
    /// The log is read back (a torn last line is dropped), lines logged after the last saved state
    /// are removed from the history and from `log.jsonl`, and the run is marked running again.
    ///
    /// Nothing in the directory is written before the run is known to be resumable by this command:
    /// kind and status are checked first (and again once the lock is held). A `failed` run can be
    /// resumed: its last saved state is consistent (states are replaced atomically and saved before
    /// anything that can fail after them), so a transient failure (disk full, data briefly missing,
    /// zoo busy at finish) loses nothing and a deterministic one simply fails again; the earlier error
    /// is shown in the resume note.
    /// - Parameters:
    ///   - expectedKind: the kind of the resuming command (`pretrain`, `finetune`, `align`, ...); a run
    ///     of another kind is refused untouched.
    ///   - commandLine: argv of the resuming command (recorded in `resumeCommandLines`).
    /// - Throws: `TrainingError.invalid` (one line) for an unknown or ambiguous id, a directory that
    ///   is gone, an unreadable run.json, a run of another kind, a completed run, or a run another
    ///   process has open.
    public static func open(zoo: Zoo, id: String, expectedKind: String, commandLine: [String] = CommandLine.arguments,
                            progress: ProgressReporter? = nil) throws -> Run {
        let directory = try resolve(zoo: zoo, id: id)
        try checkResumable(try RunRecord.read(directory: directory), expectedKind: expectedKind)
        let lockFD = try lock(directory, id: directory.lastPathComponent)
        do {
            // Re-read under the lock: another process may have finished the run meanwhile.
            var record = try RunRecord.read(directory: directory)
            try checkResumable(record, expectedKind: expectedKind)
            let previousError = record.status == .failed ? record.error : nil
            removeStaleTemporaries(directory)
            let stateURL = directory.appendingPathComponent(stateFileName)
            let savedStep: Int? = FileManager.default.fileExists(atPath: stateURL.path) ? try TrainingState.storedStep(stateURL) : nil
            let logURL = directory.appendingPathComponent(RunLog.fileName)
            let (all, dropped) = try RunLog.read(logURL)
            // Lines up to the saved state are kept; later ones will be logged again by the resumed run.
            let kept = all.filter { line in savedStep.map { line.entry.step <= $0 } ?? false }
            let rewound = all.count - kept.count
            if dropped > 0 || rewound > 0 || !FileManager.default.fileExists(atPath: logURL.path) {
                let text = kept.map { $0.text + "\n" }.joined()
                try AtomicFile.write(Data(text.utf8), to: logURL)
            }
            record.status = .running
            record.error = nil
            record.endedAt = nil
            record.segments += 1
            record.resumeCommandLines.append(commandLine)
            record.pid = getpid()
            record.step = savedStep ?? 0
            // The segment whose work the saved state holds (a later one may have saved nothing).
            let before = record.parallelHistory(through: record.step).last
            record.parallelism?.append(thisSegment(fromStep: record.step + 1))
            record.updatedAt = RunClock.iso()
            try record.write(directory: directory)
            let fd = try RunLog.openForAppend(logURL)
            let run = Run(zoo: zoo, directory: directory, record: record, entries: kept.map { $0.entry }, logFD: fd, lockFD: lockFD,
                          dropped: dropped, rewound: rewound, progress: progress)
            var note = "resuming \(previousError == nil ? "" : "failed ")run \(record.id) " + (savedStep.map { "from step \($0)/\(record.totalSteps)" } ?? "from the start (no state was saved)")
            if let previousError { note += "; it had failed with: \(previousError)" }
            if let before, let now = record.parallelism?.last, before.ranks != now.ranks {
                // Per-rank batch statistics and negatives: another computation from here on, recorded as such.
                note += "; it trained on \(before.ranks) rank\(before.ranks == 1 ? "" : "s") before, on \(now.ranks) from step \(now.fromStep) (BatchNorm statistics and SimCLR negatives are per rank; the entry's provenance records the ranks as mixed)"
            }
            if rewound > 0 { note += "; \(rewound) log line\(rewound == 1 ? "" : "s") after the saved state will be logged again" }
            if dropped > 0 { note += "; \(dropped) torn log line\(dropped == 1 ? "" : "s") dropped" }
            run.progress.message(note)
            return run
        } catch {
            close(lockFD)
            throw error
        }
    }

    /// The run `id` as seen by a rank other than 0 of a data-parallel job, after rank 0 created or
    /// reopened it: its record and log are read, nothing is written, no lock is taken, and progress is
    /// silent.
    /// - Throws: `TrainingError` when the run cannot be read.
    public static func follow(zoo: Zoo, id: String) throws -> Run {
        let directory = try resolve(zoo: zoo, id: id)
        let record = try RunRecord.read(directory: directory)
        let (lines, _) = try RunLog.read(directory.appendingPathComponent(RunLog.fileName))
        let silent = ProgressReporter(total: record.totalSteps, mode: .none, write: { _ in }, now: RunClock.monotonic)
        return Run(zoo: zoo, directory: directory, record: record, entries: lines.map(\.entry), logFD: -1, lockFD: -1,
                   dropped: 0, rewound: 0, progress: silent, writes: false)
    }

    /// This process's segment from `fromStep` on: the job's ranks and rank 0's engine threads.
    static func thisSegment(fromStep: Int) -> RunRecord.Parallelism {
        RunRecord.Parallelism(fromStep: fromStep, ranks: DataParallel.world.size, threads: EngineEnvironment.threads)
    }

    /// Refuses a run `open` must not touch: another kind's run, or a completed one.
    static func checkResumable(_ record: RunRecord, expectedKind: String) throws {
        guard record.kind == expectedKind else {
            throw TrainingError.invalid("run \(record.id) is a '\(record.kind)' run, not '\(expectedKind)'; resume it with bissl \(record.kind) --resume \(record.id)")
        }
        if record.status == .completed {
            throw TrainingError.invalid("run \(record.id) is completed (entry \(record.entryId.map { String($0.prefix(12)) } ?? "?")); nothing to resume")
        }
    }

    /// The directory of run `id`: a path (contains `/`), an exact id, or a unique id prefix.
    /// - Throws: `TrainingError.invalid` for an unknown or ambiguous id.
    public static func resolve(zoo: Zoo, id: String) throws -> URL { try resolve(layout: zoo.layout, id: id) }

    /// `resolve(zoo:id:)` from the zoo's layout alone (no catalog opened).
    public static func resolve(layout: ZooLayout, id: String) throws -> URL {
        if id.contains("/") { return URL(fileURLWithPath: id, isDirectory: true).standardizedFileURL }
        guard !id.isEmpty else { throw TrainingError.invalid("empty run id") }
        let runs = layout.runs
        let exact = runs.appendingPathComponent(id, isDirectory: true)
        if FileManager.default.fileExists(atPath: exact.path) { return exact }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: runs.path)) ?? []).filter { $0.hasPrefix(id) }.sorted()
        switch names.count {
        case 0: throw TrainingError.invalid("unknown run '\(id)' in \(runs.path) (bissl runs lists them)")
        case 1: return runs.appendingPathComponent(names[0], isDirectory: true)
        default: throw TrainingError.invalid("run id '\(id)' is ambiguous: \(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", ..." : "")")
        }
    }

    static func validateKind(_ kind: String) throws {
        let ok = !kind.isEmpty && kind.utf8.count <= 40
            && kind.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
            && (0x61...0x7A).contains(kind.utf8.first!)
        guard ok else { throw TrainingError.invalid("invalid run kind '\(kind)': use 1-40 characters of a-z 0-9 -, starting with a letter") }
    }

    /// Takes the run's exclusive lock (non-blocking).
    private static func lock(_ directory: URL, id: String) throws -> Int32 {
        let path = directory.appendingPathComponent(lockFileName).path
        let fd = Foundation.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw TrainingError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw TrainingError.invalid("run \(id) is in use by another bissl process")
        }
        return fd
    }

    /// Removes `AtomicFile` temporaries (regular files `.<name>.tmp-<pid>-<random>`) whose writer is
    /// no longer running (a SIGKILL during `saveState`): no process holds its lock
    /// (`TemporaryFiles.removeFile`), whatever pid its name carries (pids are reused); called with
    /// the run's lock held.
    private static func removeStaleTemporaries(_ directory: URL) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] {
            guard TemporaryFiles.writerPID(inTemporaryName: name) != nil else { continue }
            _ = TemporaryFiles.removeFile(directory.appendingPathComponent(name))
        }
    }

    /// True when some process has the run in `directory` open (its lock is held).
    public static func isActive(directory: URL) -> Bool {
        let fd = Foundation.open(directory.appendingPathComponent(lockFileName).path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { flock(fd, LOCK_UN); return false }
        return errno == EWOULDBLOCK
    }

    // MARK: - logging

    /// Seconds of work since the run first started, summed over segments.
    public var elapsedSeconds: Double { priorSeconds + (RunClock.monotonic() - segmentStart) }

    /// Appends `{"step":s,"time":t,"phase":p, <metrics>}` to `log.jsonl` (one `write(2)`, so the line
    /// survives SIGKILL), keeps it for `history` and the provenance, and shows it on `progress`
    /// (`update(step:metrics:phase:)`). A failing write is reported once on stderr and the history
    /// still kept.
    /// - Precondition: no metric is named `step`, `time` or `phase`.
    public func log(step: Int, phase: String, _ metrics: [String: Double]) {
        precondition(metrics.keys.allSatisfy { !RunLogEntry.reserved.contains($0) }, "Run.log: metric names step, time and phase are reserved")
        let entry = RunLogEntry(step: step, time: elapsedSeconds, phase: phase, metrics: metrics)
        entries.append(entry)
        guard writes else { return }
        progress.update(step: step, metrics: metrics, phase: phase)
        if !RunLog.append(entry.jsonLine, fd: logFD) && !logFailureReported {
            logFailureReported = true
            progress.message("warning: cannot append to \(logURL.path): \(String(cString: strerror(errno)))")
        }
    }

    /// `(step, value)` of every logged line that has `metric`, in logging order (lines from before a
    /// resume included).
    public func history(_ metric: String) -> [(step: Int, value: Double)] {
        entries.compactMap { e in e.metrics[metric].map { (e.step, $0) } }
    }

    /// Every metric name logged so far, sorted.
    public var metricNames: [String] { Array(Set(entries.flatMap(\.metrics.keys))).sorted() }

    // MARK: - state

    /// Atomically replaces `state.h5` with `state`, then records `state.step` and the work time in
    /// run.json: a step boundary where the loop always saves (`boundary(step:every:save:state:)` with
    /// `save` true), so after a stop request it throws `RunInterrupted` once the state is written.
    /// - Throws: as `boundary`.
    public func saveState(_ state: TrainingState) throws {
        try boundary(step: state.step, save: true) { state }
    }

    /// A step boundary of a training loop (called once per boundary, after step `step`'s log line):
    /// decides whether to save the state there, saves it (`state` is called only then), and ends the
    /// loop after a stop request (SIGINT, SIGTERM or SIGUSR1: `StopRequest`) by throwing
    /// `RunInterrupted` once the state is written, so the run stays resumable from `step`.
    ///
    /// The state is saved when `save` is true (the loop's own saves: epoch or alternation ends, the
    /// last step), every `every` steps when given (`--checkpoint-every`), else when `defaultSaveInterval`
    /// seconds of work passed since the last save (or the segment's start), and always after a stop
    /// request. Where saves happen does not change the result (resume is bit-exact from any saved
    /// step). In a job of several ranks it is a collective, one all-reduce (`agreeAtBoundary`): rank 0's
    /// clock decides the timed saves and any rank's stop request stops all; rank 0 writes, and on a stop
    /// every rank waits for that write and throws, so all stop after the same step. Every rank calls it
    /// at the same boundaries (the loops' conditions are the same on all).
    /// - Throws: `TrainingError.io` when a file cannot be written (the previous state stays);
    ///   `RunInterrupted` after a stop request, once the state is written; what `state` throws.
    public func boundary(step: Int, every: Int? = nil, save: Bool = false, state: () throws -> TrainingState) throws {
        let decision = decide(step: step, every: every, save: save, now: RunClock.monotonic())
        guard decision.save else { return }
        let captured = try state()
        if writes {
            try captured.write(to: stateURL)
            lastSaveTime = RunClock.monotonic()
            record.step = captured.step
            try writeRecord()
            StopRequest.noteSaved(step: captured.step)
        }
        let world = DataParallel.world
        if world.size > 1 {
            guard let signal = decision.stop else { return }
            do { try world.barrier() } catch { DataParallel.stopAfterCollectiveFailure(error) }
            throw RunInterrupted(step: captured.step, totalSteps: totalSteps, signal: signal,
                                 resumeCommand: Self.resumeCommand(kind: kind, id: id, commandLine: CommandLine.arguments, ranks: world.size))
        }
        // One process: a signal that came while the state was written stops here too.
        if let signal = StopRequest.signal {
            throw RunInterrupted(step: captured.step, totalSteps: totalSteps, signal: signal,
                                 resumeCommand: Self.resumeCommand(kind: kind, id: id, commandLine: CommandLine.arguments))
        }
    }

    /// The decision at a step boundary (`boundary`): whether to save the state (the loop's `save`, the
    /// `every`-step or timed save at `now`, a stop request) and the signal to stop with (nil: go on).
    /// One all-reduce in a job of several ranks.
    func decide(step: Int, every: Int?, save: Bool, now: Double) -> (save: Bool, stop: Int32?) {
        let due: Bool
        if let every, every > 0 { due = step % every == 0 } else { due = now - lastSaveTime >= Self.defaultSaveInterval }
        guard DataParallel.world.size > 1 else {
            let stop = StopRequest.signal
            return (save || due || stop != nil, stop)
        }
        let agreed = agreeAtBoundary(due: due)
        return (save || agreed.due || agreed.stop != nil, agreed.stop)
    }

    /// The agreement of a job's ranks at a step boundary, one all-reduce (sum) of four floats: whether
    /// some rank got SIGTERM, SIGINT or SIGUSR1 (`StopRequest.signal`), and whether rank 0 finds a save
    /// due (`due`; only rank 0's counts, as the ranks' clocks differ). Every rank calls it at the same
    /// boundaries (`boundary`), so every rank gets the same answer.
    /// - Returns: the signal to stop with (SIGTERM when a rank got it, else SIGINT, else SIGUSR1; nil:
    ///   go on), and whether a save is due.
    func agreeAtBoundary(due: Bool) -> (stop: Int32?, due: Bool) {
        let world = DataParallel.world
        let local = StopRequest.signal
        var flags: [Float] = StopRequest.stopSignals.map { local == $0 ? 1 : 0 } + [world.rank == 0 && due ? 1 : 0]
        do { try flags.withUnsafeMutableBufferPointer { try world.allReduceSum($0) } } catch { DataParallel.stopAfterCollectiveFailure(error) }
        let stop = zip(StopRequest.stopSignals, flags).first { $0.1 > 0 }?.0
        if stop != nil { StopRequest.noteAgreedStop() }
        return (stop, flags[StopRequest.stopSignals.count] > 0)
    }

    /// `bissl <kind> --resume <id>`, with `--zoo DIR` when `commandLine` (this process's) gave one,
    /// after `mpirun -np N ` when the run trains on `ranks` > 1 ranks (every line naming the command
    /// uses this one: the start line, the stopped line, the line of a job ending, a failure's). DIR is
    /// absolute (a relative one resolved against the current directory), so the command works from
    /// any folder, and single-quoted for the shell when it holds anything but `A-Z a-z 0-9 / . _ - + , : @ %`.
    public static func resumeCommand(kind: String, id: String, commandLine: [String], ranks: Int = 1) -> String {
        var resume = (ranks > 1 ? "mpirun -np \(ranks) " : "") + "bissl \(kind) --resume \(id)"
        for (i, arg) in commandLine.enumerated() {
            if arg == "--zoo", i + 1 < commandLine.count { resume += " --zoo \(shellPath(commandLine[i + 1]))" }
            if arg.hasPrefix("--zoo=") { resume += " --zoo \(shellPath(String(arg.dropFirst(6))))" }
        }
        return resume
    }

    /// `path` made absolute against the current directory, single-quoted when the shell would split
    /// or expand it (`'/tmp/my zoo'`; a `'` inside is written `'\''`).
    static func shellPath(_ path: String) -> String {
        let absolute = path.isEmpty ? path : URL(fileURLWithPath: path).standardizedFileURL.path
        let plain = !absolute.isEmpty && absolute.unicodeScalars.allSatisfy { c in
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || "/._-+,:@%".unicodeScalars.contains(c)
        }
        return plain ? absolute : "'" + absolute.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Seconds of work between automatic state saves when no `--checkpoint-every` is given.
    public static let defaultSaveInterval = 120.0

    /// The last saved state; nil when none was saved yet.
    /// - Throws: `TrainingError` when `state.h5` exists but cannot be read.
    public func loadState() throws -> TrainingState? {
        guard FileManager.default.fileExists(atPath: stateURL.path) else { return nil }
        return try TrainingState.read(stateURL)
    }

    private func writeRecord() throws {
        record.durationSeconds = elapsedSeconds
        record.updatedAt = RunClock.iso()
        try record.write(directory: directory)
    }

    // MARK: - end

    /// Ends the run: draws `curves.png` (a drawing failure is only reported), adds `checkpoint` to the
    /// zoo with `name`, and marks run.json completed with the entry id. Only here does a zoo entry
    /// appear; call `saveState` with the final state first so that a failed `finish` can be resumed.
    ///
    /// The training must not be lost to its name: when `name` cannot be given at this point (another
    /// entry took it while the run trained, it is not a valid label, or the same weights are already
    /// listed under another name), the entry is added without it, `warning: ...` is printed and the
    /// run completes (`ImportResult.name` then tells which name the entry has, if any).
    /// - Returns: the zoo's import result.
    /// - Throws: `TrainingError.invalid` when the run is already completed or `checkpoint` holds NaN or
    ///   infinite values (a diverged run: no entry, the run directory keeps the log); whatever `Zoo.add`
    ///   throws for the unnamed entry (the run then stays running and resumable, with no entry).
    public func finish(_ checkpoint: Checkpoint, name: String?) throws -> ImportResult {
        precondition(writes, "Run.finish: only rank 0 adds the entry")
        if record.status == .completed {
            throw TrainingError.invalid("run \(id) is already completed (entry \(record.entryId.map { String($0.prefix(12)) } ?? "?"))")
        }
        progress.finish()
        if let problem = Run.nonFiniteValues(in: checkpoint) {
            throw TrainingError.invalid("run \(id) diverged: \(problem); no entry written (try a lower learning rate)")
        }
        do {
            try CurvePlot.write(entries: entries, to: curvesURL, title: id)
        } catch {
            progress.message("warning: no curves.png: \(error)")
        }
        func addUnnamed(_ name: String, _ problem: String) throws -> ImportResult {
            let result = try zoo.add(checkpoint, name: nil)
            progress.message("warning: entry \(result.id.prefix(12)) added without the name '\(name)': \(problem); name it with bissl tag \(result.id.prefix(12)) <label>")
            return result
        }
        let result: ImportResult
        if let name, let problem = nameProblem(name, for: checkpoint) {
            result = try addUnnamed(name, problem)
        } else {
            do {
                Run.beforeNamedAdd?()
                result = try zoo.add(checkpoint, name: name)
            } catch {
                // Another process took the name between the check and the add (two runs with the same
                // --name finishing at once): the zoo refused the label, not the entry.
                guard let name, let problem = nameProblem(name, for: checkpoint) else { throw error }
                result = try addUnnamed(name, problem)
            }
        }
        record.status = .completed
        record.entryId = result.id
        record.error = nil
        record.endedAt = RunClock.iso()
        try writeRecord()
        // The entry holds the final weights: the resumable state is no longer needed (RunMaintenance).
        unlink(stateURL.path)
        return result
    }

    /// The first floating-point tensor of `checkpoint` holding NaN or infinite values (weights or BN
    /// statistics of a diverged run), described in one phrase; nil when every value is finite.
    static func nonFiniteValues(in checkpoint: Checkpoint) -> String? {
        for (component, dict) in checkpoint.components {
            for (key, tensor) in dict where tensor.dtype.isFloatingPoint {
                let bad = tensor.doubles().reduce(0) { $1.isFinite ? $0 : $0 + 1 }
                if bad > 0 { return "\(component) \(key) holds \(bad) NaN or infinite values of \(tensor.count)" }
            }
        }
        return nil
    }

    /// Test seam: runs right before `finish` adds the entry with its name (after the name was found
    /// free), where another process's entry can take the name.
    nonisolated(unsafe) static var beforeNamedAdd: (() -> Void)?

    /// Why `name` cannot be given to `checkpoint`'s entry now, or nil when it can: an invalid label, a
    /// label another entry holds, or the same content already listed under another name.
    func nameProblem(_ name: String, for checkpoint: Checkpoint) -> String? {
        do { try LabelRules.validate(name) } catch { return "\(error)" }
        let id = ContentID.compute(checkpoint)
        if let (owner, kind) = Run.holder(of: name, zoo: zoo), owner != id {
            return "'\(name)' is already the \(kind) of entry \(owner.prefix(12))"
        }
        if let current = try? zoo.labels(of: id).first(where: { $0.kind == .name }), current.label != name {
            return "the same weights are already listed as entry \(id.prefix(12)) named '\(current.label)'"
        }
        return nil
    }

    /// The entry holding the valid label `name` and how (`name` or `tag`); nil when no entry does.
    static func holder(of name: String, zoo: Zoo) -> (owner: String, kind: String)? {
        // A valid label is never a full id nor a 6+ hex prefix, so `resolve` finds it only as a label.
        guard let owner = try? zoo.resolve(name) else { return nil }
        return (owner, (try? zoo.labels(of: owner))?.first { $0.label == name }?.kind.rawValue ?? "label")
    }

    /// Marks the run failed with the first line of `error` (it stays resumable); after `RunInterrupted`
    /// it only records the work time (the run stays `running`, listed as interrupted). Never throws: a
    /// failure to write run.json is reported on stderr. A completed run stays completed (its entry exists).
    public func fail(_ error: Error) {
        progress.finish()
        guard writes, record.status != .completed else { return }
        if error is RunInterrupted {
            // Stopped on request with the state saved: still resumable, not failed.
            record.error = nil
            do { try writeRecord() } catch {
                progress.message("warning: cannot update run \(id): \(error)")
            }
            return
        }
        let message = String(describing: error).split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? "unknown error"
        record.status = .failed
        record.error = message
        record.endedAt = RunClock.iso()
        do { try writeRecord() } catch {
            progress.message("warning: cannot mark run \(id) failed: \(error)")
        }
    }

    /// A provenance skeleton for the entry this run makes: `tool`, the first `commandLine`,
    /// `startedAt` (first start), `endedAt` (now), `hyperparameters` = config, the metric
    /// `durationSeconds` (work time summed over resumed segments), `metricHistory` with every
    /// logged metric's values in logging order, and `run.engine` among the hyperparameters (the CPU,
    /// threads and OpenBLAS kernel of this process: `EngineEnvironment.record`). A resumed run also records `run.segments` (1 + number
    /// of resumes), `run.resumeCommandLines` (argv of each resume) and `run.parallelism` (each
    /// segment's steps, ranks and threads) among the hyperparameters, and `ranks` says what every
    /// step ran on (`recordParallelism`: `mixed: ...` when a resume changed the number). The
    /// caller adds parents, datasets, seeds, metrics.
    public func provenance(stage: String, method: String?) -> Provenance {
        var p = Provenance(stage: stage, method: method, hyperparameters: config,
                           metrics: ["durationSeconds": elapsedSeconds], tool: Provenance.Tool(),
                           commandLine: commandLine, startedAt: record.startedAt, endedAt: RunClock.iso())
        for name in metricNames { p.metricHistory[name] = history(name).map(\.value) }
        // The CPU and OpenBLAS kernel of the process that finished the run (`bissl doctor` prints the same).
        p.hyperparameters["run.engine"] = .object(EngineEnvironment.record.mapValues(JSONValue.string))
        if record.segments > 1 {
            // The schema allows no new top-level field: a resumed run's history goes under hyperparameters.
            p.hyperparameters["run.segments"] = .int(Int64(record.segments))
            p.hyperparameters["run.resumeCommandLines"] = .array(record.resumeCommandLines.map { .array($0.map(JSONValue.string)) })
        }
        recordParallelism(&p)
        return p
    }

    /// The ranks of the steps the entry's weights come from (`RunRecord.parallelHistory` of the run's
    /// `totalSteps`): `ranks` = N when every step ran on N > 1 ranks, absent on one process (as a run
    /// of one segment records it), `mixed: steps 1-87 on 2 ranks, 88-213 on 1 rank` when they
    /// differ; a resumed run also gets `run.parallelism`, each segment's `steps`, `ranks` and
    /// `threads`. A record without the history (written before it was kept) leaves `ranks` as started.
    func recordParallelism(_ p: inout Provenance) {
        let history = record.parallelHistory(through: totalSteps)
        guard let first = history.first else { return }
        if let mixed = record.mixedRanks(through: totalSteps) {
            p.hyperparameters["ranks"] = .string(mixed)
        } else if first.ranks > 1 {
            p.hyperparameters["ranks"] = .int(Int64(first.ranks))
        } else {
            p.hyperparameters["ranks"] = nil
        }
        guard record.segments > 1 else { return }
        p.hyperparameters["run.parallelism"] = .array(history.map { h in
            .object(["steps": .string("\(h.steps.lowerBound)-\(h.steps.upperBound)"), "ranks": .int(Int64(h.ranks)), "threads": .int(Int64(h.threads))])
        })
    }
}
