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
    @Option(parsing: .unconditional, help: "T: lower/upper alternations (default 500).") var alternations: Int?
    @Option(name: .customLong("lower-steps"), parsing: .unconditional, help: "NL: lower steps per alternation (default 20).") var lowerSteps: Int?
    @Option(name: .customLong("upper-steps"), parsing: .unconditional, help: "NU: upper steps per alternation (default 8).") var upperSteps: Int?
    @Option(parsing: .unconditional, help: "λ: proximity weight (lower penalty and implicit solve; default 0.001).") var lambda: Double?
    @Option(parsing: .unconditional, help: "δ: damping added to λ in the solve (default 10).") var damping: Double?
    @Option(name: .customLong("cg-iters"), parsing: .unconditional, help: "K: CG iterations per upper step (default 5).") var cgIters: Int?
    @Option(help: "layerwise (R5, default) or global CG.") var cg: String?
    @Option(help: "Finite-difference HVP: central (2 gradients per product, default) or forward (1).") var hvp: String?
    @Option(name: .customLong("warmup-epochs"), parsing: .unconditional, help: "Head-only warmup epochs (default 20).") var warmupEpochs: Int?
    @Option(name: .customLong("d-lr"), parsing: .unconditional, help: "Upper-level (and warmup) SGD learning rate (default 0.03).") var dLR: Double?
    @Option(name: .customLong("d-wd"), parsing: .unconditional, help: "Upper-level SGD weight decay (default 0.001).") var dWD: Double?
    @Option(name: .customLong("p-lr"), parsing: .unconditional, help: "Lower-level LARS learning rate (default 1.0).") var pLR: Double?
    @Option(name: .customLong("p-wd"), parsing: .unconditional, help: "Lower-level LARS weight decay (default 1e-6).") var pWD: Double?
    @Option(name: .customLong("p-batch-size"), parsing: .unconditional, help: "Pretext images per lower step (default: REF's batch size, else 1024; at most the pretext images).") var pBatchSize: Int?
    @Option(name: .customLong("d-batch-size"), parsing: .unconditional, help: "Downstream images per upper step (default 256; at most the --data images).") var dBatchSize: Int?
    @Option(parsing: .unconditional, help: "Global gradient-norm bound at both levels (default 10).") var clip: Double?
    @Flag(name: .customLong("no-ij"), help: "Ablation: replace the implicit gradient u by g (no HVP).") var noIJ = false
    @Option(name: .customLong("image-size"), parsing: .unconditional, help: "Image side (default: REF's, else 96).") var imageSize: Int?
    @Option(parsing: .unconditional, help: "Base seed (default 0).") var seed: UInt64?
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
            let given: [(String, Bool)] = [
                ("REF", ref != nil), ("--data", data != nil), ("--pretext-data", pretextData != nil), ("--val", val != nil),
                ("--pretext", pretext != nil), ("--alternations", alternations != nil), ("--lower-steps", lowerSteps != nil),
                ("--upper-steps", upperSteps != nil), ("--lambda", lambda != nil), ("--damping", damping != nil),
                ("--cg-iters", cgIters != nil), ("--cg", cg != nil), ("--hvp", hvp != nil), ("--warmup-epochs", warmupEpochs != nil),
                ("--d-lr", dLR != nil), ("--d-wd", dWD != nil), ("--p-lr", pLR != nil), ("--p-wd", pWD != nil),
                ("--p-batch-size", pBatchSize != nil), ("--d-batch-size", dBatchSize != nil), ("--clip", clip != nil),
                ("--no-ij", noIJ), ("--image-size", imageSize != nil), ("--seed", seed != nil), ("--name", name != nil)]
            let extra = given.filter(\.1).map(\.0)
            guard extra.isEmpty else {
                throw CheckpointError.invalid("--resume takes no other options (the run's config has them): remove \(extra.joined(separator: ", "))")
            }
            run = try Run.open(zoo: zoo, id: resume, expectedKind: "align")
            guard run.kind == "align" else { throw CheckpointError.invalid("run \(run.id) is a '\(run.kind)' run, not an alignment") }
            config = try AlignConfig(json: run.config)
        } else {
            config = try resolve(zoo: zoo)
            run = try Run.create(zoo: zoo, kind: "align", config: config.json, commandLine: CommandLine.arguments,
                                 totalSteps: config.totalSteps ?? 0)
        }
        do {
            try execute(config, run: run, zoo: zoo)
        } catch {
            run.fail(error)
            throw error
        }
    }

    /// Options + REF's provenance -> every resolved setting. Everything that can be checked before
    /// training is checked here, before `Run.create`, so bad input leaves no run directory: every
    /// number, the data URIs (errors name the option), REF's pretext heads, batch sizes against the
    /// data, and `--name` (a valid label no entry holds yet).
    /// - Throws: `CheckpointError.invalid`, one line.
    func resolve(zoo: Zoo) throws -> AlignConfig {
        guard let ref else { throw CheckpointError.invalid("align: give REF (or --resume RUN)") }
        guard let data else { throw CheckpointError.invalid("align: --data URI is required") }
        guard let pretextData else { throw CheckpointError.invalid("align: --pretext-data URI is required") }
        // numbers first (cheap, and a zero batch size would divide by zero in the step count)
        let T = alternations ?? 500, NL = lowerSteps ?? 20, NU = upperSteps ?? 8, K = cgIters ?? 5, E = warmupEpochs ?? 20
        for (option, value, least) in [("--alternations", T, 1), ("--lower-steps", NL, 1), ("--upper-steps", NU, 1),
                                       ("--cg-iters", K, 1), ("--warmup-epochs", E, 0)] where value < least {
            throw CheckpointError.invalid("align: \(option) must be \(least == 0 ? "0 or more" : "at least \(least)"), got \(value)")
        }
        let hyper = AlignHyper(lambda: lambda ?? 0.001, damping: damping ?? 10, dLR: dLR ?? 0.03, dWD: dWD ?? 1e-3,
                               pLR: pLR ?? 1.0, pWD: pWD ?? 1e-6, clip: clip ?? 10)
        for (option, value) in [("--lambda", hyper.lambda), ("--damping", hyper.damping), ("--d-lr", hyper.dLR), ("--d-wd", hyper.dWD),
                                ("--p-lr", hyper.pLR), ("--p-wd", hyper.pWD), ("--clip", hyper.clip)] {
            guard value.isFinite, Float(value).isFinite else { throw CheckpointError.invalid("align: \(option) must be a finite number, got \(value)") }
            guard value >= 0 else { throw CheckpointError.invalid("align: \(option) must not be negative, got \(value)") }
        }
        guard hyper.clip > 0 else { throw CheckpointError.invalid("align: --clip must be positive, got \(hyper.clip)") }
        guard noIJ || hyper.lambda + hyper.damping > 0 else {
            throw CheckpointError.invalid("align: --lambda + --damping must be positive (the implicit solve divides by λ+δ), or give --no-ij")
        }
        for (option, value) in [("--d-batch-size", dBatchSize), ("--p-batch-size", pBatchSize)] {
            if let value, value < 2 { throw CheckpointError.invalid("align: \(option) must be at least 2 (train-mode BatchNorm), got \(value)") }
        }
        if let imageSize, imageSize < 4 || imageSize > 4096 {
            throw CheckpointError.invalid("align: --image-size must be between 4 and 4096, got \(imageSize)")
        }
        if let pretext, pretext != "simclr" && pretext != "byol" { throw CheckpointError.invalid("align: --pretext must be simclr or byol, got '\(pretext)'") }
        let cg = self.cg ?? "layerwise", hvp = self.hvp ?? "central"
        guard cg == "layerwise" || cg == "global" else { throw CheckpointError.invalid("align: --cg must be layerwise or global, got '\(cg)'") }
        guard hvp == "forward" || hvp == "central" else { throw CheckpointError.invalid("align: --hvp must be forward or central, got '\(hvp)'") }
        if let name { try Self.checkName(name, zoo: zoo) }
        // REF and its pretext heads
        let id = try zoo.resolve(ref)
        let entry = try zoo.checkpoint(id)
        let p = entry.provenance
        // REF's recorded settings, camelCase or an older spelling (RecordedSettings)
        func number(_ key: String) -> Double? { RecordedSettings.number(key, in: p.hyperparameters) }
        guard let method = pretext ?? p.method?.lowercased() else {
            throw CheckpointError.invalid("align: REF records no pretext method; give --pretext simclr|byol")
        }
        guard method == "simclr" || method == "byol" else {
            throw CheckpointError.invalid("align: REF's method is '\(method)', not simclr or byol; give --pretext simclr|byol")
        }
        let temperature = number("temperature") ?? 0.5, emaDecay = number("emaDecay") ?? 0.9995
        do {
            let net = try Network(checkpoint: entry)
            net.removeHead("classifier")
            _ = try PretextObjective(method: method == "byol" ? .byol : .simclr, network: net,
                                     temperature: Float(temperature), emaDecay: Float(emaDecay))
        } catch {
            throw CheckpointError.invalid("align: REF \(String(id.prefix(12))) cannot be aligned with \(method): \(error)")
        }
        // data (each error names its option)
        func dataset(_ option: String, _ uri: String) throws -> ImageDataset {
            do {
                let set = try ImageDataset(parsing: uri)
                guard set.count > 0 else { throw CheckpointError.invalid("it has no images") }
                return set
            } catch {
                throw CheckpointError.invalid("\(option) \(uri): \(error)")
            }
        }
        let train = try dataset("--data", data)
        let pretextSet = try dataset("--pretext-data", pretextData)
        var valURI = val
        if let val {
            _ = try dataset("--val", val)
        } else if let uri = try? DatasetURI(parsing: data), !uri.partGiven {
            var test = uri
            test.part = .test
            if let set = try? ImageDataset(test), set.count > 0 { valURI = test.description }
        }
        let size = imageSize ?? RecordedSettings.integer("imageSize", in: p.hyperparameters) ?? 96
        guard size >= 4 else { throw CheckpointError.invalid("align: --image-size must be at least 4, got \(size) (from REF's provenance)") }
        // batch sizes: a given one larger than its data is an error, a default is clamped (and said)
        func batch(_ option: String, given: Int?, fallback: Int, what: String, count: Int) throws -> Int {
            if let given {
                guard given <= count else {
                    throw CheckpointError.invalid("align: \(option) \(given) is larger than \(what) (\(count) images)")
                }
                return given
            }
            guard fallback > count else { return fallback }
            guard count >= 2 else { throw CheckpointError.invalid("align: \(what) has \(count) image; a batch needs at least 2") }
            FileHandle.standardError.write(Data("note: \(option) defaults to \(fallback), more than \(what) has; using \(count)\n".utf8))
            return count
        }
        let refBatch = RecordedSettings.integer("batchSize", in: p.hyperparameters).flatMap { $0 >= 2 ? $0 : nil } ?? 1024
        let pBatch = try batch("--p-batch-size", given: pBatchSize, fallback: refBatch, what: "--pretext-data", count: pretextSet.count)
        let dBatch = try batch("--d-batch-size", given: dBatchSize, fallback: 256, what: "--data", count: train.count)

        // URIs as absolute paths, so the run resumes from any directory and provenance names the files.
        var c = AlignConfig(ref: id, data: train.uri.description, pretextData: pretextSet.uri.description,
                            val: try valURI.map { try DatasetURI(parsing: $0).description }, method: method,
                            temperature: temperature, emaDecay: emaDecay,
                            pixelScale: RecordedSettings.string("pixelScale", in: p.hyperparameters) ?? "raw", name: name)
        c.hyper = hyper
        var s = c.settings
        s.alternations = T; s.lowerSteps = NL; s.upperSteps = NU
        s.implicit = ImplicitGradientOptions(lambda: Float(hyper.lambda), damping: Float(hyper.damping), iterations: K,
                                             solver: cg == "global" ? .global : .layerwise,
                                             hvp: hvp == "forward" ? .forward : .central, enabled: !noIJ)
        s.warmupEpochs = E
        s.pBatchSize = pBatch
        s.dBatchSize = dBatch
        s.imageSize = size
        s.pixelScale = c.pixelScale == "unit" ? .unit : .raw
        s.seed = seed ?? 0
        c.settings = s
        c.classes = max(train.classNames.count, (train.labels.max() ?? -1) + 1)
        c.trainCount = train.count
        guard c.totalSteps != nil else {
            throw CheckpointError.invalid("align: --warmup-epochs, --alternations and the step counts give more steps than can be counted")
        }
        return c
    }

    /// Refuses `--name NAME` when the zoo would refuse it at the end: not a valid label
    /// (`LabelRules`), or already the name or tag of an entry.
    static func checkName(_ name: String, zoo: Zoo) throws {
        do { try LabelRules.validate(name) } catch {
            throw CheckpointError.invalid("--name: \(error)")
        }
        // A valid label is never a full id nor a 6+ hex prefix, so `resolve` finds it only as a label.
        if let owner = try? zoo.resolve(name) {
            let kind = (try? zoo.labels(of: owner))?.first { $0.label == name }?.kind.rawValue ?? "label"
            throw CheckpointError.invalid("--name \(name) is already the \(kind) of entry \(owner.prefix(12)); choose another name (or bissl untag \(name) first)")
        }
    }

    func execute(_ c: AlignConfig, run: Run, zoo: Zoo) throws {
        let entry = try zoo.checkpoint(c.ref)
        let thetaP = try Network(checkpoint: entry)
        thetaP.removeHead("classifier")
        let objective = try PretextObjective(method: c.method == "byol" ? .byol : .simclr, network: thetaP,
                                             temperature: Float(c.temperature), emaDecay: Float(c.emaDecay))
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
            var out = ["id": result.id, "run": run.id]
            if let name = result.name { out["name"] = name }
            try ZooOutput.printJSON(out)
        } else {
            let top1 = p.metrics["val_top1"].map { String(format: ", val top-1 %.2f%%", $0) } ?? ""
            print("aligned \(String(c.ref.prefix(12))) -> \(result.id.prefix(12))\(result.name.map { " (\($0))" } ?? "")\(top1); run \(run.id)")
        }
    }
}

