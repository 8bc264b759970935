import Checkpoint
import Collections
import Datasets
import Engine
import Foundation

/// Options of a fine-tuning run (docs/bissl.md, "Default settings"), resolved (no defaults left open).
public struct FineTuneSettings: Equatable, Sendable {
    /// Passes over the training data per trial (used when `steps` is nil).
    public var epochs: Int
    /// Optimiser steps per trial; overrides `epochs` when set.
    public var steps: Int?
    public var batchSize: Int
    /// Base learning rate of the cosine schedule (ignored by `--search` trials, which draw their own).
    public var lr: Double
    /// Weight decay on every parameter (ignored by `--search` trials).
    public var weightDecay: Double
    public var momentum: Double
    /// Side S of the train and test transforms.
    public var imageSize: Int
    /// Seed of the classifier init, the data order and augmentation, and the search draws.
    public var seed: UInt64
    /// Random-search trials (0: one run at `lr` / `weightDecay`).
    public var search: Int
    /// Save the training state every this many steps (nil: after about 120 s of work), and always at
    /// the end of each epoch and of each trial.
    public var checkpointEvery: Int?
    /// The training images' random augmentation (default: the paper's, `crop:0.08+flip`).
    public var augmentation: DownstreamAugmentation
    /// Which weights a trial delivers: those after its last step, or those after the epoch with the
    /// highest validation top-1 (the earliest such epoch on a tie).
    public var keep: FineTuneKeep

    public init(epochs: Int = 10, steps: Int? = nil, batchSize: Int = 256, lr: Double = 0.1, weightDecay: Double = 1e-3,
                momentum: Double = 0.9, imageSize: Int, seed: UInt64 = 0, search: Int = 0, checkpointEvery: Int? = nil,
                augmentation: DownstreamAugmentation = .standard, keep: FineTuneKeep = .last) {
        self.epochs = epochs; self.steps = steps; self.batchSize = batchSize; self.lr = lr; self.weightDecay = weightDecay
        self.momentum = momentum; self.imageSize = imageSize; self.seed = seed; self.search = search
        self.checkpointEvery = checkpointEvery; self.augmentation = augmentation; self.keep = keep
    }

    /// The paper's search space (docs/bissl.md, "Default settings"): lr log-uniform on [1e-4, 1] quantised to 1e-6, wd
    /// log-uniform on [1e-5, 1e-2] quantised to 1e-7 (Ray Tune `qloguniform`), trial `t` drawn from
    /// `SeededRNG(seed ^ 0x5EA4C4, t)` alone, so a resumed search draws the same values.
    public static func searchDraw(seed: UInt64, trial: Int) -> (lr: Double, weightDecay: Double) {
        var rng = SeededRNG(seed: (seed ^ 0x5EA4C4) &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(trial + 1))
        // quantised as k / scale (an integer over a power of ten: the double nearest the decimal k * 1e-6)
        func logUniform(_ lo: Double, _ hi: Double, scale: Double) -> Double {
            let v = Foundation.exp(Foundation.log(lo) + rng.unitDouble() * (Foundation.log(hi) - Foundation.log(lo)))
            return max(lo, min(hi, (v * scale).rounded() / scale))
        }
        let lr = logUniform(1e-4, 1, scale: 1e6)
        let wd = logUniform(1e-5, 1e-2, scale: 1e7)
        return (lr, wd)
    }

    /// The default batch size for `count` training images: 256 (the paper's), or for small data the
    /// largest power of two at most count / 8 (at least 8), so an epoch has about 8 steps or more.
    public static func defaultBatchSize(trainCount: Int) -> Int {
        var b = 8
        while b * 2 <= min(256, trainCount / 8) { b *= 2 }
        return b
    }
}

/// Which weights a fine-tuning trial delivers (`bissl finetune --keep`).
public enum FineTuneKeep: String, Codable, CaseIterable, Sendable {
    /// The weights after the last step (the paper's protocol reports the best epoch's top-1 but keeps these).
    case last
    /// The weights after the epoch with the highest validation top-1: model selection on validation, so
    /// a test top-1 of the entry is the test top-1 at the best validation epoch.
    case best
}

