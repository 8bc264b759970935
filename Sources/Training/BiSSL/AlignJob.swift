import Checkpoint
import Datasets
import Engine
import Foundation
import Zoo

/// What the user asked `bissl align` for; nil means "use the default" (`AlignJob.resolve`).
public struct AlignOptions: JobOptions, Sendable {
    /// The pretext entry (id, prefix, name or tag).
    public var ref: String?
    public var data: String?, pretextData: String?, val: String?
    public var pretext: PretextObjective.Method?
    public var alternations: Int?, lowerSteps: Int?, upperSteps: Int?
    public var lambda: Double?, damping: Double?
    public var cgIters: Int?
    public var cg: ImplicitGradientOptions.Solver?
    public var hvp: HessianVectorProduct.Scheme?
    public var hvpBatchNorm: ImplicitGradientOptions.HVPBatchNorm?
    public var warmupEpochs: Int?
    public var dLR: Double?, dWD: Double?, pLR: Double?, pWD: Double?
    public var pBatchSize: Int?, dBatchSize: Int?
    public var clip: Double?
    public var noIJ = false
    public var imageSize: Int?
    public var seed: UInt64?
    public var name: String?
    /// `--augment` text (`DownstreamAugmentation`); nil: `crop:0.08+flip`.
    public var augment: String?
    /// `--pretext-val URI`: held-out pretext images (default: the #test part of --pretext-data when it exists).
    public var pretextVal: String?
    /// `--keep-upper`: also add the upper model θ_D, φ_D as an entry.
    public var keepUpper = false
    /// New pretext heads instead of REF's (`--fresh-heads`).
    public var freshHeads = false
    /// `--sync-bn`: under `mpirun`, BatchNorm normalises with the whole global batch's statistics
    /// (`DataParallel.syncBatchNorm`, torch.nn.SyncBatchNorm); nothing changes on one process.
    public var syncBn = false

    public init() {}

    /// T, NL, NU, K and warmup epochs, defaults filled in (docs/bissl.md, "Default settings").
    var counts: (Int, Int, Int, Int, Int) {
        (alternations ?? 500, lowerSteps ?? 20, upperSteps ?? 8, cgIters ?? 5, warmupEpochs ?? 20)
    }

    /// λ, δ, d_lr, d_wd, p_lr, p_wd and clip as given (Doubles, recorded as typed), defaults filled in;
    /// d_lr and d_wd default to the SimCLR values for pets, cars and food.
    var reals: (Double, Double, Double, Double, Double, Double, Double) {
        (lambda ?? 0.001, damping ?? 10, dLR ?? 0.03, dWD ?? 1e-3, pLR ?? 1.0, pWD ?? 1e-6, clip ?? 10)
    }