/// The user-given real-valued hyperparameters, kept as the Doubles given (recorded as such in the run
/// config and the entry's hyperparameters); the engine gets them as Float (`AlignConfig.settings`).
struct AlignHyper: Equatable {
    var lambda: Double, damping: Double, dLR: Double, dWD: Double, pLR: Double, pWD: Double, clip: Double
}

/// Every resolved setting of an alignment, as recorded in the run config (and the entry's hyperparameters).
struct AlignConfig {
    var ref: String, data: String, pretextData: String, val: String?
    var method: String, temperature: Double, emaDecay: Double, pixelScale: String
    var name: String?
    /// λ, δ, learning rates, weight decays, clip as given; `settings` holds their Float copies.
    var hyper = AlignHyper(lambda: 0.001, damping: 10, dLR: 0.03, dWD: 1e-3, pLR: 1.0, pWD: 1e-6, clip: 10) {
        didSet { applyHyper() }
    }
    var settings = AlignmentSettings()
    var classes = 0, trainCount = 0

    init(ref: String, data: String, pretextData: String, val: String?, method: String, temperature: Double, emaDecay: Double,
         pixelScale: String, name: String?) {
        self.ref = ref; self.data = data; self.pretextData = pretextData; self.val = val; self.method = method
        self.temperature = temperature; self.emaDecay = emaDecay; self.pixelScale = pixelScale; self.name = name
        applyHyper()
    }