/// One trial of a fine-tuning run (the only one without `--search`).
public struct FineTuneTrial: Encodable, Equatable, Sendable {
    public var index: Int
    public var lr: Double
    public var weightDecay: Double
    /// Validation top-1 (%) after each epoch (and after the last step if it ends mid-epoch).
    public var valTop1: [Double]
    /// Validation top-1 of the model the trial delivers: after its last step (`FineTuneKeep.last`) or
    /// at its best epoch (`FineTuneKeep.best`).
    public var top1: Double?
    /// Maximum of `valTop1` (the paper's `best_top1_acc`) and its 1-based evaluation index (the epoch,
    /// for a run counted in epochs; 0 in an entry's record of a run counted in steps, which has `bestStep`).
    public var bestTop1: Double
    public var bestEpoch: Int
    /// The step of the trial (1-based) after which `bestTop1` was measured; nil in records saved before
    /// it was recorded (`FineTuner.bestStep` derives it then).
    public var bestStep: Int?

    public init(index: Int, lr: Double, weightDecay: Double) {
        self.index = index; self.lr = lr; self.weightDecay = weightDecay
        valTop1 = []; top1 = nil; bestTop1 = -1; bestEpoch = 0
    }

    /// The trial's record in the training state (camelCase keys).
    var json: JSONValue { record(countedInSteps: false) }

    /// The trial's record, in the entry's `trials` hyperparameter: without `bestEpoch` when the run is
    /// counted in steps (`--steps`: an epoch index means nothing there; `bestStep` says where the best was).
    func record(countedInSteps: Bool) -> JSONValue {
        var o: [String: JSONValue] = ["trial": .int(Int64(index)), "lr": .double(lr), "wd": .double(weightDecay),
                                      "bestTop1": .double(bestTop1), "valTop1": .array(valTop1.map(JSONValue.double))]
        if !countedInSteps { o["bestEpoch"] = .int(Int64(bestEpoch)) }
        if let bestStep { o["bestStep"] = .int(Int64(bestStep)) }
        if let top1 { o["top1"] = .double(top1) }
        return .object(o)
    }

    /// Reads `record`, also a record saved before the camelCase keys (`best_top1`, ...; `RecordedSettings`).
    public init(json: JSONValue) throws {
        guard case .object(let o) = json, case .int(let i)? = o["trial"], let lr = o["lr"]?.doubleValue,
              let wd = o["wd"]?.doubleValue, let best = RecordedSettings.number("bestTop1", in: o),
              case .array(let v)? = RecordedSettings.value("valTop1", in: o) else {
            throw TrainingError.invalid("training state: unreadable trial record \(json)")
        }
        let bestStep = RecordedSettings.integer("bestStep", in: o)
        guard let be = RecordedSettings.integer("bestEpoch", in: o) ?? (bestStep != nil ? 0 : nil) else {
            throw TrainingError.invalid("training state: unreadable trial record \(json)")
        }
        index = Int(i); self.lr = lr; weightDecay = wd; bestTop1 = best; bestEpoch = be; self.bestStep = bestStep
        valTop1 = v.compactMap(\.doubleValue)
        top1 = o["top1"]?.doubleValue
    }

    private enum CodingKeys: String, CodingKey { case index, lr, weightDecay, valTop1, top1, bestTop1, bestEpoch, bestStep }

    /// `bissl finetune --json`'s trial: `bestEpoch` only when known (not for a run counted in steps).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index); try c.encode(lr, forKey: .lr); try c.encode(weightDecay, forKey: .weightDecay)
        try c.encode(valTop1, forKey: .valTop1); try c.encodeIfPresent(top1, forKey: .top1); try c.encode(bestTop1, forKey: .bestTop1)
        if bestEpoch > 0 { try c.encode(bestEpoch, forKey: .bestEpoch) }
        try c.encodeIfPresent(bestStep, forKey: .bestStep)
    }
}

extension JSONValue {
    var doubleValue: Double? {
        switch self {
        case .double(let d): d
        case .int(let i): Double(i)
        default: nil
        }
    }
}

