import Checkpoint
import Foundation
import Zoo

/// What the user asked a training job for: every setting optional (nil: the default, or "not given").
/// `given` lists the settings that are set, as command-line spellings, in declaration order (`--resume`
/// refuses them: a resumed run keeps the settings it started with).
public protocol JobOptions {
    /// `--name` of the entry the run adds.
    var name: String? { get }
    /// `--sync-bn` (docs/distributed.md): recorded in the run's config as `syncBn`, applied by
    /// `DataParallel.syncBatchNorm`.
    var syncBn: Bool { get }
    /// The command-line spelling of the setting stored as `label` (default: `--` + kebab-case,
    /// `ref` -> `REF`).
    static func flag(for label: String) -> String
    /// The rules the options obey on their own, before any data or entry is read (required options
    /// given, given numbers in range): the CLI's `validate()`, and the first thing `start` does.
    /// - Throws: `TrainingError.invalid`, one line naming the option and the value.
    func validate() throws
}

extension JobOptions {
    public func validate() throws {}

    public static func flag(for label: String) -> String {
        label == "ref" ? "REF" : "--" + RecordedSettings.snakeCase(label, separator: "-")
    }

    /// The settings that are given (non-nil, or a true flag), in declaration order.
    public var given: [String] {
        Mirror(reflecting: self).children.compactMap { child in
            guard let label = child.label else { return nil }
            if let flag = child.value as? Bool { return flag ? Self.flag(for: label) : nil }
            let value = Mirror(reflecting: child.value)
            if value.displayStyle == .optional && value.children.isEmpty { return nil }
            return Self.flag(for: label)
        }
    }
}

/// One kind of training run (pretrain, align, finetune): options resolved into a `Codable` config
/// (the run's `config` in run.json, and the entry's hyperparameters), a job built from the config, and
/// its training on a `Run` ending in a zoo entry. `start` and `resume` below are the one path every
/// job goes through: the `--name` check, run creation or reopening, failure marking, finishing.
public protocol TrainingJob {
    associatedtype Options: JobOptions
    associatedtype Config: Codable

    /// The run kind (`pretrain`, `align`, `finetune`): the prefix of run ids, and what `--resume` checks.
    static var kind: String { get }

    /// Options + the zoo -> every resolved setting. Everything that can be checked before training is
    /// checked here, so bad input leaves no run directory.
    /// - Throws: one-line errors naming the option.
    static func resolve(_ options: Options, zoo: Zoo) throws -> Config

    /// Builds the job (data, networks) from a config; writes nothing. `run` is the run being resumed
    /// (nil for a new run): a job refuses data that changed since it started.
    init(config: Config, zoo: Zoo, resuming run: Run?) throws

    var config: Config { get }
    /// Steps of the whole run (progress, `bissl runs`).
    var totalSteps: Int { get }
    /// The entry's name (`--name`), recorded in the config.
    var entryName: String? { get }

    /// The first line of a new run on stderr (its id, what it will do, how to resume it).
    func startMessage(run: Run, commandLine: [String]) -> String

    /// Trains on `run` from its last saved state (or the start), saves the final state, and returns
    /// the entry to add (weights and provenance).
    func train(on run: Run) throws -> Checkpoint
}

/// What a finished job gives back: the run, the zoo entry, and the entry's provenance.
public struct JobResult {
    public let run: Run
    public let entry: ImportResult
    public let provenance: Provenance
}

