import Checkpoint
import Datasets
import Engine

/// What the user asked for (`bissl pretrain` options); nil means "use the default".
public struct PretrainOptions: JobOptions, Sendable {
    public var method: PretextObjective.Method?
    public var data: String?
    /// `resnet18` ... `resnet152`.
    public var arch: String?
    public var width: Int?
    public var stem: String?
    public var imageSize: Int?
    public var batchSize: Int?
    public var steps: Int?
    public var epochs: Int?
    public var lr: Float?
    public var weightDecay: Float?
    public var optimizer: String?
    public var temperature: Float?
    public var emaDecay: Float?
    public var seed: UInt64?
    /// Entry ref (an id, prefix, name or tag; `resolve` replaces it by the full id) the run continues from.
    public var from: String?
    public var name: String?
    public var checkpointEvery: Int?
    /// `--sync-bn`: under `mpirun`, BatchNorm normalises with the whole global batch's statistics
    /// (`DataParallel.syncBatchNorm`, torch.nn.SyncBatchNorm); nothing changes on one process.
    public var syncBn = false

    public init(method: PretextObjective.Method? = nil, data: String? = nil) {
        self.method = method
        self.data = data
    }

    public static func flag(for label: String) -> String {
        label == "weightDecay" ? "--wd" : "--" + RecordedSettings.snakeCase(label, separator: "-")
    }

    /// The rules the options obey on their own (the data and the `--from` entry are checked by
    /// `PretrainConfig.resolve`): `--method` and `--data` given, every given number in range.
    /// - Throws: `TrainingError.invalid`, one line naming the option and the value.
    public func validate() throws {
        func bad(_ message: String) -> TrainingError { .invalid("pretrain: " + message) }
        guard method != nil else {
            throw TrainingError.invalid("pretrain needs --method \(PretextMethods.all.map { $0.name }.joined(separator: "|")) (or --resume RUN)")
        }
        guard data != nil else { throw TrainingError.invalid("pretrain needs --data URI") }
        if let arch { _ = try Self.depth(arch) }
        if let w = width, w <= 0 || w > 1024 { throw bad("--width must be in 1...1024, got \(w)") }
        if let s = stem, s != "imagenet" && s != "small" { throw bad("--stem must be imagenet or small, got '\(s)'") }
        if let size = imageSize, size < 4 || size > 1024 { throw bad("--image-size must be in 4...1024, got \(size)") }
        if let b = batchSize, b < 2 { throw bad("--batch-size must be at least 2 (BatchNorm needs 2 samples), got \(b)") }
        if steps != nil && epochs != nil { throw bad("give --steps or --epochs, not both") }
        if let s = steps, s <= 0 { throw bad("--steps must be positive, got \(s)") }
        if let e = epochs, e <= 0 { throw bad("--epochs must be positive, got \(e)") }
        if let opt = optimizer, opt != "lars" && opt != "sgd" { throw bad("--optimizer must be lars or sgd, got '\(opt)'") }
        if let lr, !(lr > 0 && lr.isFinite) { throw bad("--lr must be positive, got \(lr)") }
        if let wd = weightDecay, !(wd >= 0 && wd.isFinite) { throw bad("--wd must be non-negative, got \(wd)") }
        if let t = temperature, !(t > 0 && t.isFinite) { throw bad("--temperature must be positive, got \(t)") }
        if let e = emaDecay, !(0...1).contains(e) { throw bad("--ema-decay must be in [0, 1], got \(e)") }
        if let c = checkpointEvery, c <= 0 { throw bad("--checkpoint-every must be positive, got \(c)") }
    }

    /// `resnet50` (any case, or `50`) -> 50.
    /// - Throws: `TrainingError.invalid` for a depth torchvision has no ResNet of.
    static func depth(_ arch: String) throws -> Int {
        try ArchitectureName(parsing: arch).depth   // resnet50, or a full name such as resnet18-w8-small
    }
}