/// Full fine-tuning (docs/bissl.md, "Default settings"): every parameter of backbone + classifier trained with SGD
/// (momentum 0.9, weight decay on all parameters, PyTorch semantics), cosine schedule from `lr` to
/// `0.001 * lr` stepped per iteration without warmup, cross-entropy, the downstream train transform
/// (`FineTuneSettings.augmentation` at `imageSize`, by default RandomResizedCrop ratio (0.5, 1), flip), BatchNorm in
/// train mode; top-1 on the validation data (eval mode, test transform) after every epoch.
///
/// With `search > 0`, trial `t` trains from the same start weights with `searchDraw(seed, t)`,
/// the same data order, and the same budget; the delivered network is the trial with the highest
/// validation top-1 of the model it delivers (the earlier trial on a tie). With `keep == .best` a trial
/// delivers its weights after its best validation epoch instead of its last step.
///
/// Resumable bit-exactly on the Runs API: the state (`Run.saveState`) holds the current trial's
/// network (parameters and BN buffers), SGD momentum buffers and LR, schedule counter, the trials
/// so far, the best trial's network and (with `keep == .best`) the current trial's best-epoch network; batches depend only on (seed, epoch, position). The last
/// training batch of an epoch is dropped only when it would hold a single image (train-mode BN
/// needs more than one value per channel).
public final class FineTuner {
    public let config: FineTuneSettings
    public let train: ImageDataset
    public let val: ImageDataset
    public let run: Run
    /// Called after every completed step with the global step count; returning true saves the
    /// state and stops the run (as an interruption would), `run()` then returns nil.
    public var shouldStop: ((Int) -> Bool)?

    private let startComponents: OrderedDictionary<String, StateDict>
    private let architecture: Architecture
    private let loader: DataLoader

    /// Steps of one trial.
    public let stepsPerTrial: Int
    public var trialCount: Int { max(config.search, 1) }
    public var totalSteps: Int { trialCount * stepsPerTrial }
    public var batchesPerEpoch: Int { loader.batchesPerEpoch }

    /// Whether the last, short batch of an epoch is dropped: when some rank's shard of it would hold
    /// fewer than 2 images (train-mode BatchNorm), i.e. a remainder of 1 for a single process.
    static func dropsLast(_ config: FineTuneSettings, trainCount: Int) -> Bool {
        let remainder = trainCount % config.batchSize
        return remainder > 0 && trainCount > config.batchSize && DataParallel.shard.smallest(of: remainder) < 2
    }

    /// Steps per trial for a config and training set (what `Run.create` needs before a tuner exists).
    public static func stepsPerTrial(_ config: FineTuneSettings, trainCount: Int) -> Int {
        if let steps = config.steps { return steps }
        let dropLast = dropsLast(config, trainCount: trainCount)
        let perEpoch = dropLast ? trainCount / config.batchSize : (trainCount + config.batchSize - 1) / config.batchSize
        return config.epochs * perEpoch
    }

    /// - Parameters:
    ///   - start: backbone + `classifier` to start every trial from (read once; not modified).
    /// - Throws: `TrainingError.invalid` when `start` has no classifier, or the config is out of range.
    public init(config: FineTuneSettings, start: Network, train: ImageDataset, val: ImageDataset, run: Run) throws {
        guard start.heads["classifier"] != nil else { throw TrainingError.invalid("fine-tuning needs a classifier head") }
        guard config.batchSize >= 1 else { throw TrainingError.invalid("--batch-size must be at least 1") }
        guard config.epochs >= 1 || (config.steps ?? 0) >= 1 else { throw TrainingError.invalid("--epochs and --steps must be at least 1") }
        guard config.search >= 0 else { throw TrainingError.invalid("--search must be 0 or more") }
        guard config.lr > 0, config.weightDecay >= 0 else { throw TrainingError.invalid("--lr must be positive and --wd not negative") }
        guard train.count >= 2 else { throw TrainingError.invalid("fine-tuning needs at least 2 training images, --data has \(train.count)") }
        self.config = config
        self.train = train
        self.val = val
        self.run = run
        startComponents = start.components()
        architecture = start.architecture
        let size = config.imageSize, augmentation = config.augmentation
        try DataParallel.checkBatch(min(config.batchSize, train.count), option: "--batch-size")
        loader = DataLoader(dataset: train, batchSize: config.batchSize, shuffle: true,
                            dropLast: Self.dropsLast(config, trainCount: train.count), seed: config.seed, height: size, width: size,
                            shard: DataParallel.shard) { image, rng in
            [augmentation.apply(image, using: &rng, size: size)]
        }
        stepsPerTrial = Self.stepsPerTrial(config, trainCount: train.count)
        guard stepsPerTrial >= 1 else { throw TrainingError.invalid("the run would have no steps") }
    }