extension TrainingJob {
    /// Starts a new run: the options' own rules and `--name` checked first (before any work), options resolved, the job built,
    /// then the run created, trained and finished.
    /// - Throws: resolution errors (no run directory is left); a failure after the run started marks
    ///   it failed (resumable) and is rethrown.
    ///
    /// Under `mpirun` (docs/distributed.md) rank 0 alone checks the name and resolves the options (so
    /// anything resolved from data, such as align's capped warmup LR, is measured once, as one process
    /// over the global batch measures it) and sends the config to the others; every rank builds the
    /// job from that one config; rank 0 alone creates the run and the others `Run.follow` it.
    public static func start(zoo: Zoo, options: Options, commandLine: [String],
                             progress: ProgressReporter? = nil) throws -> JobResult {
        try options.validate()
        let world = try DataParallel.join()
        let config = try agreeOnConfig(world: world) {
            if let name = options.name { try checkName(name, zoo: zoo) }
            return try resolve(options, zoo: zoo)
        }
        let job = try Self(config: config, zoo: zoo, resuming: nil)
        DataParallel.syncBatchNorm = options.syncBn
        let run = try agreeOnRun(zoo: zoo, world: world, commandLine: commandLine) {
            var settings = try JSONValueEncoder().encodeObject(config)
            if world.size > 1 { settings["ranks"] = .int(Int64(world.size)) }
            if options.syncBn { settings["syncBn"] = .bool(true) }
            let run = try Run.create(zoo: zoo, kind: kind, config: settings, commandLine: commandLine,
                                     totalSteps: job.totalSteps, progress: progress)
            run.progress.message(job.startMessage(run: run, commandLine: commandLine))
            return run
        }
        defer { RankFailure.unwatch() }
        return try job.finish(on: run, commandLine: commandLine)
    }

    /// Rank 0 resolves the config (`make`) and sends it to the others as JSON (Doubles round-trip
    /// exactly), so every rank trains with the same settings. Single process: `make()`.
    /// - Throws: what `make` throws (rank 0), `DistributedError.leaderFailed` (the others, quietly).
    static func agreeOnConfig(world: Communicator, _ make: () throws -> Config) throws -> Config {
        try leaderDecides(world: world, make: make, encode: { Array(try JSONEncoder().encode($0)) },
                          follow: { try JSONDecoder().decode(Config.self, from: Data($0)) })
    }

    /// Rank 0 makes the run (`make`) and tells the others its id; they follow it. Single process: `make()`.
    /// Under `mpirun` every rank watches the run (`RankFailure.watch`) as soon as it has it, so that a
    /// signal before the training starts (while the job is built) already takes the job's way; the
    /// caller unwatches it when done.
    /// - Throws: what `make` throws (rank 0), `DistributedError.leaderFailed` (the others, quietly).
    static func agreeOnRun(zoo: Zoo, world: Communicator, commandLine: [String], _ make: () throws -> Run) throws -> Run {
        func watched(_ run: Run) -> Run {
            RankFailure.watch(run, resume: Self.resumeCommand(runID: run.id, commandLine: commandLine, ranks: world.size))
            return run
        }
        return try leaderDecides(world: world, make: { watched(try make()) }, encode: { Array($0.directory.path.utf8) },
                                 follow: { watched(try Run.follow(zoo: zoo, id: String(decoding: $0, as: UTF8.self))) })
    }

    /// Rank 0 makes the value (`make`) and broadcasts its bytes (`encode`); the other ranks make theirs
    /// from those bytes (`follow`). An empty broadcast says rank 0 failed. Single process: `make()`.
    /// - Throws: what `make` or `encode` throws (rank 0), `DistributedError.leaderFailed` (the others,
    ///   quietly), what `follow` throws.
    private static func leaderDecides<T>(world: Communicator, make: () throws -> T, encode: (T) throws -> [UInt8],
                                         follow: ([UInt8]) throws -> T) throws -> T {
        guard world.size > 1 else { return try make() }
        if world.rank == 0 {
            let value: T
            let bytes: [UInt8]
            do {
                value = try make()
                bytes = try encode(value)
            } catch {
                _ = try world.broadcast([])
                throw error
            }
            _ = try world.broadcast(bytes)
            return value
        }
        let bytes = try world.broadcast([])
        guard !bytes.isEmpty else { throw DistributedError.leaderFailed }
        return try follow(bytes)
    }

