import ArgumentParser
import Checkpoint
import Datasets
import Engine
import Foundation
import Training
import Zoo

/// `bissl align REF --data URI --pretext-data URI`: BiSSL alignment of a pretext zoo entry to a
/// downstream task (method brief 3). The result is a `bissl` entry whose backbone is the lower
/// backbone θ_P, with the pretext heads φ_P and the downstream classifier φ_D as components.
struct Align: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "align",
        abstract: "Align a self-supervised zoo entry to a downstream task with BiSSL (a new 'bissl' entry).",
        discussion: """
        Head-only linear warmup, then T alternations of NL lower steps (pretext loss + (λ/2)||θ_P − θ_D||², \
        LARS) and NU upper steps (CE through θ_P with the implicit gradient (I + H/(λ+δ))^-1 g by CG, plus CE \
        through θ_D, SGD). Pretext method, temperature, EMA decay, image size and pixel scale default to \
        what REF's provenance records. Resumable: --resume RUN (see `bissl runs`).
        """)

    @Argument(help: "The pretext entry (id, prefix, name or tag); it must have a projector (BYOL: and predictor) head.")
    var ref: String?

    @Option(help: ArgumentHelp("Downstream training data (e.g. h5:data/digits/digits.h5).", valueName: "URI"))
    var data: String?
    @Option(name: .customLong("pretext-data"), help: ArgumentHelp("Pretext images for the lower level.", valueName: "URI"))
    var pretextData: String?
    @Option(help: ArgumentHelp("Validation data for the per-alternation top-1 (default: the #test part of --data when it exists).", valueName: "URI"))
    var val: String?
    @Option(help: "simclr or byol (default: REF's method).")
    var pretext: String?
    @Option(help: "T: lower/upper alternations.") var alternations: Int = 500
    @Option(name: .customLong("lower-steps"), help: "NL: lower steps per alternation.") var lowerSteps: Int = 20
    @Option(name: .customLong("upper-steps"), help: "NU: upper steps per alternation.") var upperSteps: Int = 8
    @Option(help: "λ: proximity weight (lower penalty and implicit solve).") var lambda: Float = 0.001
    @Option(help: "δ: damping added to λ in the solve.") var damping: Float = 10
    @Option(name: .customLong("cg-iters"), help: "K: CG iterations per upper step.") var cgIters: Int = 5
    @Option(help: "layerwise (R5) or global CG.") var cg: String = "layerwise"
    @Option(help: "Finite-difference HVP: central (2 gradients per product) or forward (1).") var hvp: String = "central"
    @Option(name: .customLong("warmup-epochs"), help: "Head-only warmup epochs.") var warmupEpochs: Int = 20
    @Option(name: .customLong("d-lr"), help: "Upper-level (and warmup) SGD learning rate.") var dLR: Float = 0.03
    @Option(name: .customLong("d-wd"), help: "Upper-level SGD weight decay.") var dWD: Float = 1e-3
    @Option(name: .customLong("p-lr"), help: "Lower-level LARS learning rate.") var pLR: Float = 1.0
    @Option(name: .customLong("p-wd"), help: "Lower-level LARS weight decay.") var pWD: Float = 1e-6
    @Option(name: .customLong("p-batch-size"), help: "Pretext images per lower step (default: REF's batch size, else 1024).") var pBatchSize: Int?
    @Option(name: .customLong("d-batch-size"), help: "Downstream images per upper step.") var dBatchSize: Int = 256
    @Option(help: "Global gradient-norm bound at both levels.") var clip: Float = 10
    @Flag(name: .customLong("no-ij"), help: "Ablation: replace the implicit gradient u by g (no HVP).") var noIJ = false
    @Option(name: .customLong("image-size"), help: "Image side (default: REF's, else 96).") var imageSize: Int?
    @Option(help: "Base seed.") var seed: UInt64 = 0
    @Option(help: "Name for the new entry.") var name: String?
    @Option(help: ArgumentHelp("Continue an interrupted alignment run (its options are reused).", valueName: "RUN"))
    var resume: String?
    @Flag(help: "Print the result as JSON.") var json = false
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let zoo = try zooOptions.open()
        let run: Run
        let config: AlignConfig
        if let resume {
            guard ref == nil, data == nil, pretextData == nil, val == nil, name == nil else {
                throw CheckpointError.invalid("align: --resume RUN reuses the run's own options; give no REF, --data, --pretext-data, --val or --name")
            }
            run = try Run.open(zoo: zoo, id: resume, expectedKind: "align")
            guard run.kind == "align" else { throw CheckpointError.invalid("run \(run.id) is a '\(run.kind)' run, not an alignment") }
            config = try AlignConfig(json: run.config)
        } else {
            config = try resolve(zoo: zoo)
            run = try Run.create(zoo: zoo, kind: "align", config: config.json, commandLine: CommandLine.arguments,
                                 totalSteps: config.totalSteps)
        }
        do {
            try execute(config, run: run, zoo: zoo)
        } catch {
            run.fail(error)
            throw error
        }
    }

    /// Options + REF's provenance -> every resolved setting.
    func resolve(zoo: Zoo) throws -> AlignConfig {
        guard let ref else { throw CheckpointError.invalid("align: give REF (or --resume RUN)") }
        guard let data else { throw CheckpointError.invalid("align: --data URI is required") }
        guard let pretextData else { throw CheckpointError.invalid("align: --pretext-data URI is required") }
        let id = try zoo.resolve(ref)
        let entry = try zoo.checkpoint(id)
        let p = entry.provenance
        func number(_ keys: [String]) -> Double? {
            for k in keys {
                switch p.hyperparameters[k] {
                case .double(let d)?: return d
                case .int(let i)?: return Double(i)
                default: continue
                }
            }
            return nil
        }
        func string(_ keys: [String]) -> String? {
            for k in keys { if case .string(let s)? = p.hyperparameters[k] { return s } }
            return nil
        }
        guard let method = pretext ?? p.method?.lowercased() else {
            throw CheckpointError.invalid("align: REF records no pretext method; give --pretext simclr|byol")
        }
        guard method == "simclr" || method == "byol" else { throw CheckpointError.invalid("align: --pretext must be simclr or byol, got '\(method)'") }
        guard cg == "layerwise" || cg == "global" else { throw CheckpointError.invalid("align: --cg must be layerwise or global, got '\(cg)'") }
        guard hvp == "forward" || hvp == "central" else { throw CheckpointError.invalid("align: --hvp must be forward or central, got '\(hvp)'") }
        let train = try ImageDataset(parsing: data)
        var valURI = val
        if valURI == nil, let uri = try? DatasetURI(parsing: data), !uri.partGiven {
            var test = uri
            test.part = .test
            if (try? ImageDataset(test)) != nil { valURI = test.description }
        }
        let size = imageSize ?? number(["imageSize", "image-size", "image_size"]).map { Int($0) } ?? 96
        guard size >= 4 else { throw CheckpointError.invalid("align: --image-size must be at least 4, got \(size)") }
        var c = AlignConfig(ref: id, data: data, pretextData: pretextData, val: valURI, method: method,
                            temperature: Float(number(["temperature"]) ?? 0.5), emaDecay: Float(number(["emaDecay", "ema-decay"]) ?? 0.9995),
                            pixelScale: string(["pixelScale", "pixel-scale"]) ?? "raw", name: name)
        var s = AlignmentSettings()
        s.alternations = alternations; s.lowerSteps = lowerSteps; s.upperSteps = upperSteps
        s.implicit = ImplicitGradientOptions(lambda: lambda, damping: damping, iterations: cgIters,
                                             solver: cg == "global" ? .global : .layerwise,
                                             hvp: hvp == "forward" ? .forward : .central, enabled: !noIJ)
        s.warmupEpochs = warmupEpochs
        s.dLR = dLR; s.dWD = dWD; s.pLR = pLR; s.pWD = pWD; s.clip = clip
        s.pBatchSize = pBatchSize ?? number(["batchSize", "batch-size"]).map { Int($0) } ?? 1024
        s.dBatchSize = dBatchSize
        s.imageSize = size
        s.pixelScale = c.pixelScale == "unit" ? .unit : .raw
        s.seed = seed
        c.settings = s
        c.classes = max(train.classNames.count, (train.labels.max() ?? -1) + 1)
        c.trainCount = train.count
        return c
    }

    func execute(_ c: AlignConfig, run: Run, zoo: Zoo) throws {
        let entry = try zoo.checkpoint(c.ref)
        let thetaP = try Network(checkpoint: entry)
        thetaP.removeHead("classifier")
        let objective = try PretextObjective(method: c.method == "byol" ? .byol : .simclr, network: thetaP,
                                             temperature: c.temperature, emaDecay: c.emaDecay)
        var darch = thetaP.backbone.architecture
        darch.heads = ["classifier": .init(kind: "linear", dims: [thetaP.featureCount, c.classes])]
        let thetaD = try Network(architecture: darch, seed: c.settings.seed &+ 1)
        try thetaD.backbone.load(thetaP.backbone.stateDict())   // θ_D ← θ_0 (BN buffers included)
        let train = try ImageDataset(parsing: c.data), pretextSet = try ImageDataset(parsing: c.pretextData)
        let valSet = try c.val.map { try ImageDataset(parsing: $0) }
        let aligner = try Aligner(settings: c.settings, pretext: objective, downstream: thetaD, pretextData: pretextSet,
                                  trainData: train, validationData: valSet)
        if let state = try run.loadState() {
            try aligner.restore(state)
            run.progress.message("resuming \(run.id) at step \(state.step)/\(run.totalSteps)")
        } else {
            run.progress.message("run \(run.id): \(aligner.totalSteps) steps (\(c.settings.warmupEpochs) warmup epochs, \(c.settings.alternations) alternations of \(c.settings.lowerSteps)+\(c.settings.upperSteps))")
        }
        try aligner.run(run)
        // the entry
        var p = run.provenance(stage: "bissl", method: c.method)
        let trainFP = try train.fingerprint()
        p.parents = [Provenance.Parent(id: c.ref, relation: "aligned-from", note: "BiSSL to \(c.data) (\(trainFP))")]
        p.datasets = [Provenance.Dataset(role: "downstream-train", uri: c.data, fingerprint: trainFP),
                      Provenance.Dataset(role: "pretext", uri: c.pretextData, fingerprint: try pretextSet.fingerprint())]
        if let v = valSet, let uri = c.val { p.datasets.append(Provenance.Dataset(role: "downstream-val", uri: uri, fingerprint: try v.fingerprint())) }
        p.seeds = aligner.seeds
        for (metric, values) in p.metricHistory where metric == "val_top1" || metric == "val_top1_warmup" {
            if let last = values.last { p.metrics[metric] = last }
            if metric == "val_top1", let best = values.max() { p.metrics["val_top1_best"] = best }
        }
        for metric in ["loss_lower", "loss_upper", "loss_upper_direct", "ij_relative_hessian"] {
            if let last = p.metricHistory[metric]?.last { p.metrics[metric + "_final"] = last }
        }
        if !aligner.alternationSeconds.isEmpty {
            p.metrics["secondsPerAlternation"] = aligner.alternationSeconds.reduce(0, +) / Double(aligner.alternationSeconds.count)
        }
        p.warnings += [
            "HVP by \(c.settings.implicit.hvp == .central ? "central" : "forward") finite differences with ReLU/max-pool patterns pinned at θ_P (R5: double backward)",
            "BN running statistics are not moved by the HVP probes (R5 moves them K times per upper step)",
            "pretext views go through the network as one joint batch of 2N (R5: two forwards of N)",
        ]
        let result = try run.finish(aligner.outputNetwork().checkpoint(provenance: p), name: c.name)
        if json {
            try ZooOutput.printJSON(["id": result.id, "run": run.id])
        } else {
            let top1 = p.metrics["val_top1"].map { String(format: ", val top-1 %.2f%%", $0) } ?? ""
            print("aligned \(String(c.ref.prefix(12))) -> \(result.id.prefix(12))\(c.name.map { " (\($0))" } ?? "")\(top1); run \(run.id)")
        }
    }
}