    /// A network with the start weights.
    func freshNetwork() throws -> Network {
        try Network(checkpoint: Checkpoint(components: startComponents, architecture: architecture, provenance: Provenance(stage: "finetune")))
    }

    /// The (lr, wd) of trial `t`.
    public func hyperparameters(trial t: Int) -> (lr: Double, weightDecay: Double) {
        config.search > 0 ? FineTuneSettings.searchDraw(seed: config.seed, trial: t) : (config.lr, config.weightDecay)
    }

    /// One SGD step on a batch: train-mode forward of backbone and classifier, cross-entropy, backward,
    /// `sgd.step()`. Gradients are zeroed first. Returns the loss before the step.
    public static func trainStep(_ net: Network, sgd: SGD, images: Tensor4, labels: [Int]) -> Float {
        let classifier = net.heads["classifier"]!
        sgd.parameters.zeroGrad()
        let local = DataParallel.synchronizingBatchNorm {
            let features = net.backbone.forward(images, mode: .train)
            let logits = classifier.forward(features, mode: .train)
            let (local, grad) = CrossEntropy.forward(logits: logits, labels: labels)
            net.backbone.backward(classifier.backward(grad))
            return local
        }
        // Under mpirun: gradients and loss averaged over the ranks' shards (docs/distributed.md).
        let loss = DataParallel.averageGradients(sgd.parameters, count: images.n, values: [local])[0]
        sgd.step()
        return loss
    }

    /// The parameters SGD updates: backbone then classifier (weight decay on all, docs/bissl.md, "Default settings").
    static func parameters(_ net: Network) -> [Parameter] {
        net.backbone.parameters + net.heads["classifier"]!.parameters
    }

    /// Top-1 (%) of `net` on the validation data (eval mode, test transform; nothing changes in `net`).
    public func validate(_ net: Network) throws -> Double {
        let features = try FrozenFeatures.extract(backbone: net.backbone, dataset: val, imageSize: config.imageSize, batchSize: 256)
        let logits = net.heads["classifier"]!.forward(features.features, mode: .eval)
        let classes = logits.cols
        if let bad = features.labels.first(where: { $0 >= classes }) {
            throw TrainingError.invalid("validation label \(bad) is outside the classifier's \(classes) classes")
        }
        return ClassificationMetrics.topK(logits, labels: features.labels, k: 1)
    }

    /// What a finished run delivers.
    public struct Outcome {
        /// The chosen trial's network (backbone + classifier) at the end of its training.
        public var network: Network
        public var trials: [FineTuneTrial]
        public var chosen: Int
    }