    /// Copies `hyper` into `settings` (Float, for the engine).
    mutating func applyHyper() {
        settings.implicit.lambda = Float(hyper.lambda); settings.implicit.damping = Float(hyper.damping)
        settings.dLR = Float(hyper.dLR); settings.dWD = Float(hyper.dWD)
        settings.pLR = Float(hyper.pLR); settings.pWD = Float(hyper.pWD); settings.clip = Float(hyper.clip)
    }

    /// Warmup steps (one per full downstream batch) + T·(NL + NU); nil when it does not fit an Int
    /// or the downstream batch size is not positive.
    var totalSteps: Int? {
        let s = settings
        guard s.dBatchSize > 0 else { return nil }
        let (warmup, o1) = s.warmupEpochs.multipliedReportingOverflow(by: trainCount / s.dBatchSize)
        let (phase, o2) = s.lowerSteps.addingReportingOverflow(s.upperSteps)
        let (alternating, o3) = s.alternations.multipliedReportingOverflow(by: phase)
        let (total, o4) = warmup.addingReportingOverflow(alternating)
        return o1 || o2 || o3 || o4 ? nil : total
    }

    /// A Float constant as the Double it was written as (0.9, not 0.8999999761581421).
    static func decimal(_ f: Float) -> Double { Double(f.description) ?? Double(f) }

