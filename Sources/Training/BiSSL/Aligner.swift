import Checkpoint
import Collections
import Datasets
import Engine
import Foundation

/// Hyperparameters of a BiSSL alignment (docs/bissl.md, "The alternation loop" and "Default settings"; defaults are the reference implementation's).
public struct AlignmentSettings: Sendable, Equatable {
    /// T: lower/upper alternations (500).
    public var alternations = 500
    /// NL, NU: steps per lower / upper phase (20, 8).
    public var lowerSteps = 20, upperSteps = 8
    /// λ, δ, K, CG variant, HVP scheme, `--no-ij`.
    public var implicit = ImplicitGradientOptions()
    /// Head-only warmup epochs over the downstream train set (20).
    public var warmupEpochs = 20
    /// Upper level and warmup: SGD LR, weight decay, momentum (per dataset; docs/bissl.md, "Default settings").
    public var dLR: Float = 0.03, dWD: Float = 1e-3, dMomentum: Float = 0.9
    /// The head-only warmup's SGD LR when it differs from `dLR` (`AlignPlan.warmupLR`: capped by the
    /// feature scale); nil: `dLR`.
    public var warmupLR: Float?
    /// Lower level: LARS LR, weight decay, momentum, η (1.0, 1e-6, 0.9, 0.001).
    public var pLR: Float = 1.0, pWD: Float = 1e-6, pMomentum: Float = 0.9, pEta: Float = 0.001
    /// Global gradient-norm bound at both levels (10).
    public var clip: Float = 10
    /// Pretext batch (images; two views each) and downstream batch (1024, 256; drop_last).
    public var pBatchSize = 1024, dBatchSize = 256
    /// Side of the square images both pipelines produce (96 in the reference implementation).
    public var imageSize = 96
    /// Pixel scale of the pretext views (the reference implementation's pixel scale is `.raw`).
    public var pixelScale: Augment.PixelScale = .raw
    /// Base seed: loader orders and augmentations derive from it (never from a generator living across steps).
    public var seed: UInt64 = 0
    /// Images per forward pass when measuring validation top-1 (memory only).
    public var evalBatchSize = 256
    /// The downstream training augmentation of the warmup and upper steps (`--augment`; the paper's by default).
    public var augmentation = DownstreamAugmentation.standard
    /// Most images in the fixed held-out pretext batch (fewer when `pBatchSize` or the held-out set is smaller).
    public var heldOutBatchSize = 256

    public init() {}

    /// Lower LR schedule: warmup 10·NL steps (the reference implementation: 200), cosine to 0.001× over T·NL steps. For T ≤ 10
    /// the warmup is shortened to T·NL − 1 steps (CosineSchedule needs total > warmup).
    public var lowerSchedule: CosineSchedule {
        let total = max(1, alternations * lowerSteps)
        return CosineSchedule(base: pLR, warmup: min(10 * lowerSteps, total - 1), total: total)
    }

    /// Upper LR schedule: cosine from d_lr to 0.001·d_lr over T·NU steps, no warmup.
    public var upperSchedule: CosineSchedule {
        CosineSchedule(base: dLR, warmup: 0, total: max(1, alternations * upperSteps))
    }
}

