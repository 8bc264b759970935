import Checkpoint
import Datasets
import Foundation
import Zoo

/// What the user asked `bissl finetune` for; nil means "use the default" (`FineTuneJob.resolve`).
public struct FineTuneOptions: JobOptions, Sendable {
    /// The entry to fine-tune (id, prefix, name or tag); nil with `randomInit`.
    public var ref: String?
    public var randomInit = false
    public var arch: String?, width: Int?, stem: String?
    public var data: String?, val: String?
    public var epochs: Int?, steps: Int?, batchSize: Int?
    public var lr: Double?, wd: Double?
    public var search: Int?
    public var imageSize: Int?
    public var seed: UInt64?
    public var checkpointEvery: Int?
    public var name: String?
    /// `--augment` text (`DownstreamAugmentation`); nil: `crop:0.08+flip`.
    public var augment: String?
    /// `--keep`; nil: `.last`.
    public var keep: FineTuneKeep?
    /// `--sync-bn`: under `mpirun`, BatchNorm normalises with the whole global batch's statistics
    /// (`DataParallel.syncBatchNorm`, torch.nn.SyncBatchNorm); nothing changes on one process.
    public var syncBn = false

    public init() {}

    /// The rules the options obey on their own: `--data` given; REF or `--random-init` (the
    /// architecture options only with the latter); `--steps` or `--epochs`; every given number in range.
    /// - Throws: `TrainingError.invalid`, one line naming the option and the value.
    public func validate() throws {
        func bad(_ message: String) -> TrainingError { .invalid(message) }
        guard data != nil else { throw bad("--data URI is required") }
        if randomInit {
            guard ref == nil else { throw bad("give either REF or --random-init, not both") }
        } else {
            guard ref != nil else { throw bad("give the entry to fine-tune (REF), or --random-init --arch ... for a random start") }
            let used = [("--arch", arch != nil), ("--width", width != nil), ("--stem", stem != nil)].filter(\.1).map(\.0)
            guard used.isEmpty else {
                throw bad("\(used.joined(separator: ", ")) \(used.count == 1 ? "applies" : "apply") only with --random-init (entry \(ref ?? "") has its own architecture)")
            }
        }
        if epochs != nil && steps != nil { throw bad("give --steps or --epochs, not both") }
        if let e = epochs, e < 1 { throw bad("--epochs must be at least 1, got \(e)") }
        if let s = steps, s < 1 { throw bad("--steps must be at least 1, got \(s)") }
        if let b = batchSize, b < 2 { throw bad("--batch-size must be at least 2 (train-mode BatchNorm needs 2 samples), got \(b)") }
        if let lr, !(lr > 0 && lr.isFinite) { throw bad("--lr must be a positive finite number, got \(lr)") }
        if let wd, !(wd >= 0 && wd.isFinite) { throw bad("--wd must be a finite number, 0 or more, got \(wd)") }
        if let n = search, n < 0 { throw bad("--search must be 0 or more, got \(n)") }
        if let c = checkpointEvery, c < 1 { throw bad("--checkpoint-every must be at least 1, got \(c)") }
        if let a = augment {
            do { _ = try DownstreamAugmentation(parsing: a) } catch { throw bad("\(error)") }
        }
        if randomInit {
            _ = try ArchitectureName.resolve(arch ?? "resnet18", width: width, stem: stem)
            _ = try FineTuneStart.architecture(arch: randomArchitecture.arch, width: randomArchitecture.width, stem: randomArchitecture.stem)
        }
    }

    /// The `--random-init` backbone, defaults filled in: ResNet-18, width 64, small stem (our data is 8-28 px).
    /// `--arch` may be a full name (`resnet18-w8-small`, `ArchitectureName`); `validate` refuses one that
    /// does not parse or contradicts `--width` / `--stem`.
    var randomArchitecture: (arch: String, width: Int, stem: String) {
        let n = try? ArchitectureName.resolve(arch ?? "resnet18", width: width, stem: stem)
        return ("resnet\(n?.depth ?? 18)", n?.width ?? width ?? 64, n?.stem ?? stem ?? "small")
    }
}