    /// Runs (or resumes, from `run.loadState()`) every trial.
    /// - Returns: the outcome, or nil when `shouldStop` stopped the run (the state is saved).
    /// - Throws: dataset read errors, state errors (`TrainingError`).
    public func runAll() throws -> Outcome? {
        let T = stepsPerTrial
        let state = try run.loadState()
        var g = state?.step ?? 0
        var trials: [FineTuneTrial] = []
        var bestNet: Network?
        var bestIndex = -1
        if let state {
            if case .array(let a)? = state.extra["trials"] { trials = try a.map(FineTuneTrial.init(json:)) }
            if let b = RecordedSettings.integer("bestTrial", in: state.extra), b >= 0 {
                bestIndex = b
                let net = try freshNetwork()
                try state.restore(net, prefix: "best")
                bestNet = net
            }
        }
        let bpe = loader.batchesPerEpoch
        let phaseTrain = config.search > 0 ? { (t: Int) in "trial\(t)" } : { (_: Int) in "train" }
        let phaseVal = config.search > 0 ? { (t: Int) in "trial\(t)-val" } : { (_: Int) in "val" }

        while g < trialCount * T {
            let t = g / T
            let s0 = g % T
            let (lr, wd) = hyperparameters(trial: t)
            let net = try freshNetwork()
            let sgd = SGD(parameters: Self.parameters(net), lr: Float(lr), momentum: Float(config.momentum), weightDecay: Float(wd))
            var schedule = CosineSchedule(base: Float(lr), warmup: 0, total: T)
            var current = FineTuneTrial(index: t, lr: lr, weightDecay: wd)
            var bestEpochNet: Network?
            if s0 > 0, let state {
                try state.restore(net)
                try state.restore(sgd)
                try state.restore(&schedule)
                if let c = state.extra["current"] { current = try FineTuneTrial(json: c) }
                if config.keep == .best && current.bestEpoch > 0 {
                    bestEpochNet = try freshNetwork()
                    try state.restore(bestEpochNet!, prefix: "bestEpoch")
                }
            }
            if config.search > 0 && s0 == 0 {
                run.progress.message(String(format: "trial %d (%d of %d): lr %.6g, wd %.6g", t, t + 1, trialCount, lr, wd))
            }
            var iterator: EpochIterator?
            var iteratorEpoch = -1
            for s in s0..<T {
                let epoch = s / bpe, position = s % bpe
                if iteratorEpoch != epoch {
                    iterator = loader.epoch(epoch, startingAt: position)
                    iteratorEpoch = epoch
                }
                guard let batch = try iterator!.nextBatch() else {
                    throw TrainingError.invalid("the loader ended epoch \(epoch) early at batch \(position)")
                }
                let lrUsed = sgd.lr
                let x = Tensor4(n: batch.count, c: 3, h: config.imageSize, w: config.imageSize, data: batch.views[0])
                let loss = Self.trainStep(net, sgd: sgd, images: x, labels: batch.labels)
                sgd.lr = schedule.step()
                g += 1
                run.log(step: g, phase: phaseTrain(t), ["loss": Double(loss), "lr": Double(lrUsed)])
                guard loss.isFinite else {
                    if config.search > 0 {
                        // A diverged trial: record it as 0 % and go on with the next one.
                        current.valTop1.append(0)
                        current.top1 = 0
                        if current.bestTop1 < 0 { current.bestTop1 = 0; current.bestEpoch = current.valTop1.count; current.bestStep = s + 1 }
                        run.progress.message("trial \(t): loss is not finite at step \(s + 1); trial stopped with top-1 0")
                        g = (t + 1) * T
                        trials.append(current)
                        try run.saveState(captureState(step: g, current: nil, trials: trials, bestIndex: bestIndex, bestNet: bestNet))
                        break
                    }
                    throw TrainingError.invalid("the loss is not finite at step \(g) (lr \(lr) too large?)")
                }
                let endOfEpoch = (s + 1) % bpe == 0 || s + 1 == T
                if endOfEpoch {
                    let top1 = try validate(net)
                    current.valTop1.append(top1)
                    if top1 > current.bestTop1 {
                        current.bestTop1 = top1; current.bestEpoch = current.valTop1.count; current.bestStep = s + 1
                        if config.keep == .best { bestEpochNet = try Self.snapshot(net) }
                    }
                    run.log(step: g, phase: phaseVal(t), ["val_top1": top1])
                }
                let lastOfTrial = s + 1 == T
                if lastOfTrial {
                    // bestEpochNet is set exactly when keep == .best (every trial validates at least once)
                    let delivered = bestEpochNet ?? net
                    current.top1 = bestEpochNet != nil ? current.bestTop1 : current.valTop1.last
                    trials.append(current)
                    if bestIndex < 0 || (current.top1 ?? -1) > (trials[bestIndex].top1 ?? -1) {
                        bestIndex = t
                        bestNet = delivered
                    }
                }
                let stop = shouldStop?(g) ?? false
                try run.boundary(step: g, every: config.checkpointEvery, save: lastOfTrial || endOfEpoch || stop) {
                    try captureState(step: g, current: lastOfTrial ? nil : (net, sgd, schedule, current, bestEpochNet), trials: trials,
                                     bestIndex: bestIndex, bestNet: bestNet)
                }
                if stop { return nil }
            }
        }
        guard bestIndex >= 0, let bestNet else { throw TrainingError.invalid("no trial finished") }
        return Outcome(network: bestNet, trials: trials, chosen: bestIndex)
    }

    /// An independent copy of `net`'s parameters and BN buffers.
    static func snapshot(_ net: Network) throws -> Network {
        try Network(checkpoint: net.checkpoint(provenance: Provenance(stage: "finetune")))
    }