    /// The rules the options obey on their own: REF, `--data` and `--pretext-data` given; every count,
    /// rate and bound in range (numbers first: a zero batch size would divide by zero in the step count).
    /// - Throws: `TrainingError.invalid`, one line naming the option and the value.
    public func validate() throws {
        func bad(_ message: String) -> TrainingError { .invalid("align: " + message) }
        guard ref != nil else { throw bad("give REF (or --resume RUN)") }
        guard data != nil else { throw bad("--data URI is required") }
        guard pretextData != nil else { throw bad("--pretext-data URI is required") }
        let (T, NL, NU, K, E) = counts
        for (option, value, least) in [("--alternations", T, 1), ("--lower-steps", NL, 1), ("--upper-steps", NU, 1),
                                       ("--cg-iters", K, 1), ("--warmup-epochs", E, 0)] where value < least {
            throw bad("\(option) must be \(least == 0 ? "0 or more" : "at least \(least)"), got \(value)")
        }
        let (lambda, damping, dLR, dWD, pLR, pWD, clip) = reals
        for (option, value) in [("--lambda", lambda), ("--damping", damping), ("--d-lr", dLR), ("--d-wd", dWD),
                                ("--p-lr", pLR), ("--p-wd", pWD), ("--clip", clip)] {
            guard value.isFinite, Float(value).isFinite else { throw bad("\(option) must be a finite number, got \(value)") }
            guard value >= 0 else { throw bad("\(option) must not be negative, got \(value)") }
        }
        guard clip > 0 else { throw bad("--clip must be positive, got \(clip)") }
        guard !syncBn || noIJ || hvp != nil && hvp != .exact else {
            throw bad("--sync-bn needs --hvp central or --hvp forward (or --no-ij): the exact Hessian-vector products' BatchNorm tangent rules use each rank's own batch statistics")
        }
        guard noIJ || lambda + damping > 0 else {
            throw bad("--lambda + --damping must be positive (the implicit solve divides by λ+δ), or give --no-ij")
        }
        for (option, value) in [("--d-batch-size", dBatchSize), ("--p-batch-size", pBatchSize)] {
            if let value, value < 2 { throw bad("\(option) must be at least 2 (train-mode BatchNorm), got \(value)") }
        }
        if let size = imageSize, size < 4 || size > 4096 { throw bad("--image-size must be between 4 and 4096, got \(size)") }
        if let a = augment {
            do { _ = try DownstreamAugmentation(parsing: a) } catch { throw bad("\(error)") }
        }
    }

    /// The upper entry's name: `--name` + `-upper` with `--keep-upper`, else none.
    var upperName: String? { keepUpper ? name.map { $0 + "-upper" } : nil }
}

/// Every resolved setting of an alignment: the run config and the entry's hyperparameters. Real-valued
/// settings are kept as the Doubles given (0.03, not 0.029999999329447746); the engine gets Float
/// copies (`settings`).
public struct AlignConfig: Codable, Equatable, Sendable {
    public var ref: String, data: String, pretextData: String, val: String?
    public var pretext: PretextObjective.Method
    public var temperature: Double, emaDecay: Double, pixelScale: String
    public var alternations: Int, lowerSteps: Int, upperSteps: Int
    public var lambda: Double, damping: Double
    public var cgIters: Int
    public var cg: ImplicitGradientOptions.Solver
    /// How the Hessian-vector products are computed (exact by default; older runs recorded central).
    public var hvp: HessianVectorProduct.Scheme
    /// BN running statistics during the solve; nil in runs recorded before the option existed, which
    /// froze them.
    public var hvpBatchNorm: ImplicitGradientOptions.HVPBatchNorm?
    public var noIJ: Bool
    public var warmupEpochs: Int
    public var dLR: Double, dWD: Double, dMomentum: Double
    public var pLR: Double, pWD: Double, pMomentum: Double, pEta: Double
    public var clip: Double
    public var pBatchSize: Int, dBatchSize: Int, imageSize: Int
    public var seed: Seed
    public var classes: Int, trainCount: Int
    public var lowerSchedule: String, upperSchedule: String
    public var gamma = 1.0
    public var name: String?
    /// The downstream augmentation, canonical `DownstreamAugmentation` text; nil in runs recorded
    /// before `--augment` existed (they used `crop:0.08+flip`).
    public var augment: String?
    /// Held-out pretext data of `loss_pretext_heldout` (nil: not logged).
    public var pretextVal: String?
    /// Whether the upper model θ_D, φ_D is added as a second entry, and its name (nil in older runs: no).
    public var keepUpper: Bool?
    public var upperName: String?
    /// True when the pretext heads are new (`--fresh-heads`); nil: REF's.
    public var freshHeads: Bool?
    /// The head-only warmup's LR when capped below the default `--d-lr` by θ_0's feature scale
    /// (`AlignPlan.warmupLR`); nil: `dLR`.
    public var warmupLR: Double?

