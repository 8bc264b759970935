import ArgumentParser
import Engine
import Foundation
import Training

/// `bissl align REF --data URI --pretext-data URI`: BiSSL alignment of a pretext zoo entry to a
/// downstream task (`AlignJob`, docs/bissl.md); the result is a `bissl` entry.
struct AlignCommand: TrainingCommand {
    typealias Job = AlignJob
    static let createsZoo = false
    static let configuration = CommandConfiguration(
        commandName: "align",
        abstract: "Align a self-supervised zoo entry to a downstream task with BiSSL (a new 'bissl' entry).",
        discussion: """
        Head-only linear warmup, then T alternations of NL lower steps (pretext loss + (λ/2)||θ_P − θ_D||², \
        LARS) and NU upper steps (CE through θ_P with the implicit gradient (I + H/(λ+δ))^-1 g by CG, plus CE \
        through θ_D, SGD). Pretext method, temperature, EMA decay, image size and pixel scale default to \
        what REF's provenance records. Logged per lower step: penalty_share = λ·||θ_P − θ_D|| / ||∇L_P||; per \
        alternation: loss_pretext_heldout on one fixed held-out pretext batch (--pretext-val). --lambda 0 --no-ij \
        is exactly continued pretext training of θ_P on the same schedule and batches (the control arm). \
        --keep-upper also keeps θ_D, φ_D as an entry. Resumable: --resume RUN (see `bissl runs`).
        """)

    @Argument(help: "The pretext entry (id, prefix, name or tag); it must have a projector (BYOL: and predictor) head.")
    var ref: String?
    @Option(help: ArgumentHelp("Downstream training data (e.g. h5:data/digits/digits.h5).", valueName: "URI"))
    var data: String?
    @Option(name: .customLong("pretext-data"), help: ArgumentHelp("Pretext images for the lower level.", valueName: "URI"))
    var pretextData: String?
    @Option(help: ArgumentHelp("Validation data for the per-alternation top-1 (default: the #test part of --data when it exists).", valueName: "URI"))
    var val: String?
    @Option(help: "\(PretextMethods.names) (default: REF's method).") var pretext: PretextObjective.Method?
    @Option(parsing: .unconditional, help: "T: lower/upper alternations (default 500).") var alternations: Int?
    @Option(name: .customLong("lower-steps"), parsing: .unconditional, help: "NL: lower steps per alternation (default 20).") var lowerSteps: Int?
    @Option(name: .customLong("upper-steps"), parsing: .unconditional, help: "NU: upper steps per alternation (default 8).") var upperSteps: Int?
    @Option(parsing: .unconditional, help: "λ: proximity weight (lower penalty and implicit solve; default 0.001).") var lambda: Double?
    @Option(parsing: .unconditional, help: "δ: damping added to λ in the solve (default 10).") var damping: Double?
    @Option(name: .customLong("cg-iters"), parsing: .unconditional, help: "K: CG iterations per upper step (default 5).") var cgIters: Int?
    @Option(help: "layerwise (per-tensor step sizes, default) or global CG.") var cg: ImplicitGradientOptions.Solver?
    @Option(help: "Hessian-vector products: exact (forward-over-reverse, ~2 gradients per product, default), or finite differences central (2 gradients) / forward (1).") var hvp: HessianVectorProduct.Scheme?
    @Option(name: .customLong("hvp-bn"), help: "BN running statistics during the solve: train (each product moves them once, as the reference's train-mode HVP forwards; default) or frozen.") var hvpBN: ImplicitGradientOptions.HVPBatchNorm?
    @Option(name: .customLong("warmup-epochs"), parsing: .unconditional, help: "Head-only warmup epochs (default 20).") var warmupEpochs: Int?
    @Option(name: .customLong("d-lr"), parsing: .unconditional, help: "Upper-level (and warmup) SGD learning rate (default 0.03).") var dLR: Double?
    @Option(name: .customLong("d-wd"), parsing: .unconditional, help: "Upper-level SGD weight decay (default 0.001).") var dWD: Double?
    @Option(name: .customLong("p-lr"), parsing: .unconditional, help: "Lower-level LARS learning rate (default 1.0).") var pLR: Double?
    @Option(name: .customLong("p-wd"), parsing: .unconditional, help: "Lower-level LARS weight decay (default 1e-6).") var pWD: Double?
    @Option(name: .customLong("p-batch-size"), parsing: .unconditional, help: "Pretext images per lower step (default: REF's batch size, else 1024; at most the pretext images).") var pBatchSize: Int?
    @Option(name: .customLong("d-batch-size"), parsing: .unconditional, help: "Downstream images per upper step (default 256; at most the --data images).") var dBatchSize: Int?
    @Option(parsing: .unconditional, help: "Global gradient-norm bound at both levels (default 10).") var clip: Double?
    @Flag(name: .customLong("no-ij"), help: "Ablation: replace the implicit gradient u by g (no HVP).") var noIJ = false
    @Flag(name: .customLong("fresh-heads"), help: "Start new pretext heads (projector, BYOL: predictor) instead of REF's, e.g. when REF's heads cannot be used.")
    var freshHeads = false
    @Option(name: .customLong("image-size"), parsing: .unconditional, help: "Image side (default: REF's, else 96).") var imageSize: Int?
    @Option(parsing: .unconditional, help: "Base seed (default 0).", transform: SeedArgument.parse) var seed: UInt64?
    @OptionGroup var augmentOption: AugmentOption
    @Option(name: .customLong("pretext-val"), help: ArgumentHelp("Held-out pretext images for loss_pretext_heldout, one fixed batch (default: the #test part of --pretext-data when it exists).", valueName: "URI")) var pretextVal: String?
    @Flag(name: .customLong("keep-upper"), help: "Also add the upper model θ_D, φ_D as an entry (named NAME-upper with --name; parent REF).") var keepUpper = false
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var zooOptions: ZooOptions

