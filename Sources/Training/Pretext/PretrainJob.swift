import Checkpoint
import Datasets
import Foundation
import Zoo

/// `bissl pretrain` as a `TrainingJob`: options -> `PretrainConfig`, a run of kind `pretrain` trained
/// by a `Pretrainer`, the `pretext` entry at the end.
public struct PretrainJob: TrainingJob {
    public let trainer: Pretrainer
    public var config: PretrainConfig { trainer.config }

    public static var kind: String { "pretrain" }

    /// Opens the data (its URI made absolute, so the run resumes and the provenance reads from any
    /// directory), resolves `--from` to its entry id, fingerprints the data, resolves the settings.
    /// - Throws: `TrainingError.invalid` for a missing `--method` or `--data`, bad options,
    ///   unreadable data or a bad `--from` entry.
    public static func resolve(_ options: PretrainOptions, zoo: Zoo) throws -> PretrainConfig {
        var options = options
        try options.validate()
        let dataset = try ImageDataset(parsing: options.data ?? "")
        options.data = dataset.uri.description
        var parent: Architecture?
        if let ref = options.from {
            let id = try zoo.resolve(ref)
            options.from = id
            parent = try Network(checkpoint: try zoo.checkpoint(id), heads: ["projector", "predictor"]).architecture
        }
        return try PretrainConfig.resolve(options, dataset: dataset, fingerprint: try dataset.fingerprint(), parentArchitecture: parent)
    }

    /// The trainer of `config`: its data, and the `--from` entry's network when it continues one.
    /// - Throws: for a resumed run, `TrainingError.invalid` when the data's fingerprint changed since
    ///   the run started or the `--from` entry is no longer in the zoo.
    public init(config: PretrainConfig, zoo: Zoo, resuming run: Run?) throws {
        let dataset = try ImageDataset(parsing: config.data)
        if let run {
            let fingerprint = try dataset.fingerprint()
            guard fingerprint == config.dataFingerprint else {
                throw TrainingError.invalid("the data \(config.data) changed since run \(run.id) started (fingerprint \(fingerprint.prefix(12)) vs \(config.dataFingerprint.prefix(12)))")
            }
        }
        var initial: Network?
        if let from = config.from {
            if let run, (try? zoo.resolve(from)) != from {
                throw TrainingError.invalid("run \(run.id) continues entry \(from.prefix(12)) (--from), which is no longer in the zoo (removed with bissl rm --force?); it cannot be resumed")
            }
            initial = try Network(checkpoint: try zoo.checkpoint(from), heads: ["projector", "predictor"])
        }
        trainer = try Pretrainer(config: config, dataset: dataset, initial: initial)
    }

    public var totalSteps: Int { config.steps }
    public var entryName: String? { config.name }

    public func startMessage(run: Run, commandLine: [String]) -> String {
        Self.startLine(runID: run.id, config: config, commandLine: commandLine, ranks: DataParallel.world.size)
    }

    /// Restores the run's last state, trains to the end, saves the final state (so a failing `finish`
    /// stays resumable) and returns the `pretext` entry.
    public func train(on run: Run) throws -> Checkpoint {
        if let state = try run.loadState() { try trainer.restoreState(state) }
        try trainer.train(run: run)
        try run.saveState(trainer.captureState())
        return trainer.checkpoint(run: run)
    }

    /// The line a new run starts with (stderr, like finetune and align), naming the run and how to resume
    /// it after Ctrl-C or a kill: `run ID: N steps (simclr, resnet18-w8-small, E epochs of B batches of S,
    /// lars lr 4.8) (resume with: [mpirun -np N ]bissl pretrain --resume ID [--zoo DIR])`, `mpirun -np N`
    /// when it trains on `ranks` > 1 ranks (as in the `stopped at step` line).
    static func startLine(runID: String, config: PretrainConfig, commandLine: [String], ranks: Int = 1) -> String {
        let epochs = Double(config.steps) / Double(config.batchesPerEpoch)
        let epochText = epochs == epochs.rounded() ? "\(Int(epochs))" : String(format: "%.2f", epochs)
        let what = "\(config.method.rawValue), \(config.architecture.label), \(epochText) epoch\(epochs == 1 ? "" : "s") of "
            + "\(config.batchesPerEpoch) batch\(config.batchesPerEpoch == 1 ? "" : "es") of \(config.batchSize), "
            + "\(config.optimizer) lr \(config.lr)"
        let resume = resumeCommand(runID: runID, commandLine: commandLine, ranks: ranks)
        return "run \(runID): \(config.steps) step\(config.steps == 1 ? "" : "s") (\(what)) (resume with: \(resume))"
    }
}