/// Every resolved setting of a pretraining run. Stored as the run's `config` (so `--resume` rebuilds
/// the same run from it) and as the entry's provenance `hyperparameters`.
///
/// Defaults (docs/bissl.md, "Default settings"):
/// - **optimizer** LARS (docs/bissl.md, "Optimisers and schedule") with momentum 0.9, η 0.001, weight decay 1e-6, lr **4.8** whatever the
///   batch size, as the reference implementation (no batch scaling). LARS's step is `lr · η · ||p||` per tensor, independent of the
///   gradient's scale, so the batch size does not call for another lr; what shrinks with small batches
///   is only the gradient's signal-to-noise ratio. `--optimizer sgd`: PyTorch SGD, momentum 0.9, wd 1e-6,
///   lr 0.05 (the method sets no SGD value; our choice).
/// - **schedule** linear warmup over 10 epochs, or 10% of the steps when that is shorter, then cosine
///   to 0.001·lr, stepped per iteration (`CosineSchedule`, the reference implementation: the first step runs
///   at the full lr).
/// - **batch** 1024 in the method; default here min(256, images / 2) (at least 2), drop last.
/// - **steps** `--steps N`, or `--epochs E` × batches per epoch; default 10 epochs (the method's 500
///   epochs of ImageNet are far beyond a CPU).
/// - **image size** 96 in the method. Default: 96 for images of 96 px or more; else the image's larger
///   side rounded up to a multiple of 8 (28x28 Fashion-MNIST: 32; 8x8 digits: 8): up-sampling a 28 px image
///   to 96 px costs 9x the compute for no new information.
/// - **stem** `small` (3x3/1, no pool) when the image size is below 64, else `imagenet`.
/// - **architecture** ResNet-50, width 64.
/// - **projector** `[F, d, d, d]`, d = min(256, F) (the method: 256-256-256 on F = 2048; narrow test nets get
///   d = F so the head is not wider than the backbone), or the `--from` entry's projector; BYOL predictor
///   `[d, d, d, d]` with d the projector's output size.
/// - **τ** 0.5 (SimCLR), **EMA decay** 0.9995 constant (BYOL).
/// - **pixel scale** `unit` ([0, 1] before ImageNet normalisation), NOT the reference implementation's raw 0-255 pretext inputs
///   (docs/bissl.md, "Augmentations and pixel scale"): the backbone's BN running statistics then match the downstream transforms' scale, so the
///   pretext entry can be evaluated in eval mode (k-NN, linear probe) without re-estimating them.
/// - **seed** 0: initialisation `Network(architecture:seed:)` and the loader's order and augmentations.
public struct PretrainConfig: Codable, Equatable, Sendable {
    public var method: PretextObjective.Method
    public var data: String
    /// SHA-256 fingerprint of the data at the start (checked again on resume).
    public var dataFingerprint: String
    /// `resnet18` ... `resnet152`.
    public var arch: String
    public var width: Int, stem: String
    public var imageSize: Int, batchSize: Int
    public var dropLast = true
    /// Total optimiser steps.
    public var steps: Int
    /// `--epochs` when given (steps = epochs × batchesPerEpoch).
    public var epochs: Int?
    public var batchesPerEpoch: Int
    public var optimizer: String
    public var lr: Float, weightDecay: Float, momentum: Float, eta: Float
    public var warmupSteps: Int
    public var schedule = "linear warmup, cosine to 0.001*lr, per step"
    public var temperature: Float, emaDecay: Float
    /// Projector sizes after the feature size F: `[d, d, d]`.
    public var projectorDims: [Int]
    public var seed: Seed
    public var pixelScale: String
    public var augmentation = "Augment.pretextPair (docs/bissl.md, Augmentations)"
    public var viewBatching = "joint 2N batch"
    public var from: String?
    public var name: String?
    public var checkpointEvery: Int?

    /// ResNet depth (18 ... 152) of `arch`.
    public var depth: Int { Int(arch.dropFirst(6)) ?? 0 }

    static let depths = [18, 34, 50, 101, 152]