    var jobOptions: AlignOptions {
        var o = AlignOptions()
        o.ref = ref; o.data = data; o.pretextData = pretextData; o.val = val; o.pretext = pretext
        o.alternations = alternations; o.lowerSteps = lowerSteps; o.upperSteps = upperSteps; o.lambda = lambda
        o.damping = damping; o.cgIters = cgIters; o.cg = cg; o.hvp = hvp; o.hvpBatchNorm = hvpBN; o.warmupEpochs = warmupEpochs
        o.dLR = dLR; o.dWD = dWD; o.pLR = pLR; o.pWD = pWD; o.pBatchSize = pBatchSize; o.dBatchSize = dBatchSize
        o.clip = clip; o.noIJ = noIJ; o.imageSize = imageSize; o.seed = seed; o.name = runOptions.name; o.syncBn = runOptions.syncBN; o.freshHeads = freshHeads
        o.augment = augmentOption.augment; o.pretextVal = pretextVal; o.keepUpper = keepUpper
        return o
    }

    func report(_ r: JobResult) throws {
        var out = ["id": r.entry.id, "run": r.run.id]
        if let name = r.entry.name { out["name"] = name }
        let top1 = r.provenance.metrics["upper_val_top1"].map { String(format: ", upper model's val top-1 %.2f%%", $0) } ?? ""
        let ref = r.provenance.parents.first.map { String($0.id.prefix(12)) } ?? "?"
        var upper = ""
        if case .string(let id)? = r.provenance.hyperparameters["upperEntry"] {
            out["upper"] = id
            upper = "; upper model θ_D, φ_D -> \(id.prefix(12))"
        }
        try printResult(json: runOptions.json, out,
                        "aligned \(ref) -> \(r.entry.id.prefix(12))\(r.entry.name.map { " (\($0))" } ?? "")\(top1)\(upper); run \(r.run.id)")
    }
}