    private func captureState(step: Int, current: (Network, SGD, CosineSchedule, FineTuneTrial, Network?)?, trials: [FineTuneTrial],
                              bestIndex: Int, bestNet: Network?) throws -> TrainingState {
        var state = TrainingState(step: step)
        if let (net, sgd, schedule, trial, bestEpochNet) = current {
            state.capture(net)
            state.capture(sgd)
            state.capture(schedule)
            state.extra["current"] = trial.json
            if let bestEpochNet { state.capture(bestEpochNet, prefix: "bestEpoch") }
        }
        if let bestNet { state.capture(bestNet, prefix: "best") }
        state.extra["bestTrial"] = .int(Int64(bestIndex))
        state.extra["trials"] = .array(trials.map(\.json))
        return state
    }

    /// Whether the run is counted in optimiser steps (`--steps`) rather than epochs.
    var countedInSteps: Bool { config.steps != nil }

    /// The step of `trial` (1-based) after which its best validation top-1 was measured: recorded, or
    /// for a record saved before that, from its evaluation index (evaluations come after every
    /// `batchesPerEpoch` steps and after the last one).
    func bestStep(_ trial: FineTuneTrial) -> Int {
        trial.bestStep ?? min(trial.bestEpoch * batchesPerEpoch, stepsPerTrial)
    }

    /// The provenance of the entry a finished run adds: `run.provenance(stage: "finetune")` plus the
    /// parent, datasets, seeds, the trials, and the metrics `val_top1` (validation top-1 of the model the
    /// chosen trial delivers: its last step, or its best epoch with `keep == .best`), `best_val_top1` (its maximum
    /// over the validations) with `best_epoch` (its epoch) or, for a run counted in steps (`--steps`), `best_step`
    /// (the trial's step after which it was measured), `trial<k>_val_top1`; the metric
    /// history `val_top1` (per validation) and `loss` / `lr` (per step) of the chosen trial.
    public func provenance(outcome: Outcome, start: FineTuneStart, parentId: String?,
                           datasets: [Provenance.Dataset], extraWarnings: [String] = []) -> Provenance {
        var p = run.provenance(stage: "finetune", method: "finetune")
        if let parentId { p.parents = [Provenance.Parent(id: parentId, relation: "finetuned-from", note: start.note)] }
        p.datasets = datasets
        p.seeds = ["init": Int64(bitPattern: config.seed), "data": Int64(bitPattern: config.seed)]
        if config.search > 0 { p.seeds["search"] = Int64(bitPattern: config.seed) }
        // A run counted in steps has no epoch count (a run.json written before `epochs` was left out
        // for `--steps` still holds the default 10).
        if countedInSteps { p.hyperparameters.removeValue(forKey: "epochs") }
        p.hyperparameters["classifier"] = .string(start.classifier)
        p.hyperparameters["lineageNote"] = .string(start.note)
        p.hyperparameters["trials"] = .array(outcome.trials.map { t in
            var t = t
            t.bestStep = bestStep(t)
            return t.record(countedInSteps: countedInSteps)
        })
        p.hyperparameters["chosenTrial"] = .int(Int64(outcome.chosen))
        let (lr, wd) = hyperparameters(trial: outcome.chosen)
        p.hyperparameters["chosenLR"] = .double(lr)
        p.hyperparameters["chosenWD"] = .double(wd)
        p.hyperparameters["stepsPerTrial"] = .int(Int64(stepsPerTrial))
        p.hyperparameters["keep"] = .string(config.keep.rawValue)
        p.hyperparameters["batchesPerEpoch"] = .int(Int64(batchesPerEpoch))
        let chosen = outcome.trials[outcome.chosen]
        p.metrics["val_top1"] = chosen.top1 ?? 0
        p.metrics["best_val_top1"] = chosen.bestTop1
        if countedInSteps { p.metrics["best_step"] = Double(bestStep(chosen)) } else { p.metrics["best_epoch"] = Double(chosen.bestEpoch) }
        if config.search > 0 {
            for trial in outcome.trials { p.metrics["trial\(trial.index)_val_top1"] = trial.top1 ?? 0 }
        }
        let trainPhase = config.search > 0 ? "trial\(outcome.chosen)" : "train"
        var history: [String: [Double]] = ["val_top1": chosen.valTop1]
        for entry in run.logEntries where entry.phase == trainPhase {
            for (k, v) in entry.metrics { history[k, default: []].append(v) }
        }
        if config.search > 0 {
            for trial in outcome.trials { history["trial\(trial.index)_val_top1"] = trial.valTop1 }
        }
        p.metricHistory = history
        if let w = start.warning { p.warnings.append(w) }
        p.warnings += extraWarnings
        return p
    }
}