/// The BiSSL alternation loop of docs/bissl.md, "The alternation loop" on a `Run`:
///
/// 1. head-only linear warmup of φ_D on θ_D (`LinearWarmup`), `warmupEpochs` epochs (loader epochs
///    0..<E of the downstream loader);
/// 2. for t = 1...T: NL lower steps (`LowerLevel`: pretext loss + (λ/2)||θ_P − θ_D||², clip, LARS, lower
///    schedule); one Hessian batch B_H (first batch of epoch t of a separately seeded pretext loader: a
///    fresh random batch with fresh augmentations per alternation, as docs/bissl.md "The alternation loop" allows), fixed for the
///    phase; NU upper steps (`UpperLevel`, SGD, upper schedule); validation top-1 of (θ_D, φ_D) logged;
///    state saved.
///
/// Each phase performs exactly NL / NU steps through persistent `PhaseCursor`s. Schedulers step after
/// each optimiser step and optimisers start at the base LR, so the first step of each level runs at
/// full LR, as in the reference implementation. Logged metrics (Run log, curves, provenance history): `loss_warmup`, `loss_lower`
/// (pretext), `loss_reg`, `penalty_share` (λ·‖θ_P − θ_D‖ / ‖∇_θP L_P‖ per lower step), `loss_upper` (ℓ1, through θ_P),
/// `loss_upper_direct` (ℓ2), `ij_relative_hessian` (||Hg||/((λ+δ)||g||)), `upper_val_top1` (% per alternation, the upper model θ_D with φ_D),
/// `upper_val_top1_warmup`, and with held-out pretext data `loss_pretext_heldout` (per alternation, after its
/// upper phase) and `loss_pretext_heldout_start` (before the first): the pretext loss of θ_P, φ_P on one
/// fixed batch (`heldOutPretextLoss`).
///
/// Resume: the state (both networks with BN buffers, the BYOL target, the three optimisers, both
/// schedules, the two cursors, phase counters) is saved after every warmup epoch and every alternation;
/// a resumed run repeats the interrupted epoch/alternation from that state and produces bit-identical
/// weights.
public final class Aligner {
    public let settings: AlignmentSettings
    public let pretext: PretextObjective
    /// θ_D with its `classifier` head φ_D.
    public let downstream: Network
    public let lower: LowerLevel
    public let upper: UpperLevel
    public let warmup: LinearWarmup
    public let implicit: ImplicitGradient
    let pretextLoader: DataLoader, hessianLoader: DataLoader, downstreamLoader: DataLoader
    let validation: ImageDataset?
    /// The fixed held-out pretext batch (two views), nil without held-out pretext data.
    let heldOut: (view1: Tensor4, view2: Tensor4)?
    var lowerSchedule: CosineSchedule, upperSchedule: CosineSchedule
    var pretextCursor = PhaseCursor()
    var downstreamCursor: PhaseCursor
    var warmupEpochsDone = 0, alternationsDone = 0, step = 0
    /// Wall-clock seconds of each alternation run in this process (lower + B_H + upper + validation).
    public private(set) var alternationSeconds: [Double] = []