    /// Resumes run `id` (a run of this kind that is not completed) from its last saved state, with the
    /// config it started with.
    /// - Throws: `Run.open`'s refusals (the run untouched); a failure after the run was reopened
    ///   (unreadable config, changed data, a parent entry gone) marks it failed and is rethrown.
    public static func resume(zoo: Zoo, id: String, commandLine: [String], progress: ProgressReporter? = nil) throws -> JobResult {
        let world = try DataParallel.join()
        let run = try agreeOnRun(zoo: zoo, world: world, commandLine: commandLine) {
            try Run.open(zoo: zoo, id: id, expectedKind: kind, commandLine: commandLine, progress: progress)
        }
        defer { RankFailure.unwatch() }
        let job: Self
        do {
            let config: Config
            do {
                config = try JSONValue.object(RecordedSettings.camelCased(run.config)).decode(Config.self)
            } catch {
                throw TrainingError.invalid("run \(run.id): the run's config is not a \(kind) config: \(error)")
            }
            job = try Self(config: config, zoo: zoo, resuming: run)
            DataParallel.syncBatchNorm = RecordedSettings.value("syncBn", in: run.config) == .bool(true)
        } catch {
            run.fail(error)
            throw error
        }
        return try job.finish(on: run, commandLine: commandLine)
    }

    /// Trains and adds the entry; any failure marks the run failed. Under `mpirun` every rank trains
    /// (watched by `RankFailure` since `agreeOnRun`); rank 0 adds the entry and sends the others its
    /// import result (they wait for it). Once the training ended a first signal lets the entry be added
    /// (`RankFailure.trainingEnded`, `StopRequest.trainingEnded`).
    func finish(on run: Run, commandLine: [String]) throws -> JobResult {
        let world = DataParallel.world
        let resume = Self.resumeCommand(runID: run.id, commandLine: commandLine, ranks: world.size)
        let checkpoint: Checkpoint
        do {
            checkpoint = try train(on: run)
        } catch {
            run.fail(error)
            if run.writes, let note = Self.resumeNote(run: run, after: error, resume: resume) { run.progress.message(note) }
            throw error
        }
        RankFailure.trainingEnded()
        if world.size == 1 {
            StopRequest.trainingEnded(runID: run.id, steps: run.totalSteps)
        }
        guard run.writes else {
            let reply = try world.broadcast([])
            guard !reply.isEmpty, let entry = try? JSONDecoder().decode(ImportResult.self, from: Data(reply)) else {
                throw DistributedError.leaderFailed
            }
            return JobResult(run: run, entry: entry, provenance: checkpoint.provenance)
        }
        do {
            let entry = try run.finish(checkpoint, name: entryName)
            if world.size > 1 { _ = try world.broadcast(Array(try JSONEncoder().encode(entry))) }
            return JobResult(run: run, entry: entry, provenance: checkpoint.provenance)
        } catch {
            run.fail(error)
            if let note = Self.resumeNote(run: run, after: error, resume: resume) { run.progress.message(note) }
            if world.size > 1 { _ = try? world.broadcast([]) }
            throw error
        }
    }

    /// The line printed (by rank 0, before the `error:` line) when `error` ended the run and a resume
    /// can get past it (a full disk, data briefly unreadable, a zoo busy at the end):
    /// `run ID failed; it resumes from step S/T, its last saved state: CMD`. Nil after a stop on
    /// request (`RunInterrupted` prints its own resume line) and after `TrainingError.invalid` (a
    /// diverged run, a setting or data that does not fit: a resume would fail the same way).
    static func resumeNote(run: Run, after error: Error, resume: String) -> String? {
        if error is RunInterrupted { return nil }
        if case TrainingError.invalid = error { return nil }
        return "run \(run.id) failed; it resumes from step \(run.runRecord.step)/\(run.totalSteps), its last saved state: \(resume)"
    }

    /// Refuses `--name NAME` when the zoo would refuse it at the end: not a valid label
    /// (`LabelRules`), or already the name or tag of an entry.
    /// - Throws: `TrainingError.invalid`, one line.
    public static func checkName(_ name: String, zoo: Zoo) throws {
        do { try LabelRules.validate(name) } catch {
            throw TrainingError.invalid("--name: \(error)")
        }
        if let (owner, kind) = Run.holder(of: name, zoo: zoo) {
            throw TrainingError.invalid("--name \(name) is already the \(kind) of entry \(owner.prefix(12)); choose another name (or bissl untag \(name) first)")
        }
    }

    /// `[mpirun -np N ]bissl <kind> --resume ID [--zoo DIR]` (`Run.resumeCommand`).
    public static func resumeCommand(runID: String, commandLine: [String], ranks: Int = 1) -> String {
        Run.resumeCommand(kind: kind, id: runID, commandLine: commandLine, ranks: ranks)
    }
}