    /// Resolves `options` against the dataset and the `--from` entry's architecture (backbone and heads:
    /// its projector is kept when it takes the backbone's features).
    /// - Throws: `TrainingError.invalid` (one line) for a bad value, or an option that contradicts the
    ///   `--from` entry's architecture.
    public static func resolve(_ o: PretrainOptions, dataset: ImageDataset, fingerprint: String,
                               parentArchitecture: Architecture? = nil) throws -> PretrainConfig {
        func bad(_ message: String) -> TrainingError { .invalid("pretrain: " + message) }
        try o.validate()
        guard let method = o.method, let data = o.data else { throw TrainingError.invalid("pretrain needs --method and --data") }
        guard dataset.count >= 4 else { throw bad("the data has \(dataset.count) images; need at least 4") }
        let first = try dataset.image(0)
        let native = max(first.height, first.width)

        var depth = 50
        // --arch may be a full name (resnet18-w8-small): its width and stem count as given
        var givenWidth = o.width, givenStem = o.stem
        if let arch = o.arch {
            let name = try ArchitectureName.resolve(arch, width: o.width, stem: o.stem)
            depth = name.depth; givenWidth = name.width; givenStem = name.stem
        }
        let imageSize = o.imageSize ?? (native >= 96 ? 96 : (native + 7) / 8 * 8)
        var width = givenWidth ?? 64
        var stem = givenStem ?? (imageSize < 64 ? "small" : "imagenet")
        if let p = parentArchitecture {
            if o.arch != nil && depth != p.depth { throw bad("--arch resnet\(depth) contradicts the --from entry (resnet\(p.depth))") }
            if givenWidth != nil && width != p.width { throw bad("--width \(width) contradicts the --from entry (width \(p.width))") }
            if givenStem != nil && stem != p.stem { throw bad("--stem \(stem) contradicts the --from entry (stem \(p.stem))") }
            depth = p.depth; width = p.width; stem = p.stem
        }

        let batchSize = o.batchSize ?? max(2, min(256, dataset.count / 2))
        guard batchSize <= dataset.count else { throw bad("--batch-size \(batchSize) exceeds the \(dataset.count) images of the data") }
        let perEpoch = dataset.count / batchSize
        let epochs = o.steps == nil ? (o.epochs ?? 10) : nil
        let steps = o.steps ?? epochs! * perEpoch

        let optimizer = o.optimizer ?? "lars"
        let lr = o.lr ?? (optimizer == "lars" ? 4.8 : 0.05)
        let wd = o.weightDecay ?? 1e-6
        let temperature = o.temperature ?? 0.5
        let ema = o.emaDecay ?? 0.9995
        // warmup: 10 epochs, or 10% of the steps when shorter; CosineSchedule needs total > warmup
        let warmup = min(10 * perEpoch, steps / 10)

        let features = (ResNet.depths[depth]!.block == "bottleneck" ? 4 : 1) * width * 8
        // --from: keep the entry's projector when it fits the backbone (continued pretraining)
        var projectorDims = Self.defaultProjectorDims(features: features)
        if let ph = parentArchitecture?.heads["projector"], ph.kind == "mlp", ph.dims.count >= 2, ph.dims.first == features {
            projectorDims = Array(ph.dims.dropFirst())
        }
        return PretrainConfig(method: method, data: data, dataFingerprint: fingerprint, arch: "resnet\(depth)", width: width, stem: stem,
                              imageSize: imageSize, batchSize: batchSize, steps: steps, epochs: epochs, batchesPerEpoch: perEpoch,
                              optimizer: optimizer, lr: lr, weightDecay: wd, momentum: 0.9, eta: 0.001, warmupSteps: warmup,
                              temperature: temperature, emaDecay: ema, projectorDims: projectorDims, seed: Seed(o.seed ?? 0),
                              pixelScale: "unit", from: o.from, name: o.name, checkpointEvery: o.checkpointEvery)
    }

    /// The backbone + heads this run trains (heads: `projector`, and `predictor` for BYOL).
    public var architecture: Architecture {
        let spec = ResNet.depths[depth]!
        let features = (spec.block == "bottleneck" ? 4 : 1) * width * 8
        var a = Architecture(depth: depth, block: spec.block, layers: spec.layers, width: width, stem: stem)
        a.heads["projector"] = .init(kind: "mlp", dims: [features] + projectorDims)
        for (name, head) in method.type.extraHeads(projectorOutput: projectorDims.last!) { a.heads[name] = head }
        return a
    }

    /// Sizes after the input of a new projector on `features` backbone features: `[d, d, d]`,
    /// d = min(256, features) (256-256-256 on 2048 features, as in the BiSSL paper, arXiv:2410.02387).
    public static func defaultProjectorDims(features: Int) -> [Int] {
        [Int](repeating: min(256, features), count: 3)
    }

    /// The run config and the provenance hyperparameters (Float settings as their shortest decimal).
    public var json: [String: JSONValue] { (try? JSONValueEncoder().encodeObject(self)) ?? [:] }
}