    /// The engine's settings (Float copies of the real-valued ones).
    public var settings: AlignmentSettings {
        var s = AlignmentSettings()
        s.alternations = alternations; s.lowerSteps = lowerSteps; s.upperSteps = upperSteps
        s.implicit = ImplicitGradientOptions(lambda: Float(lambda), damping: Float(damping), iterations: cgIters,
                                             solver: cg, hvp: hvp,
                                             batchNorm: hvpBatchNorm ?? .frozen, enabled: !noIJ)
        s.warmupEpochs = warmupEpochs
        s.warmupLR = warmupLR.map(Float.init)
        s.dLR = Float(dLR); s.dWD = Float(dWD); s.dMomentum = Float(dMomentum)
        s.pLR = Float(pLR); s.pWD = Float(pWD); s.pMomentum = Float(pMomentum); s.pEta = Float(pEta)
        s.clip = Float(clip)
        s.pBatchSize = pBatchSize; s.dBatchSize = dBatchSize; s.imageSize = imageSize
        s.pixelScale = pixelScale == "unit" ? .unit : .raw
        s.seed = seed.value
        s.augmentation = (try? DownstreamAugmentation(recorded: augment)) ?? .standard  // checked by AlignJob.init
        return s
    }

    /// Warmup steps (one per full downstream batch) + T·(NL + NU); nil when it does not fit an Int
    /// or the downstream batch size is not positive.
    public var totalSteps: Int? {
        guard dBatchSize > 0 else { return nil }
        let (warmup, o1) = warmupEpochs.multipliedReportingOverflow(by: trainCount / dBatchSize)
        let (phase, o2) = lowerSteps.addingReportingOverflow(upperSteps)
        let (alternating, o3) = alternations.multipliedReportingOverflow(by: phase)
        let (total, o4) = warmup.addingReportingOverflow(alternating)
        return o1 || o2 || o3 || o4 ? nil : total
    }

    /// A Float constant as the Double it was written as (0.9, not 0.8999999761581421).
    static func decimal(_ f: Float) -> Double { Double(f.description) ?? Double(f) }
}

/// `bissl align` as a `TrainingJob`: BiSSL alignment of a pretext entry to a downstream task
/// (docs/bissl.md). The result is a `bissl` entry whose backbone is the lower backbone θ_P, with the
/// pretext heads φ_P and the downstream classifier φ_D as components; with `--keep-upper` also a
/// second `bissl` entry holding the upper model θ_D (backbone) and φ_D (classifier), parent REF.
public struct AlignJob: TrainingJob {
    public static var kind: String { "align" }
    public let config: AlignConfig
    public let aligner: Aligner
    let train: ImageDataset, pretextSet: ImageDataset, valSet: ImageDataset?, pretextValSet: ImageDataset?
    let zoo: Zoo