/// Every resolved setting of an alignment, as recorded in the run config (and the entry's hyperparameters).
struct AlignConfig {
    var ref: String, data: String, pretextData: String, val: String?
    var method: String, temperature: Float, emaDecay: Float, pixelScale: String
    var name: String?
    var settings = AlignmentSettings()
    var classes = 0, trainCount = 0

    init(ref: String, data: String, pretextData: String, val: String?, method: String, temperature: Float, emaDecay: Float,
         pixelScale: String, name: String?) {
        self.ref = ref; self.data = data; self.pretextData = pretextData; self.val = val; self.method = method
        self.temperature = temperature; self.emaDecay = emaDecay; self.pixelScale = pixelScale; self.name = name
    }

    var totalSteps: Int {
        settings.warmupEpochs * (trainCount / settings.dBatchSize) + settings.alternations * (settings.lowerSteps + settings.upperSteps)
    }

    var json: [String: JSONValue] {
        let s = settings
        var j: [String: JSONValue] = [
            "ref": .string(ref), "data": .string(data), "pretextData": .string(pretextData), "pretext": .string(method),
            "temperature": .double(Double(temperature)), "emaDecay": .double(Double(emaDecay)), "pixelScale": .string(pixelScale),
            "alternations": .int(Int64(s.alternations)), "lowerSteps": .int(Int64(s.lowerSteps)), "upperSteps": .int(Int64(s.upperSteps)),
            "lambda": .double(Double(s.implicit.lambda)), "damping": .double(Double(s.implicit.damping)),
            "cgIters": .int(Int64(s.implicit.iterations)), "cg": .string(s.implicit.solver.rawValue),
            "hvp": .string(s.implicit.hvp == .central ? "central" : "forward"), "noIJ": .bool(!s.implicit.enabled),
            "warmupEpochs": .int(Int64(s.warmupEpochs)), "dLR": .double(Double(s.dLR)), "dWD": .double(Double(s.dWD)),
            "dMomentum": .double(Double(s.dMomentum)), "pLR": .double(Double(s.pLR)), "pWD": .double(Double(s.pWD)),
            "pMomentum": .double(Double(s.pMomentum)), "pEta": .double(Double(s.pEta)), "clip": .double(Double(s.clip)),
            "pBatchSize": .int(Int64(s.pBatchSize)), "dBatchSize": .int(Int64(s.dBatchSize)), "imageSize": .int(Int64(s.imageSize)),
            "seed": .int(Int64(bitPattern: s.seed)), "classes": .int(Int64(classes)), "trainCount": .int(Int64(trainCount)),
            "lowerSchedule": .string("LARS, warmup \(s.lowerSchedule.warmup) steps, cosine to 0.001x over \(s.lowerSchedule.total)"),
            "upperSchedule": .string("SGD, no warmup, cosine to 0.001x over \(s.upperSchedule.total)"),
            "gamma": .double(1),
        ]
        if let val { j["val"] = .string(val) }
        if let name { j["name"] = .string(name) }
        return j
    }