    /// - Parameters:
    ///   - pretext: θ_P and φ_P (SimCLR projector, or BYOL projector + predictor and its target).
    ///   - downstream: θ_D (normally a copy of θ_P) with a linear `classifier` head φ_D.
    ///   - pretextData, trainData, validationData: pretext images, downstream train / val splits.
    ///   - pretextHeldOut: pretext images the lower level never trains on; the held-out batch is the first
    ///     min(`pBatchSize`, `heldOutBatchSize`, count) of them in a seeded order, with seeded pretext views,
    ///     drawn once.
    /// - Throws: `TrainingError.invalid` for a batch larger than its dataset, a missing classifier,
    ///   mismatched backbones, or held-out pretext data of fewer than 2 images.
    public init(settings: AlignmentSettings, pretext: PretextObjective, downstream: Network,
                pretextData: ImageDataset, trainData: ImageDataset, validationData: ImageDataset?,
                pretextHeldOut: ImageDataset? = nil) throws {
        self.settings = settings
        self.pretext = pretext
        self.downstream = downstream
        guard downstream.backbone.architecture == pretext.network.backbone.architecture else {
            throw TrainingError.invalid("BiSSL: θ_D and θ_P must have the same backbone architecture")
        }
        guard settings.alternations > 0, settings.lowerSteps >= 0, settings.upperSteps >= 0, settings.warmupEpochs >= 0 else {
            throw TrainingError.invalid("BiSSL: alternations must be positive and step/epoch counts non-negative")
        }
        guard settings.implicit.iterations > 0 || !settings.implicit.enabled else {
            throw TrainingError.invalid("BiSSL: --cg-iters must be positive (or use --no-ij)")
        }
        guard settings.pBatchSize >= 2, settings.dBatchSize >= 2 else {
            throw TrainingError.invalid("BiSSL: batch sizes must be at least 2 (train-mode BatchNorm)")
        }
        guard pretextData.count >= settings.pBatchSize else {
            throw TrainingError.invalid("BiSSL: the pretext set has \(pretextData.count) images, fewer than --p-batch-size \(settings.pBatchSize)")
        }
        guard trainData.count >= settings.dBatchSize else {
            throw TrainingError.invalid("BiSSL: the downstream set has \(trainData.count) images, fewer than --d-batch-size \(settings.dBatchSize)")
        }
        try DataParallel.checkBatch(settings.pBatchSize, option: "--p-batch-size")
        try DataParallel.checkBatch(settings.dBatchSize, option: "--d-batch-size")
        let shard = DataParallel.shard
        let size = settings.imageSize
        var view1 = Augment.PretextView.view1, view2 = Augment.PretextView.view2
        view1.size = size
        view2.size = size
        let v1 = view1, v2 = view2
        let scale = settings.pixelScale
        let pair: SampleTransform = { image, rng in
            let (a, b) = Augment.pretextPair(image, using: &rng, views: (v1, v2), pixelScale: scale)
            return [a, b]
        }
        pretextLoader = DataLoader(dataset: pretextData, batchSize: settings.pBatchSize, shuffle: true, dropLast: true,
                                   seed: Self.derive(settings.seed, 1), height: size, width: size, shard: shard, transform: pair)
        hessianLoader = DataLoader(dataset: pretextData, batchSize: settings.pBatchSize, shuffle: true, dropLast: true,
                                   seed: Self.derive(settings.seed, 2), height: size, width: size, prefetch: 1, shard: shard,
                                   transform: pair)
        downstreamLoader = Self.downstreamLoader(trainData, settings: settings)
        if let set = pretextHeldOut {
            let n = min(settings.pBatchSize, settings.heldOutBatchSize, set.count)
            guard n >= 2 else { throw TrainingError.invalid("BiSSL: the held-out pretext data has \(set.count) image; it needs at least 2") }
            let loader = DataLoader(dataset: set, batchSize: n, shuffle: true, dropLast: true, seed: Self.derive(settings.seed, 4),
                                    height: size, width: size, prefetch: 1, transform: pair)
            guard let b = try loader.epoch(0).nextBatch() else { throw TrainingError.invalid("BiSSL: no held-out pretext batch") }
            heldOut = (Tensor4(n: b.count, c: 3, h: size, w: size, data: b.views[0]),
                       Tensor4(n: b.count, c: 3, h: size, w: size, data: b.views[1]))
        } else {
            heldOut = nil
        }
        validation = validationData
        implicit = ImplicitGradient(pretext: pretext, options: settings.implicit)
        lower = LowerLevel(pretext: pretext, downstream: downstream.backbone, lambda: settings.implicit.lambda, clip: settings.clip,
                           lr: settings.pLR, weightDecay: settings.pWD, momentum: settings.pMomentum, eta: settings.pEta)
        upper = try UpperLevel(pretext: pretext, downstream: downstream, implicit: implicit, clip: settings.clip,
                               lr: settings.dLR, weightDecay: settings.dWD, momentum: settings.dMomentum)
        warmup = try LinearWarmup(downstream: downstream, lr: settings.warmupLR ?? settings.dLR, weightDecay: settings.dWD,
                                  momentum: settings.dMomentum)
        lowerSchedule = settings.lowerSchedule
        upperSchedule = settings.upperSchedule
        downstreamCursor = PhaseCursor(epoch: settings.warmupEpochs)
    }

    /// The downstream training batches (warmup and upper steps): shuffled from `seed` derivation 3,
    /// `Augment.downstreamTrain` at the image size, full batches only.
    /// The downstream loader: `shard` of each global batch (default: this rank's under `mpirun`).
    static func downstreamLoader(_ trainData: ImageDataset, settings: AlignmentSettings,
                                 shard: DataShard = DataParallel.shard) -> DataLoader {
        let size = settings.imageSize, augmentation = settings.augmentation
        return DataLoader(dataset: trainData, batchSize: settings.dBatchSize, shuffle: true, dropLast: true,
                          seed: Self.derive(settings.seed, 3), height: size, width: size, shard: shard) { image, rng in
            [augmentation.apply(image, using: &rng, size: size)]
        }
    }

    /// The first global downstream batch of the warmup, all D images `[D, 3, S, S]` whatever the
    /// number of ranks (what `AlignPlan.measure` measures on: the plan is the one-process run's).
    /// - Throws: `TrainingError.invalid` when the data gives no full batch; reader errors.
    public static func firstDownstreamBatch(_ trainData: ImageDataset, settings: AlignmentSettings) throws -> Tensor4 {
        guard let b = try downstreamLoader(trainData, settings: settings, shard: .whole).epoch(0).nextBatch() else {
            throw TrainingError.invalid("BiSSL: the downstream data gives no batch of \(settings.dBatchSize)")
        }
        return Tensor4(n: b.count, c: 3, h: settings.imageSize, w: settings.imageSize, data: b.views[0])
    }