    /// Options + REF's provenance -> every resolved setting: every number, the data URIs (errors name
    /// the option), REF's pretext heads, batch sizes against the data. Pretext method, temperature, EMA
    /// decay, image size and pixel scale default to what REF's provenance records.
    /// - Throws: `TrainingError.invalid`, one line.
    public static func resolve(_ o: AlignOptions, zoo: Zoo) throws -> AlignConfig {
        func bad(_ message: String) -> TrainingError { .invalid("align: " + message) }
        try o.validate()
        guard let ref = o.ref, let data = o.data, let pretextData = o.pretextData else { throw bad("give REF, --data and --pretext-data") }
        let (T, NL, NU, K, E) = o.counts
        let (lambda, damping, dLR, dWD, pLR, pWD, clip) = o.reals
        // REF and its pretext heads
        let id = try zoo.resolve(ref)
        let entry = try zoo.checkpoint(id)
        let p = entry.provenance
        // REF's recorded settings, camelCase or an older spelling (RecordedSettings)
        func number(_ key: String) -> Double? { RecordedSettings.number(key, in: p.hyperparameters) }
        // The entry as the user named it, with its id when the name was not an id prefix.
        let named = id.hasPrefix(ref.lowercased()) ? "entry \(id.prefix(12))" : "entry \(ref) (\(id.prefix(12)))"
        guard let methodName = o.pretext?.rawValue ?? p.method?.lowercased() else {
            throw bad("\(named) records no pretext method; give --pretext \(PretextMethods.all.map { $0.name }.joined(separator: "|"))")
        }
        guard let method = PretextObjective.Method(rawValue: methodName) else {
            throw bad("the method of \(named) is '\(methodName)', not one of \(PretextMethods.names); give --pretext \(PretextMethods.all.map { $0.name }.joined(separator: "|"))")
        }
        let temperature = number("temperature") ?? 0.5, emaDecay = number("emaDecay") ?? 0.9995
        do {
            _ = try Self.pretextObjective(entry, method: method, freshHeads: o.freshHeads, seed: o.seed ?? 0,
                                          temperature: temperature, emaDecay: emaDecay)
        } catch {
            let short = String(id.prefix(12))
            guard o.freshHeads else {
                throw bad("the pretext heads of \(short) cannot be used for \(method) (\(error)); give --fresh-heads to start new ones on its backbone")
            }
            throw bad("\(short) cannot be aligned with \(method): \(error)")
        }
        // data (each error names its option)
        func dataset(_ option: String, _ uri: String) throws -> ImageDataset {
            do {
                let set = try ImageDataset(parsing: uri)
                guard set.count > 0 else { throw TrainingError.invalid("it has no images") }
                return set
            } catch {
                throw TrainingError.invalid("\(option) \(uri): \(error)")
            }
        }
        let train = try dataset("--data", data)
        let pretextSet = try dataset("--pretext-data", pretextData)
        var pretextValURI = o.pretextVal
        if let uri = o.pretextVal {
            guard try dataset("--pretext-val", uri).count >= 2 else { throw bad("--pretext-val \(uri) needs at least 2 images") }
        } else if let uri = try? DatasetURI(parsing: pretextData), !uri.partGiven {
            var test = uri
            test.part = .test
            if let set = try? ImageDataset(test), set.count >= 2 { pretextValURI = test.description }
        }
        if let upper = o.upperName { try checkName(upper, zoo: zoo) }
        var valURI = o.val
        if let val = o.val {
            _ = try dataset("--val", val)
        } else if let uri = try? DatasetURI(parsing: data), !uri.partGiven {
            var test = uri
            test.part = .test
            if let set = try? ImageDataset(test), set.count > 0 { valURI = test.description }
        }
        let size = o.imageSize ?? RecordedSettings.integer("imageSize", in: p.hyperparameters) ?? 96
        guard size >= 4 else { throw bad("--image-size must be at least 4, got \(size) (from the provenance of \(named))") }
        // batch sizes: a given one larger than its data is an error, a default is clamped (and said)
        func batch(_ option: String, given: Int?, fallback: Int, what: String, count: Int) throws -> Int {
            if let given {
                guard given <= count else { throw bad("\(option) \(given) is larger than \(what) (\(count) images)") }
                return given
            }
            guard fallback > count else { return fallback }
            guard count >= 2 else { throw bad("\(what) has \(count) image; a batch needs at least 2") }
            FileHandle.standardError.write(Data("note: \(option) defaults to \(fallback), more than \(what) has; using \(count)\n".utf8))
            return count
        }
        let refBatch = RecordedSettings.integer("batchSize", in: p.hyperparameters).flatMap { $0 >= 2 ? $0 : nil } ?? 1024
        let pBatch = try batch("--p-batch-size", given: o.pBatchSize, fallback: refBatch, what: "--pretext-data", count: pretextSet.count)
        let dBatch = try batch("--d-batch-size", given: o.dBatchSize, fallback: 256, what: "--data", count: train.count)
        let defaults = AlignmentSettings()
        var c = AlignConfig(
            // URIs as absolute paths, so the run resumes from any directory and provenance names the files
            ref: id, data: train.uri.description, pretextData: pretextSet.uri.description,
            val: try valURI.map { try DatasetURI(parsing: $0).description }, pretext: method,
            temperature: temperature, emaDecay: emaDecay,
            pixelScale: RecordedSettings.string("pixelScale", in: p.hyperparameters) ?? "raw",
            alternations: T, lowerSteps: NL, upperSteps: NU, lambda: lambda, damping: damping, cgIters: K,
            cg: o.cg ?? .layerwise, hvp: o.hvp ?? .exact,
            hvpBatchNorm: o.hvpBatchNorm ?? .train, noIJ: o.noIJ, warmupEpochs: E,
            dLR: dLR, dWD: dWD, dMomentum: AlignConfig.decimal(defaults.dMomentum),
            pLR: pLR, pWD: pWD, pMomentum: AlignConfig.decimal(defaults.pMomentum), pEta: AlignConfig.decimal(defaults.pEta),
            clip: clip, pBatchSize: pBatch, dBatchSize: dBatch, imageSize: size, seed: Seed(o.seed ?? 0),
            classes: max(train.classNames.count, (train.labels.max() ?? -1) + 1), trainCount: train.count,
            lowerSchedule: "", upperSchedule: "", name: o.name,
            augment: try o.augment.map { try DownstreamAugmentation(parsing: $0) }.map(\.description) ?? DownstreamAugmentation.standard.description,
            pretextVal: try pretextValURI.map { try DatasetURI(parsing: $0).description }, keepUpper: o.keepUpper, upperName: o.upperName)
        let s = c.settings
        c.lowerSchedule = "LARS, warmup \(s.lowerSchedule.warmup) steps, cosine to 0.001x over \(s.lowerSchedule.total)"
        c.upperSchedule = "SGD, no warmup, cosine to 0.001x over \(s.upperSchedule.total)"
        guard c.totalSteps != nil else {
            throw bad("--warmup-epochs, --alternations and the step counts give more steps than can be counted")
        }
        c.freshHeads = o.freshHeads ? true : nil
        // A short measurement on θ_0: the warmup's step size (unless --d-lr is given) and the plan line.
        let theta0 = try Network(checkpoint: entry, heads: [])
        let plan = AlignPlan.measure(
            backbone: theta0.backbone, batch: try Aligner.firstDownstreamBatch(train, settings: c.settings),
            warmupSteps: E * (train.count / dBatch), alternations: T, lowerSteps: NL, upperSteps: NU, pretextBatch: pBatch,
            byol: method == .byol, cgIterations: o.noIJ ? 0 : K, centralHVP: c.hvp == .central,
            validationImages: try valURI.map { try ImageDataset(parsing: $0).count } ?? 0)
        if o.dLR == nil && E > 0 {
            let lr = plan.warmupLR(requested: dLR)
            if lr < dLR { c.warmupLR = Double(String(format: "%.3g", lr)) }
        }
        FileHandle.standardError.write(Data((planLine(plan, config: c) + "\n").utf8))
        return c
    }

