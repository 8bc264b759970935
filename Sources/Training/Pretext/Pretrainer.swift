import Checkpoint
import Collections
import Datasets
import Engine
import Foundation
import Zoo

/// SSL pretraining (SimCLR or BYOL, docs/bissl.md, "Default settings") of a `Network` on a `Run`: the loop, its
/// resumable state, and the `pretext` zoo entry it ends with.
///
/// Step `s` (0-based) uses batch `s mod B` of epoch `s / B` (B = batches per epoch, drop last) of a
/// `DataLoader` seeded with the run's seed, whose two views come from `Augment.pretextPair` at the
/// configured size and pixel scale. Per step: zero the gradients, `PretextObjective.lossAndGradient`
/// (train-mode BN; BYOL: EMA of the target first), one LARS (or SGD) step, then the schedule gives the
/// lr of the next step (`CosineSchedule`: the first step runs at the base lr, as the reference implementation). No gradient
/// clipping (docs/bissl.md, "Default settings"). Every random choice derives from (seed, epoch, position), so resuming from a
/// saved state gives bit-identical parameters.
///
/// State (`TrainingState`): `model/...` (online network, BN buffers included), `target/...` (BYOL),
/// `opt/lars` or `opt/sgd`, `sched/counter`, `step`.
public final class Pretrainer {
    public let config: PretrainConfig
    public let dataset: ImageDataset
    public let network: Network
    public let objective: PretextObjective
    public let loader: DataLoader
    private let lars: LARS?
    private let sgd: SGD?
    private var schedule: CosineSchedule
    /// Optimiser steps completed.
    public private(set) var step = 0
    /// Loss of the last step (NaN before the first).
    public private(set) var lastLoss = Float.nan

    /// - Parameters:
    ///   - initial: the `--from` entry's network (its heads are kept when they fit, else replaced by fresh
    ///     ones; a classifier is dropped); nil: a network initialised from `config.seed`.
    /// - Throws: `TrainingError.invalid` when `initial`'s backbone is not `config`'s architecture.
    public init(config: PretrainConfig, dataset: ImageDataset, initial: Network? = nil) throws {
        self.config = config
        self.dataset = dataset
        let arch = config.architecture
        if let initial {
            let b = initial.backbone.architecture
            guard b.depth == arch.depth && b.width == arch.width && b.stem == arch.stem else {
                throw TrainingError.invalid("pretrain: the --from backbone is \(b.label), the run needs \(arch.label)")
            }
            for name in initial.heads.keys where arch.heads[name] == nil { initial.removeHead(name) }
            for (name, record) in arch.heads.sorted(by: { $0.key < $1.key }) where initial.heads[name]?.record != record {
                initial.setHead(name, try Network.Head.make(record, component: name, seed: config.seed.value &+ 1))
            }
            network = initial
        } else {
            network = try Network(architecture: arch, seed: config.seed.value)
        }
        guard config.batchesPerEpoch == dataset.count / config.batchSize else {
            throw TrainingError.invalid("pretrain: \(config.data) has \(dataset.count) images, the run was configured for \(config.batchesPerEpoch) batches of \(config.batchSize)")
        }
        objective = try PretextObjective(method: config.method, network: network, temperature: config.temperature,
                                         emaDecay: config.emaDecay)
        if config.optimizer == "lars" {
            lars = LARS(parameters: objective.parameters, lr: config.lr, momentum: config.momentum,
                        weightDecay: config.weightDecay, eta: config.eta)
            sgd = nil
        } else {
            sgd = SGD(parameters: objective.parameters, lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay)
            lars = nil
        }
        try DataParallel.checkBatch(config.batchSize, option: "--batch-size")
        schedule = CosineSchedule(base: config.lr, warmup: config.warmupSteps, total: config.steps)
        var view1 = Augment.PretextView.view1, view2 = Augment.PretextView.view2
        view1.size = config.imageSize
        view2.size = config.imageSize
        let v1 = view1, v2 = view2
        let scale: Augment.PixelScale = config.pixelScale == "raw" ? .raw : .unit
        loader = DataLoader(dataset: dataset, batchSize: config.batchSize, shuffle: true, dropLast: true, seed: config.seed.value,
                            height: config.imageSize, width: config.imageSize, shard: DataParallel.shard) { image, rng in
            let (a, b) = Augment.pretextPair(image, using: &rng, views: (v1, v2), pixelScale: scale)
            return [a, b]
        }
    }

    /// The learning rate the next step uses.
    public var currentLR: Float { lars?.lr ?? sgd!.lr }

    // MARK: - state