/// Every resolved setting of a fine-tuning run: the run's config (run.json) and the entry's
/// hyperparameters, camelCase keys (a run started before that rule, with `batch_size` etc., reads
/// through `RecordedSettings`).
public struct FineTuneConfig: Codable, Equatable, Sendable {
    public var ref: String?
    public var randomInit: Bool
    public var arch: String?, width: Int?, stem: String?
    public var data: String, val: String?
    /// The hold-out rule when there is no `val`.
    public var holdout: String?
    /// Epochs per trial; nil (not recorded) when `steps` counts the run instead.
    public var epochs: Int?, steps: Int?, batchSize: Int
    public var lr: Double, wd: Double, momentum: Double
    public var search: Int
    public var imageSize: Int
    public var seed: Seed
    public var checkpointEvery: Int?
    public var name: String?
    /// The training augmentation, canonical `DownstreamAugmentation` text; nil in runs recorded before
    /// `--augment` existed, which used `crop:0.08+flip`.
    public var augment: String?
    /// Which weights each trial delivers; nil in runs recorded before `--keep` existed (`.last`).
    public var keep: FineTuneKeep?

    /// The tuner's settings (`augment` is checked by `FineTuneJob.init`).
    public var settings: FineTuneSettings {
        FineTuneSettings(epochs: epochs ?? 10, steps: steps, batchSize: batchSize, lr: lr, weightDecay: wd, momentum: momentum,
                         imageSize: imageSize, seed: seed.value, search: search, checkpointEvery: checkpointEvery,
                         augmentation: (try? DownstreamAugmentation(recorded: augment)) ?? .standard, keep: keep ?? .last)
    }

    public static let holdoutRule = "every 10th image of --data (positions 9, 19, 29, ...) is validation, the rest trains"
}

/// `bissl finetune` as a `TrainingJob`: full fine-tuning of an entry (or of a random initialisation)
/// by a `FineTuner`, ending as a `finetune` entry (backbone + classifier). See docs/finetuning.md.
public struct FineTuneJob: TrainingJob {
    public static var kind: String { "finetune" }
    public let config: FineTuneConfig
    public let totalSteps: Int
    public var entryName: String? { config.name }

    /// Defaults filled in and checked; the data is opened to scale the defaults to it.
    /// - Throws: `TrainingError.invalid`, one line naming the option.
    public static func resolve(_ o: FineTuneOptions, zoo: Zoo) throws -> FineTuneConfig {
        func bad(_ message: String) -> TrainingError { .invalid(message) }
        try o.validate()
        let data = o.data ?? ""
        let refId = try o.ref.map { try zoo.resolve($0) }
        let dataset = try DownstreamData.open(data, role: "--data")
        // Checked before anything is printed: an error is then the command's only line.
        if let val = o.val { _ = try DownstreamData.open(val, role: "--val") }
        let trainCount = o.val == nil ? dataset.count - dataset.count / 10 : dataset.count
        if o.val == nil && dataset.count / 10 < 1 {
            throw bad("--data has \(dataset.count) images: too few to hold out every 10th for validation; pass --val")
        }
        // Default image side: the entry's own (the size it was trained at), else the data's.
        let recorded = try refId.flatMap { DownstreamData.recordedImageSize(try zoo.checkpoint($0).provenance) }
        let size = try DownstreamData.imageSize(o.imageSize ?? recorded, data: dataset)
        let c = FineTuneConfig(
            ref: refId, randomInit: o.randomInit,
            arch: o.randomInit ? o.randomArchitecture.arch : nil, width: o.randomInit ? o.randomArchitecture.width : nil,
            stem: o.randomInit ? o.randomArchitecture.stem : nil,
            // absolute paths: the run resumes from any directory, provenance names the files
            data: dataset.uri.description, val: try o.val.map { try DatasetURI(parsing: $0).description },
            holdout: o.val == nil ? FineTuneConfig.holdoutRule : nil,
            epochs: o.steps == nil ? o.epochs ?? 10 : nil, steps: o.steps, batchSize: o.batchSize ?? FineTuneSettings.defaultBatchSize(trainCount: trainCount),
            lr: o.lr ?? 0.1, wd: o.wd ?? 1e-3, momentum: 0.9, search: o.search ?? 0, imageSize: size,
            seed: Seed(o.seed ?? 0), checkpointEvery: o.checkpointEvery, name: o.name,
            augment: try o.augment.map { try DownstreamAugmentation(parsing: $0) }.map(\.description) ?? DownstreamAugmentation.standard.description,
            keep: o.keep ?? .last)
        guard c.batchSize <= trainCount else { throw bad("--batch-size \(c.batchSize) is larger than the \(trainCount) training images") }
        // Printed once every setting is checked, so that a usage error is the only line.
        if o.imageSize == nil && recorded == nil, let ref = o.ref {
            FileHandle.standardError.write(Data(("note: \(ref) records no training image size; fine-tuning at the data's "
                + "\(size)x\(size) (--image-size to choose)\n").utf8))
        }
        return c
    }