    /// `plan: 39 steps (...), about 40 s (...); warmup lr ...`, printed before a new run starts.
    static func planLine(_ plan: AlignPlan, config c: AlignConfig) -> String {
        let batches = c.dBatchSize > 0 ? c.trainCount / c.dBatchSize : 0
        var line = "plan: \(plan.totalSteps) steps (\(c.warmupEpochs) warmup epoch\(c.warmupEpochs == 1 ? "" : "s") of \(batches) batches, "
            + "\(c.alternations) alternation\(c.alternations == 1 ? "" : "s") of \(c.lowerSteps)+\(c.upperSteps) steps), about "
            + AlignPlan.duration(plan.seconds)
            + String(format: " (measured on θ_0: forward %.2f s, forward+backward %.2f s for %d images at %dx%d)",
                     plan.forwardSeconds, plan.forwardBackwardSeconds, c.dBatchSize, c.imageSize, c.imageSize)
        if let w = c.warmupLR {
            line += "; warmup lr \(w) (--d-lr \(c.dLR) capped at 1/E‖x‖² of θ_0's features, E‖x‖² = "
                + String(format: "%.4g", plan.meanFeatureNorm2) + ")"
        }
        return line
    }

    /// θ_P's pretext objective: REF's backbone with its `projector` (and the method's own heads, BYOL's
    /// `predictor`), or with new ones at the default sizes (`PretrainConfig.defaultProjectorDims`, the
    /// method's `extraHeads`; PyTorch init from `seed + 2`) when `freshHeads`. REF's classifier is not read.
    /// - Throws: `TrainingError.invalid` when a head is missing, does not load, or does not fit.
    static func pretextObjective(_ entry: Checkpoint, method: PretextObjective.Method, freshHeads: Bool, seed: UInt64,
                                 temperature: Double, emaDecay: Double) throws -> PretextObjective {
        let net = try Network(checkpoint: entry, heads: freshHeads ? [] : ["projector", "predictor"])
        if freshHeads {
            let F = net.featureCount, dims = PretrainConfig.defaultProjectorDims(features: F)
            var heads = ["projector": Architecture.Head(kind: "mlp", dims: [F] + dims)]
            for (name, head) in method.type.extraHeads(projectorOutput: dims.last!) { heads[name] = head }
            for (name, record) in heads { net.setHead(name, try .make(record, component: name, seed: seed &+ 2)) }
        }
        return try PretextObjective(method: method, network: net, temperature: Float(temperature), emaDecay: Float(emaDecay))
    }

