import Checkpoint
import Datasets
import Foundation
import Zoo

/// The whole `bissl pretrain` job: start a new run or resume one, train, add the `pretext` entry.
public enum Pretraining {
    /// Starts a run of kind `pretrain` from `options` (`options.from` is an entry ref, resolved here).
    /// - Returns: the run (for its id and directory) and the zoo's import result.
    /// - Throws: `CheckpointError.invalid` for bad options, a `--name` that is not a valid label or is
    ///   already taken (checked before the run is created, so no training is wasted on it), unreadable
    ///   data or a bad `--from` entry; a training failure after the run started marks it failed
    ///   (resumable) and is rethrown.
    public static func start(zoo: Zoo, options: PretrainOptions, commandLine: [String]) throws -> (Run, ImportResult) {
        var options = options
        if let name = options.name { try checkName(name, zoo: zoo) }
        let dataset = try ImageDataset(parsing: options.data)
        options.data = dataset.uri.description   // absolute: the run resumes and the provenance reads from any directory
        var initial: Network?
        if let ref = options.from {
            let id = try zoo.resolve(ref)
            options.from = id
            initial = try Network(checkpoint: try zoo.checkpoint(id))
        }
        let fingerprint = try dataset.fingerprint()
        let config = try PretrainConfig.resolve(options, dataset: dataset, fingerprint: fingerprint,
                                                parentArchitecture: initial?.architecture)
        let trainer = try Pretrainer(config: config, dataset: dataset, initial: initial)
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: config.json, commandLine: commandLine, totalSteps: config.steps)
        run.progress.message(startLine(runID: run.id, config: config, commandLine: commandLine))
        return (run, try finish(trainer, run: run))
    }

    /// The line a new run starts with (stderr, like finetune and align), naming the run and how to resume
    /// it after Ctrl-C or a kill: `run ID: N steps (simclr, resnet18-w8-small, E epochs of B batches of S,
    /// lars lr 4.8) (resume with: bissl pretrain --resume ID [--zoo DIR])`. `--zoo DIR` is repeated when
    /// `commandLine` gave it.
    static func startLine(runID: String, config: PretrainConfig, commandLine: [String]) -> String {
        let epochs = Double(config.steps) / Double(config.batchesPerEpoch)
        let epochText = epochs == epochs.rounded() ? "\(Int(epochs))" : String(format: "%.2f", epochs)
        let what = "\(config.method.rawValue), \(config.architecture.label), \(epochText) epoch\(epochs == 1 ? "" : "s") of "
            + "\(config.batchesPerEpoch) batch\(config.batchesPerEpoch == 1 ? "" : "es") of \(config.batchSize), "
            + "\(config.optimizer) lr \(config.lr)"
        var resume = "bissl pretrain --resume \(runID)"
        for (i, arg) in commandLine.enumerated() {
            if arg == "--zoo", i + 1 < commandLine.count { resume += " --zoo \(commandLine[i + 1])" }
            if arg.hasPrefix("--zoo=") { resume += " --zoo \(arg.dropFirst(6))" }
        }
        return "run \(runID): \(config.steps) step\(config.steps == 1 ? "" : "s") (\(what)) (resume with: \(resume))"
    }

    /// Refuses `--name NAME` when the zoo would refuse it at the end: not a valid label (`LabelRules`),
    /// or already the name or tag of an entry.
    /// - Throws: `CheckpointError.invalid`, one line.
    static func checkName(_ name: String, zoo: Zoo) throws {
        do { try LabelRules.validate(name) } catch CheckpointError.invalid(let reason) {
            throw CheckpointError.invalid("--name: \(reason)")
        }
        // A valid label is never a full id nor a 6+ hex prefix, so `resolve` finds it only as a label.
        if let owner = try? zoo.resolve(name) {
            let kind = try zoo.labels(of: owner).first { $0.label == name }?.kind.rawValue ?? "label"
            throw CheckpointError.invalid("--name \(name) is already the \(kind) of entry \(owner.prefix(12)); choose another name (or bissl untag \(name) first)")
        }
    }

    /// Resumes run `id` (a `pretrain` run that is not completed) from its last saved state.
    /// - Throws: `CheckpointError.invalid` for an unknown or completed run, a run of another kind, data
    ///   whose fingerprint changed since the run started, or a `--from` entry no longer in the zoo.
    public static func resume(zoo: Zoo, id: String, commandLine: [String]) throws -> (Run, ImportResult) {
        let run = try Run.open(zoo: zoo, id: id, expectedKind: "pretrain", commandLine: commandLine)
        do {
            guard run.kind == "pretrain" else {
                throw CheckpointError.invalid("run \(run.id) is a \(run.kind) run, not a pretrain run")
            }
            let config = try PretrainConfig(json: run.config)
            let dataset = try ImageDataset(parsing: config.data)
            let fingerprint = try dataset.fingerprint()
            guard fingerprint == config.dataFingerprint else {
                throw CheckpointError.invalid("the data \(config.data) changed since run \(run.id) started (fingerprint \(fingerprint.prefix(12)) vs \(config.dataFingerprint.prefix(12)))")
            }
            var initial: Network?
            if let from = config.from {
                guard (try? zoo.resolve(from)) == from else {
                    throw CheckpointError.invalid("run \(run.id) continues entry \(from.prefix(12)) (--from), which is no longer in the zoo (removed with bissl rm --force?); it cannot be resumed")
                }
                initial = try Network(checkpoint: try zoo.checkpoint(from))
            }
            let trainer = try Pretrainer(config: config, dataset: dataset, initial: initial)
            if let state = try run.loadState() { try trainer.restoreState(state) }
            return (run, try finish(trainer, run: run))
        } catch {
            run.fail(error)
            throw error
        }
    }

    /// Trains to the end, saves the final state (so a failing `finish` stays resumable), adds the entry.
    static func finish(_ trainer: Pretrainer, run: Run) throws -> ImportResult {
        do {
            try trainer.train(run: run)
            try run.saveState(trainer.captureState())
            return try run.finish(trainer.checkpoint(run: run), name: trainer.config.name)
        } catch {
            run.fail(error)
            throw error
        }
    }
}