    /// A seed for one data stream from the base seed (SplitMix64 finaliser of seed + k·golden ratio).
    static func derive(_ seed: UInt64, _ k: UInt64) -> UInt64 {
        var z = seed &+ k &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Steps of warmup (one per downstream batch) plus T·(NL + NU).
    public var totalSteps: Int {
        settings.warmupEpochs * downstreamLoader.batchesPerEpoch + settings.alternations * (settings.lowerSteps + settings.upperSteps)
    }

    /// Seeds of each data stream, for the provenance.
    public var seeds: [String: Int64] {
        ["seed": Int64(bitPattern: settings.seed), "pretextLoader": Int64(bitPattern: pretextLoader.seed),
         "hessianLoader": Int64(bitPattern: hessianLoader.seed), "downstreamLoader": Int64(bitPattern: downstreamLoader.seed)]
    }

    // MARK: - state

    /// Everything needed to continue bit-exactly.
    public func captureState() -> TrainingState {
        var s = TrainingState(step: step)
        s.capture(pretext.network, prefix: "model/p")
        s.capture(downstream, prefix: "model/d")
        s.capture(pretext, prefix: "byol")
        s.capture(warmup.optimizer, prefix: "opt/warmup")
        s.capture(lower.optimizer, prefix: "opt/lars")
        s.capture(upper.optimizer, prefix: "opt/sgd")
        s.capture(lowerSchedule, prefix: "sched/lower")
        s.capture(upperSchedule, prefix: "sched/upper")
        s.integers["bissl/warmup_epochs_done"] = Int64(warmupEpochsDone)
        s.integers["bissl/alternations_done"] = Int64(alternationsDone)
        s.capture(pretextCursor, prefix: "cursor/pretext")
        s.capture(downstreamCursor, prefix: "cursor/downstream")
        return s
    }

    /// Restores what `captureState` saved.
    /// - Throws: `TrainingError.invalid` for a state of another configuration.
    public func restore(_ s: TrainingState) throws {
        try s.restore(pretext.network, prefix: "model/p")
        try s.restore(downstream, prefix: "model/d")
        try s.restore(pretext, prefix: "byol")
        try s.restore(warmup.optimizer, prefix: "opt/warmup")
        try s.restore(lower.optimizer, prefix: "opt/lars")
        try s.restore(upper.optimizer, prefix: "opt/sgd")
        try s.restore(&lowerSchedule, prefix: "sched/lower")
        try s.restore(&upperSchedule, prefix: "sched/upper")
        warmupEpochsDone = Int(try s.integer("bissl/warmup_epochs_done"))
        alternationsDone = Int(try s.integer("bissl/alternations_done"))
        try s.restore(&pretextCursor, prefix: "cursor/pretext")
        try s.restore(&downstreamCursor, prefix: "cursor/downstream")
        step = s.step
    }

    // MARK: - loop

    /// Runs (or continues, after `restore`) the whole alignment, logging to `run` and saving its state.
    /// - Throws: data errors, state-writing errors.
    /// - Parameter stopAfter: stop (state saved) once this many alternations are done; nil runs all.
    public func run(_ run: Run, stopAfter: Int? = nil) throws {
        let S = settings.imageSize
        func tensor(_ data: [Float], _ n: Int) -> Tensor4 { Tensor4(n: n, c: 3, h: S, w: S, data: data) }
        let progress = run.progress
        // 1. head-only warmup
        while warmupEpochsDone < settings.warmupEpochs {
            let iterator = downstreamLoader.epoch(warmupEpochsDone)
            while let b = try iterator.nextBatch() {
                let loss = warmup.step(images: tensor(b.views[0], b.count), labels: b.labels)
                step += 1
                progress.update(step: step, metrics: ["loss_warmup": Double(loss)],
                                phase: "warmup epoch \(warmupEpochsDone + 1)/\(settings.warmupEpochs)")
                run.log(step: step, phase: "warmup", ["loss_warmup": Double(loss)])
            }
            warmupEpochsDone += 1
            if warmupEpochsDone == settings.warmupEpochs, let top1 = try validationTop1() {
                run.log(step: step, phase: "val", ["upper_val_top1_warmup": top1])
            }
            try run.saveState(captureState())
        }
        // 2. alternations
        while alternationsDone < min(settings.alternations, stopAfter ?? .max) {
            let t = alternationsDone + 1
            let started = Date()
            let label = "alternation \(t)/\(settings.alternations)"
            var lowerLosses: [Double] = [], upperLosses: [Double] = []
            if t == 1, let loss = heldOutPretextLoss() {
                run.log(step: step, phase: "val", ["loss_pretext_heldout_start": loss])
            }
            try pretextCursor.run(settings.lowerSteps, on: pretextLoader) { b in
                let r = lower.step(view1: tensor(b.views[0], b.count), view2: tensor(b.views[1], b.count))
                lower.optimizer.lr = lowerSchedule.step()
                step += 1
                lowerLosses.append(Double(r.pretextLoss))
                // progress first (it shows alternation t/T), then the log line (which also updates progress)
                progress.update(step: step, metrics: ["loss_lower": Double(r.pretextLoss)], phase: label + " lower")
                var m = ["loss_lower": Double(r.pretextLoss), "loss_reg": Double(r.regulariser)]
                if let share = r.penaltyShare { m["penalty_share"] = share }
                run.log(step: step, phase: "lower", m)
            }
            if settings.implicit.enabled && settings.upperSteps > 0 {
                guard let b = try hessianLoader.epoch(t).nextBatch() else {
                    throw TrainingError.invalid("BiSSL: the pretext loader produced no Hessian batch")
                }
                implicit.setHessianBatch(view1: tensor(b.views[0], b.count), view2: tensor(b.views[1], b.count))
            }
            try downstreamCursor.run(settings.upperSteps, on: downstreamLoader) { b in
                let r = upper.step(images: tensor(b.views[0], b.count), labels: b.labels)
                upper.optimizer.lr = upperSchedule.step()
                step += 1
                upperLosses.append(Double(r.lowerPathLoss))
                var m = ["loss_upper": Double(r.lowerPathLoss), "loss_upper_direct": Double(r.directLoss)]
                if let q = r.relativeHessianTerm { m["ij_relative_hessian"] = q }
                progress.update(step: step, metrics: ["loss_lower": lowerLosses.last ?? .nan, "loss_upper": Double(r.lowerPathLoss)],
                                phase: label + " upper")
                run.log(step: step, phase: "upper", m)
            }
            var summary: [String: Double] = [:]
            if !lowerLosses.isEmpty { summary["loss_lower"] = lowerLosses.reduce(0, +) / Double(lowerLosses.count) }
            if !upperLosses.isEmpty { summary["loss_upper"] = upperLosses.reduce(0, +) / Double(upperLosses.count) }
            if let top1 = try validationTop1() {
                summary["upper_val_top1"] = top1
                run.log(step: step, phase: "val", ["upper_val_top1": top1])
            }
            if let loss = heldOutPretextLoss() {
                summary["loss_pretext_heldout"] = loss
                run.log(step: step, phase: "val", ["loss_pretext_heldout": loss])
            }
            alternationsDone += 1
            try run.saveState(captureState())
            alternationSeconds.append(Date().timeIntervalSince(started))
            progress.update(step: step, metrics: summary, phase: label)
        }
    }

    /// Top-1 (%) of (θ_D, φ_D) in eval mode on the validation set (downstream test transform,
    /// `ClassificationMetrics.topK`); nil without a validation set. Leaves every parameter and BN
    /// buffer as it was.
    public func validationTop1() throws -> Double? {
        guard let validation, validation.count > 0 else { return nil }
        let features = try FrozenFeatures.extract(backbone: downstream.backbone, dataset: validation, imageSize: settings.imageSize,
                                                  batchSize: settings.evalBatchSize)
        let logits = upper.classifier.forward(features.features)
        return ClassificationMetrics.topK(logits, labels: features.labels, k: 1)
    }

    /// The pretext loss of θ_P, φ_P on the fixed held-out batch: batch statistics normalise (as in a
    /// lower step) but BN running statistics, BYOL's target and every parameter stay as they were;
    /// nil without held-out pretext data.
    public func heldOutPretextLoss() -> Double? {
        guard let heldOut else { return nil }
        let params = pretext.parameters
        params.zeroGrad()
        let loss = pretext.lossAndGradient(view1: heldOut.view1, view2: heldOut.view2, mode: .trainFrozenStatistics, updateEMA: false)
        params.zeroGrad()
        return Double(loss)
    }

    /// The network to publish: θ_P with its pretext heads (φ_P) and the downstream classifier φ_D.
    public func outputNetwork() -> Network {
        let out = pretext.network
        out.setHead("classifier", .linear(upper.classifier))
        return out
    }
}