    /// Everything needed to continue bit-exactly.
    public func captureState() -> TrainingState {
        var s = TrainingState(step: step)
        s.capture(network)
        s.capture(objective)
        if let lars { s.capture(lars) }
        if let sgd { s.capture(sgd) }
        s.capture(schedule)
        if lastLoss.isFinite { s.extra["lastLoss"] = .double(Double(lastLoss)) }
        return s
    }

    /// Restores `captureState()`'s output.
    /// - Throws: `TrainingError.invalid` naming the first missing or mis-sized entry.
    public func restoreState(_ s: TrainingState) throws {
        guard s.step >= 0 && s.step <= config.steps else {
            throw TrainingError.invalid("training state: step \(s.step) is outside 0...\(config.steps)")
        }
        try s.restore(network)
        try s.restore(objective)
        if let lars { try s.restore(lars) }
        if let sgd { try s.restore(sgd) }
        try s.restore(&schedule)
        step = s.step
        if case .double(let l)? = s.extra["lastLoss"] { lastLoss = Float(l) }
    }

    // MARK: - loop

    /// One optimiser step on `batch` (two views; this rank's shard under `mpirun`). Returns the loss
    /// (averaged over the ranks).
    /// - Throws: `TrainingError.invalid` when the loss is not finite (the run stops; its last saved state
    ///   stays resumable).
    @discardableResult
    public func trainStep(_ batch: Batch) throws -> Float {
        let n = batch.count, h = batch.height, w = batch.width
        let x1 = Tensor4(n: n, c: 3, h: h, w: w, data: batch.views[0])
        let x2 = Tensor4(n: n, c: 3, h: h, w: w, data: batch.views[1])
        objective.parameters.zeroGrad()
        let local = DataParallel.synchronizingBatchNorm { objective.lossAndGradient(view1: x1, view2: x2, mode: .train, updateEMA: true) }
        // Under mpirun: gradients and loss averaged over the ranks' shards (docs/distributed.md).
        let loss = DataParallel.averageGradients(objective.parameters, count: n, values: [local])[0]
        guard loss.isFinite else {
            throw TrainingError.invalid("pretrain: the loss is \(loss) at step \(step + 1) (lr \(currentLR)); lower --lr")
        }
        if let lars { lars.step() }
        if let sgd { sgd.step() }
        let next = schedule.step()
        lars?.lr = next
        sgd?.lr = next
        step += 1
        lastLoss = loss
        return loss
    }

    /// Trains from the current step to `config.steps` (or `stopAfter`, for tests: an interruption),
    /// logging `loss` and `lr` per step on `run` and saving the state when due (`--checkpoint-every`, about
    /// every 2 minutes of work otherwise), at the end of every epoch, and at the end.
    public func train(run: Run, stopAfter: Int? = nil) throws {
        let end = min(config.steps, stopAfter ?? config.steps)
        let perEpoch = config.batchesPerEpoch
        while step < end {
            let epoch = step / perEpoch
            let iterator = loader.epoch(epoch, startingAt: step % perEpoch)
            while step < end, step / perEpoch == epoch {
                guard let batch = try iterator.nextBatch() else {
                    throw TrainingError.invalid("pretrain: epoch \(epoch) of \(config.data) ended before its \(perEpoch) batches")
                }
                let lr = currentLR
                let loss = try trainStep(batch)
                run.log(step: step, phase: "pretext", ["loss": Double(loss), "lr": Double(lr)])
                try run.boundary(step: step, every: config.checkpointEvery, save: step == config.steps || step % perEpoch == 0) { captureState() }
            }
        }
    }

    /// The `pretext` entry: backbone + projector (+ predictor), provenance with the parent, the dataset
    /// (role `pretext`), every hyperparameter (the run's config), seeds, the metrics `pretext_loss` (last step)
    /// and `pretext_loss_mean_last_10pct` (mean over the last 10 % of the steps), per-step history.
    public func checkpoint(run: Run) -> Checkpoint {
        var p = run.provenance(stage: "pretext", method: config.method.rawValue)
        // the schema's relation for "made by pretraining from this parent" (schemas/provenance.schema.json)
        if let from = config.from { p.parents = [.init(id: from, relation: "pretrained-from", note: "pretraining continued from this entry (--from)")] }
        p.datasets = [.init(role: "pretext", uri: config.data, fingerprint: config.dataFingerprint)]
        p.seeds = ["seed": config.seed.recorded]
        let losses = run.history("loss").map(\.value)
        if let last = losses.last { p.metrics["pretext_loss"] = last }
        let tail = losses.suffix(max(1, losses.count / 10))
        if !tail.isEmpty { p.metrics["pretext_loss_mean_last_10pct"] = tail.reduce(0, +) / Double(tail.count) }
        return network.checkpoint(provenance: p)
    }
}