    /// Counts the steps; a resumed run must see the data it started with.
    public init(config: FineTuneConfig, zoo: Zoo, resuming run: Run?) throws {
        self.config = config
        _ = try DownstreamAugmentation(recorded: config.augment)  // a damaged config fails here, not silently
        let probe = try Self.datasets(config, directory: nil)
        totalSteps = FineTuner.stepsPerTrial(config.settings, trainCount: probe.trainCount) * max(config.search, 1)
        if let run { try Self.checkDataUnchanged(config, run: run) }
        self.zoo = zoo
    }

    let zoo: Zoo

    public func startMessage(run: Run, commandLine: [String]) -> String { "run \(run.id) (\(run.directory.path))" }

    /// Training and validation data: `--val`, or the hold-out of `--data` through split files in
    /// the run directory (`holdout-train.txt`, `holdout-val.txt`; rewritten identically on resume).
    /// With `directory` nil only the training count is computed.
    static func datasets(_ o: FineTuneConfig, directory: URL?) throws -> (train: ImageDataset?, val: ImageDataset?, trainURI: String, valURI: String, trainCount: Int) {
        let full = try DownstreamData.open(o.data, role: "--data")
        if let val = o.val {
            return (full, try DownstreamData.open(val, role: "--val"), o.data, val, full.count)
        }
        let positions = full.sourceIndices
        let trainIdx = positions.enumerated().filter { $0.offset % 10 != 9 }.map(\.element)
        let valIdx = positions.enumerated().filter { $0.offset % 10 == 9 }.map(\.element)
        guard let directory else { return (nil, nil, "", "", trainIdx.count) }
        var uri = full.uri
        func write(_ indices: [Int], _ file: String) throws -> String {
            let url = directory.appendingPathComponent(file)
            let text = "# bissl finetune hold-out of \(o.data): \(FineTuneConfig.holdoutRule)\n" + indices.map(String.init).joined(separator: "\n") + "\n"
            try AtomicFile.write(Data(text.utf8), to: url)
            uri.splitFile = url.path
            return uri.description
        }
        let trainURI = try write(trainIdx, "holdout-train.txt")
        let valURI = try write(valIdx, "holdout-val.txt")
        return (try DownstreamData.open(trainURI, role: "hold-out train"), try DownstreamData.open(valURI, role: "hold-out val"),
                trainURI, valURI, trainIdx.count)
    }

    /// `data-fingerprints.json` in the run directory: the fingerprints of the training and
    /// validation data when the run started.
    static func fingerprintsURL(_ run: Run) -> URL { run.directory.appendingPathComponent("data-fingerprints.json") }