    /// θ_P from REF, θ_D ← θ_0 (BN buffers included) with a new linear classifier φ_D, the data, the `Aligner`.
    public init(config c: AlignConfig, zoo: Zoo, resuming run: Run?) throws {
        config = c
        _ = try DownstreamAugmentation(recorded: c.augment)  // a damaged config fails here, not silently
        let objective = try Self.pretextObjective(try zoo.checkpoint(c.ref), method: c.pretext, freshHeads: c.freshHeads ?? false,
                                                  seed: c.seed.value, temperature: c.temperature, emaDecay: c.emaDecay)
        let thetaP = objective.network
        var darch = thetaP.backbone.architecture
        darch.heads = ["classifier": .init(kind: "linear", dims: [thetaP.featureCount, c.classes])]
        let thetaD = try Network(architecture: darch, seed: c.seed.value &+ 1)
        try thetaD.backbone.load(thetaP.backbone.stateDict())
        train = try ImageDataset(parsing: c.data)
        pretextSet = try ImageDataset(parsing: c.pretextData)
        valSet = try c.val.map { try ImageDataset(parsing: $0) }
        pretextValSet = try c.pretextVal.map { try ImageDataset(parsing: $0) }
        self.zoo = zoo
        aligner = try Aligner(settings: c.settings, pretext: objective, downstream: thetaD, pretextData: pretextSet,
                              trainData: train, validationData: valSet, pretextHeldOut: pretextValSet)
    }

    public var totalSteps: Int { config.totalSteps ?? aligner.totalSteps }
    public var entryName: String? { config.name }

    public func startMessage(run: Run, commandLine: [String]) -> String {
        let s = config
        return "run \(run.id): \(aligner.totalSteps) steps (\(s.warmupEpochs) warmup epochs, \(s.alternations) alternations of \(s.lowerSteps)+\(s.upperSteps))"
    }