    init(json j: [String: JSONValue]) throws {
        func bad(_ k: String) -> CheckpointError { .invalid("align run config: '\(k)' is missing or has the wrong type") }
        func str(_ k: String) throws -> String { guard case .string(let v)? = j[k] else { throw bad(k) }; return v }
        func int(_ k: String) throws -> Int { guard case .int(let v)? = j[k] else { throw bad(k) }; return Int(v) }
        func num(_ k: String) throws -> Float {
            switch j[k] {
            case .double(let d)?: return Float(d)
            case .int(let i)?: return Float(i)
            default: throw bad(k)
            }
        }
        func bool(_ k: String) throws -> Bool { guard case .bool(let v)? = j[k] else { throw bad(k) }; return v }
        self.init(ref: try str("ref"), data: try str("data"), pretextData: try str("pretextData"),
                  val: j["val"] == nil ? nil : try str("val"), method: try str("pretext"), temperature: try num("temperature"),
                  emaDecay: try num("emaDecay"), pixelScale: try str("pixelScale"), name: j["name"] == nil ? nil : try str("name"))
        var s = AlignmentSettings()
        s.alternations = try int("alternations"); s.lowerSteps = try int("lowerSteps"); s.upperSteps = try int("upperSteps")
        s.implicit = ImplicitGradientOptions(lambda: try num("lambda"), damping: try num("damping"), iterations: try int("cgIters"),
                                             solver: try str("cg") == "global" ? .global : .layerwise,
                                             hvp: try str("hvp") == "forward" ? .forward : .central, enabled: !(try bool("noIJ")))
        s.warmupEpochs = try int("warmupEpochs")
        s.dLR = try num("dLR"); s.dWD = try num("dWD"); s.dMomentum = try num("dMomentum")
        s.pLR = try num("pLR"); s.pWD = try num("pWD"); s.pMomentum = try num("pMomentum"); s.pEta = try num("pEta")
        s.clip = try num("clip"); s.pBatchSize = try int("pBatchSize"); s.dBatchSize = try int("dBatchSize")
        s.imageSize = try int("imageSize"); s.pixelScale = pixelScale == "unit" ? .unit : .raw
        s.seed = UInt64(bitPattern: Int64(try int("seed")))
        settings = s
        classes = try int("classes"); trainCount = try int("trainCount")
    }
}