    /// Refuses a resume when a recorded fingerprint differs from the data's today.
    static func checkDataUnchanged(_ o: FineTuneConfig, run: Run) throws {
        guard let recorded = try? JSONDecoder().decode([String: String].self, from: Data(contentsOf: fingerprintsURL(run))) else { return }
        let d = try datasets(o, directory: run.directory)
        for (role, data) in [("--data", d.train), ("--val", d.val)] {
            guard let data, let then = recorded[role] else { continue }
            let now = try data.fingerprint()
            guard now == then else {
                throw TrainingError.invalid("the data of \(role) changed since run \(run.id) started (fingerprint \(then.prefix(19)) then, \(now.prefix(19)) now); restore it to resume")
            }
        }
    }

    /// Builds the start network and the tuner, runs (or resumes) every trial, returns the chosen
    /// trial's network with its provenance.
    public func train(on run: Run) throws -> Checkpoint {
        let o = config
        let d = try Self.datasets(o, directory: run.directory)
        guard let train = d.train, let val = d.val else { throw TrainingError.invalid("no data") }
        if run.writes && !FileManager.default.fileExists(atPath: Self.fingerprintsURL(run).path) {
            let fingerprints = ["--data": try train.fingerprint(), "--val": try val.fingerprint()]
            try AtomicFile.write(try JSONEncoder().encode(fingerprints), to: Self.fingerprintsURL(run))
        }
        // Under mpirun only rank 0 speaks (and writes), as pretrain and align do: the others follow the run.
        let say = { (s: String) in if run.writes { FileHandle.standardError.write(Data("\(s)\n".utf8)) } }
        if o.val == nil {
            say("no --val: holding out every 10th image of --data for validation (\(val.count) images; \(train.count) train)")
        }
        let classes = max(train.classNames.count, val.classNames.count)
        let start: FineTuneStart
        if o.randomInit {
            guard let arch = o.arch, let width = o.width, let stem = o.stem else {
                throw TrainingError.invalid("the run's config has --random-init but no arch, width and stem")
            }
            let a = try FineTuneStart.architecture(arch: arch, width: width, stem: stem)
            start = try FineTuneStart(randomArchitecture: a, classes: classes, seed: o.seed.value)
        } else {
            guard let ref = o.ref else { throw TrainingError.invalid("the run's config has no entry") }
            let checkpoint = try zoo.checkpoint(ref)
            // Only the backbone and classifier are read: a projector/predictor is dropped anyway.
            let unread = Array(checkpoint.components.keys.filter { $0 != "backbone" && $0 != "classifier" })
            start = FineTuneStart(entry: try Network(checkpoint: checkpoint, heads: ["classifier"]), entryId: ref,
                                  entryStage: checkpoint.provenance.stage, classes: classes, seed: o.seed.value, unreadHeads: unread)
        }
        if let w = start.warning { say("warning: \(w)") }
        let tuner = try FineTuner(config: o.settings, start: start.network, train: train, val: val, run: run)
        say("fine-tuning \(start.network.architecture.label) (\(start.note)): \(train.count) train / \(val.count) val images, " +
            "\(classes) classes, \(o.imageSize)x\(o.imageSize), batch \(o.batchSize), \(tuner.stepsPerTrial) steps" +
            (o.search > 0 ? " x \(o.search) trials" : ", lr \(o.lr), wd \(o.wd)"))
        guard let outcome = try tuner.runAll() else {
            throw TrainingError.invalid("stopped; resume with: \(Self.resumeCommand(runID: run.id, commandLine: CommandLine.arguments, ranks: DataParallel.world.size))")
        }
        let datasets = [Provenance.Dataset(role: "downstream-train", uri: d.trainURI, fingerprint: try train.fingerprint()),
                        Provenance.Dataset(role: "downstream-val", uri: d.valURI, fingerprint: try val.fingerprint())]
        var provenance = tuner.provenance(outcome: outcome, start: start, parentId: o.ref, datasets: datasets)
        // hyperparameters = the run config; a run started before camelCase keys still records camelCase
        provenance.hyperparameters = RecordedSettings.camelCased(provenance.hyperparameters)
        return outcome.network.checkpoint(provenance: provenance)
    }
}