    /// Restores the run's state, aligns to the end, and returns the `bissl` entry: parents, datasets,
    /// seeds, final and best validation top-1, final losses, seconds per alternation, and the
    /// differences from the reference implementation as warnings.
    public func train(on run: Run) throws -> Checkpoint {
        if let state = try run.loadState() {
            try aligner.restore(state)
            run.progress.message("resuming \(run.id) at step \(state.step)/\(run.totalSteps)")
        }
        try aligner.run(run)
        let c = config
        var p = run.provenance(stage: "bissl", method: c.pretext.rawValue)
        let trainFP = try train.fingerprint()
        p.parents = [Provenance.Parent(id: c.ref, relation: "aligned-from", note: "BiSSL to \(c.data) (\(trainFP))")]
        p.datasets = [Provenance.Dataset(role: "downstream-train", uri: c.data, fingerprint: trainFP),
                      Provenance.Dataset(role: "pretext", uri: c.pretextData, fingerprint: try pretextSet.fingerprint())]
        if let v = valSet, let uri = c.val { p.datasets.append(Provenance.Dataset(role: "downstream-val", uri: uri, fingerprint: try v.fingerprint())) }
        p.seeds = aligner.seeds
        for (metric, values) in p.metricHistory where metric == "upper_val_top1" || metric == "upper_val_top1_warmup" {
            if let last = values.last { p.metrics[metric] = last }
            if metric == "upper_val_top1", let best = values.max() { p.metrics["upper_val_top1_best"] = best }
        }
        if let v = pretextValSet, let uri = c.pretextVal {
            p.datasets.append(Provenance.Dataset(role: "pretext-heldout", uri: uri, fingerprint: try v.fingerprint()))
        }
        for metric in ["loss_lower", "loss_upper", "loss_upper_direct", "ij_relative_hessian", "penalty_share", "loss_pretext_heldout"] {
            if let last = p.metricHistory[metric]?.last { p.metrics[metric + "_final"] = last }
        }
        if !aligner.alternationSeconds.isEmpty {
            p.metrics["secondsPerAlternation"] = aligner.alternationSeconds.reduce(0, +) / Double(aligner.alternationSeconds.count)
        }
        if c.hvp != .exact {
            p.warnings.append("HVP by \(c.hvp.rawValue) finite differences with ReLU/max-pool patterns pinned at θ_P (the reference implementation: double backward)")
        }
        if c.settings.implicit.batchNorm == .frozen {
            p.warnings.append("BN running statistics are not moved by the HVPs (the reference implementation moves them K times per upper step)")
        }
        p.warnings.append("pretext views go through the network as one joint batch of 2N (the reference implementation: two forwards of N)")
        let lower = aligner.outputNetwork()
        // Under mpirun only rank 0 adds entries (the others' θ_D holds their own BN running statistics).
        if c.keepUpper == true && run.writes {
            let upperID = try addUpper(provenance: p, lowerID: ContentID.compute(lower.checkpoint(provenance: p)), run: run)
            p.hyperparameters["upperEntry"] = .string(upperID)
        }
        return lower.checkpoint(provenance: p)
    }

    /// Adds the upper model (θ_D backbone, φ_D classifier) as a `bissl` entry before the run's own
    /// entry: provenance as the lower entry's, parent REF (`aligned-from`, the note names the run and
    /// the lower entry's id). Its name is `upperName` unless another entry holds it (then none, with a
    /// warning). Adding the same weights again (a resumed run) finds the entry already listed.
    /// - Returns: the upper entry's id.
    func addUpper(provenance lowerProvenance: Provenance, lowerID: String, run: Run) throws -> String {
        let c = config
        var p = lowerProvenance
        p.parents = [Provenance.Parent(id: c.ref, relation: "aligned-from",
                                       note: "BiSSL upper level (θ_D, φ_D) of run \(run.id); its lower level θ_P is entry \(lowerID.prefix(12))")]
        p.hyperparameters["lowerEntry"] = .string(lowerID)
        let checkpoint = aligner.downstream.checkpoint(provenance: p)
        if let name = c.upperName {
            let holder = Run.holder(of: name, zoo: zoo)?.owner
            if holder == nil || holder == ContentID.compute(checkpoint) { return try zoo.add(checkpoint, name: name).id }
        }
        let result = try zoo.add(checkpoint, name: nil)
        if let name = c.upperName {
            run.progress.message("warning: upper entry \(result.id.prefix(12)) added without the name '\(name)' (another entry holds it); name it with bissl tag \(result.id.prefix(12)) <label>")
        }
        return result.id
    }
}

extension ImplicitGradientOptions.Solver: Codable {}
extension ImplicitGradientOptions.HVPBatchNorm: Codable {}
extension HessianVectorProduct.Scheme: Codable {}