    var json: [String: JSONValue] {
        let s = settings, h = hyper
        var j: [String: JSONValue] = [
            "ref": .string(ref), "data": .string(data), "pretextData": .string(pretextData), "pretext": .string(method),
            "temperature": .double(temperature), "emaDecay": .double(emaDecay), "pixelScale": .string(pixelScale),
            "alternations": .int(Int64(s.alternations)), "lowerSteps": .int(Int64(s.lowerSteps)), "upperSteps": .int(Int64(s.upperSteps)),
            "lambda": .double(h.lambda), "damping": .double(h.damping),
            "cgIters": .int(Int64(s.implicit.iterations)), "cg": .string(s.implicit.solver.rawValue),
            "hvp": .string(s.implicit.hvp == .central ? "central" : "forward"), "noIJ": .bool(!s.implicit.enabled),
            "warmupEpochs": .int(Int64(s.warmupEpochs)), "dLR": .double(h.dLR), "dWD": .double(h.dWD),
            "dMomentum": .double(Self.decimal(s.dMomentum)), "pLR": .double(h.pLR), "pWD": .double(h.pWD),
            "pMomentum": .double(Self.decimal(s.pMomentum)), "pEta": .double(Self.decimal(s.pEta)), "clip": .double(h.clip),
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
        func num(_ k: String) throws -> Double {
            switch j[k] {
            case .double(let d)?: return d
            case .int(let i)?: return Double(i)
            default: throw bad(k)
            }
        }
        func bool(_ k: String) throws -> Bool { guard case .bool(let v)? = j[k] else { throw bad(k) }; return v }
        self.init(ref: try str("ref"), data: try str("data"), pretextData: try str("pretextData"),
                  val: j["val"] == nil ? nil : try str("val"), method: try str("pretext"), temperature: try num("temperature"),
                  emaDecay: try num("emaDecay"), pixelScale: try str("pixelScale"), name: j["name"] == nil ? nil : try str("name"))
        var s = AlignmentSettings()
        s.alternations = try int("alternations"); s.lowerSteps = try int("lowerSteps"); s.upperSteps = try int("upperSteps")
        s.implicit = ImplicitGradientOptions(lambda: 0, damping: 0, iterations: try int("cgIters"),
                                             solver: try str("cg") == "global" ? .global : .layerwise,
                                             hvp: try str("hvp") == "forward" ? .forward : .central, enabled: !(try bool("noIJ")))
        s.warmupEpochs = try int("warmupEpochs")
        s.dMomentum = Float(try num("dMomentum")); s.pMomentum = Float(try num("pMomentum")); s.pEta = Float(try num("pEta"))
        s.pBatchSize = try int("pBatchSize"); s.dBatchSize = try int("dBatchSize")
        s.imageSize = try int("imageSize"); s.pixelScale = pixelScale == "unit" ? .unit : .raw
        s.seed = UInt64(bitPattern: Int64(try int("seed")))
        settings = s
        hyper = AlignHyper(lambda: try num("lambda"), damping: try num("damping"), dLR: try num("dLR"), dWD: try num("dWD"),
                           pLR: try num("pLR"), pWD: try num("pWD"), clip: try num("clip"))
        applyHyper()
        classes = try int("classes"); trainCount = try int("trainCount")
    }
}
