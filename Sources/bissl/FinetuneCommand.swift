import ArgumentParser
import Checkpoint
import Datasets
import Foundation
import Training
import Zoo

/// `bissl finetune REF --data URI ...` / `bissl finetune --random-init --arch resnet18 ... --data URI`:
/// full fine-tuning (method brief 4.4) on the Runs API; the result is a `finetune` zoo entry with
/// components backbone + classifier. See docs/finetuning.md.
struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune an entry (or a random-initialised ResNet) on labelled data; adds a finetune entry.",
        discussion: """
            Every parameter is trained: SGD momentum 0.9, weight decay on all parameters, cosine from \
            --lr to 0.001*lr per step without warmup, cross-entropy, downstream train transform \
            (RandomResizedCrop ratio (0.5, 1) at --image-size, horizontal flip, ImageNet normalisation). \
            Validation top-1 after every epoch on --val (eval mode, test transform); without --val every \
            10th image of --data (positions 9, 19, 29, ...) is held out for validation and the rest trains. \
            The entry's classifier is kept when its class count matches the data; otherwise (or when it \
            has none) a new Linear(F, C) with PyTorch's default init is used, and the lineage says \
            "classifier re-initialised A -> B". --random-init starts from torchvision's init instead of \
            an entry (the from-scratch baseline). --search N runs N trials with lr log-uniform in \
            [1e-4, 1] and wd log-uniform in [1e-5, 1e-2] (seeded), each with the full budget, and \
            keeps the trial with the best final validation top-1. State is saved at every epoch end and \
            about every 2 minutes; --resume RUN continues an interrupted run bit-exactly.
            """)

    @Argument(help: "Entry to fine-tune: id, unique id prefix, name or tag (omit with --random-init or --resume).")
    var ref: String?

    @Flag(name: .customLong("random-init"), help: "Start from a randomly initialised ResNet (--arch, --width, --stem) instead of an entry.")
    var randomInit = false

    @Option(help: ArgumentHelp("Architecture for --random-init: resnet18|34|50|101|152 (default resnet18).", valueName: "ARCH"))
    var arch: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Base width for --random-init (default 64).", valueName: "W"))
    var width: Int?

    @Option(help: ArgumentHelp("Stem for --random-init: imagenet or small (default small: our data is 8-28 px).", valueName: "STEM"))
    var stem: String?

    @Option(help: ArgumentHelp("Training data (dataset URI).", valueName: "URI"))
    var data: String?

    @Option(help: ArgumentHelp("Validation data (default: every 10th image of --data is held out).", valueName: "URI"))
    var val: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Passes over the training data (default 10; per trial with --search).", valueName: "E"))
    var epochs: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("Optimiser steps (per trial); overrides --epochs.", valueName: "N"))
    var steps: Int?

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Batch size (default 256, or for small data the largest power of two <= images/8, at least 8).", valueName: "B"))
    var batchSize: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("Base learning rate (default 0.1, see docs/finetuning.md).", valueName: "LR"))
    var lr: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("Weight decay on all parameters (default 0.001).", valueName: "WD"))
    var wd: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("Random-search trials over lr and wd (default 0: one run at --lr/--wd).", valueName: "N"))
    var search: Int?

    @Option(name: .customLong("image-size"), parsing: .unconditional, help: ArgumentHelp("Image side S of the transforms (default: the data's own, its first image's shorter side).", valueName: "S"))
    var imageSize: Int?

    @Option(parsing: .unconditional, help: "Seed of the classifier init (and backbone with --random-init), data order, augmentation and search (default 0).")
    var seed: Int?

    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: ArgumentHelp("Save the run state every N steps (default: about every 2 minutes, and at every epoch end).", valueName: "N"))
    var checkpointEvery: Int?

    @Option(help: ArgumentHelp("Name of the new entry.", valueName: "NAME"))
    var name: String?

    @Option(help: ArgumentHelp("Continue an interrupted finetune run (id, unique prefix or directory); takes no other options.", valueName: "RUN"))
    var resume: String?

    @OptionGroup var zooOptions: ZooOptions

    /// Every resolved option: the run's config (run.json) and the entry's hyperparameters, camelCase
    /// keys (a run started before that rule, with `batch_size` etc., reads through `RecordedSettings`).
    struct Options: Codable {
        var ref: String?
        var randomInit: Bool
        var arch: String?
        var width: Int?
        var stem: String?
        var data: String
        var val: String?
        var holdout: String?
        var epochs: Int
        var steps: Int?
        var batchSize: Int
        var lr: Double
        var wd: Double
        var momentum: Double
        var search: Int
        var imageSize: Int
        var seed: Int
        var checkpointEvery: Int?
        var name: String?

        var json: [String: JSONValue] {
            get throws {
                let value = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(self))
                guard case .object(let o) = value else { throw CheckpointError.invalid("options are not an object") }
                return o
            }
        }

        init(json: [String: JSONValue]) throws {
            do {
                let camel = RecordedSettings.camelCased(json)
                self = try JSONDecoder().decode(Options.self, from: JSONEncoder().encode(JSONValue.object(camel)))
            } catch {
                throw CheckpointError.invalid("the run's config is not a finetune config: \(error)")
            }
        }

        init(ref: String?, randomInit: Bool, arch: String?, width: Int?, stem: String?, data: String, val: String?,
             holdout: String?, epochs: Int, steps: Int?, batchSize: Int, lr: Double, wd: Double, momentum: Double,
             search: Int, imageSize: Int, seed: Int, checkpointEvery: Int?, name: String?) {
            self.ref = ref; self.randomInit = randomInit; self.arch = arch; self.width = width; self.stem = stem
            self.data = data; self.val = val; self.holdout = holdout; self.epochs = epochs; self.steps = steps
            self.batchSize = batchSize; self.lr = lr; self.wd = wd; self.momentum = momentum; self.search = search
            self.imageSize = imageSize; self.seed = seed; self.checkpointEvery = checkpointEvery; self.name = name
        }

        var config: FineTuneConfig {
            FineTuneConfig(epochs: epochs, steps: steps, batchSize: batchSize, lr: lr, weightDecay: wd,
                           momentum: momentum, imageSize: imageSize, seed: UInt64(seed), search: search,
                           checkpointEvery: checkpointEvery)
        }
    }

    static let holdoutRule = "every 10th image of --data (positions 9, 19, 29, ...) is validation, the rest trains"

    func run() throws {
        let zoo = try zooOptions.open(create: true)
        defer { try? zoo.close() }
        let run: Run
        let options: Options
        if let resume {
            let given: [(String, Bool)] = [("REF", ref != nil), ("--random-init", randomInit), ("--arch", arch != nil),
                                           ("--width", width != nil), ("--stem", stem != nil), ("--data", data != nil),
                                           ("--val", val != nil), ("--epochs", epochs != nil), ("--steps", steps != nil),
                                           ("--batch-size", batchSize != nil), ("--lr", lr != nil), ("--wd", wd != nil),
                                           ("--search", search != nil), ("--image-size", imageSize != nil), ("--seed", seed != nil),
                                           ("--checkpoint-every", checkpointEvery != nil), ("--name", name != nil)]
            let extra = given.filter(\.1).map(\.0)
            guard extra.isEmpty else {
                throw CheckpointError.invalid("--resume takes no other options (the run's config has them): remove \(extra.joined(separator: ", "))")
            }
            run = try Run.open(zoo: zoo, id: resume, expectedKind: "finetune")
            guard run.kind == "finetune" else { throw CheckpointError.invalid("run \(run.id) is a \(run.kind) run, not finetune") }
            options = try Options(json: run.config)
            try Self.checkDataUnchanged(options, run: run)
        } else {
            options = try resolveOptions(zoo: zoo)
            let probe = try Self.datasets(options, directory: nil)
            let steps = FineTuner.stepsPerTrial(options.config, trainCount: probe.trainCount) * max(options.search, 1)
            run = try Run.create(zoo: zoo, kind: "finetune", config: try options.json, commandLine: CommandLine.arguments, totalSteps: steps)
            FileHandle.standardError.write(Data("run \(run.id) (\(run.directory.path))\n".utf8))
        }
        do {
            try execute(run: run, options: options, zoo: zoo)
        } catch {
            run.fail(error)
            throw error
        }
    }

    /// Defaults filled in, checked; the data is opened to scale the defaults to it.
    func resolveOptions(zoo: Zoo) throws -> Options {
        guard let data else { throw CheckpointError.invalid("--data URI is required") }
        if randomInit {
            guard ref == nil else { throw CheckpointError.invalid("give either REF or --random-init, not both") }
        } else {
            guard ref != nil else { throw CheckpointError.invalid("give the entry to fine-tune (REF), or --random-init --arch ... for a random start") }
            let used = [("--arch", arch != nil), ("--width", width != nil), ("--stem", stem != nil)].filter(\.1).map(\.0)
            guard used.isEmpty else {
                throw CheckpointError.invalid("\(used.joined(separator: ", ")) \(used.count == 1 ? "applies" : "apply") only with --random-init (REF has its own architecture)")
            }
        }
        if epochs != nil && steps != nil { throw CheckpointError.invalid("give --steps or --epochs, not both") }
        let refId = try ref.map { try zoo.resolve($0) }
        let dataset = try DownstreamData.open(data, role: "--data")
        let trainCount = val == nil ? dataset.count - dataset.count / 10 : dataset.count
        if val == nil && dataset.count / 10 < 1 {
            throw CheckpointError.invalid("--data has \(dataset.count) images: too few to hold out every 10th for validation; pass --val")
        }
        // Default image side: the entry's own (the size it was trained at), else the data's.
        let recorded = try refId.flatMap { DownstreamData.recordedImageSize(try zoo.checkpoint($0).provenance) }
        let size = try DownstreamData.imageSize(imageSize ?? recorded, data: dataset)
        let options = Options(ref: refId, randomInit: randomInit,
                              arch: randomInit ? (arch ?? "resnet18") : nil, width: randomInit ? (width ?? 64) : nil,
                              stem: randomInit ? (stem ?? "small") : nil,
                              // absolute paths: the run resumes from any directory, provenance names the files
                              data: dataset.uri.description, val: try val.map { try DatasetURI(parsing: $0).description },
                              holdout: val == nil ? Self.holdoutRule : nil,
                              epochs: epochs ?? 10, steps: steps,
                              batchSize: batchSize ?? FineTuneConfig.defaultBatchSize(trainCount: trainCount),
                              lr: lr ?? 0.1, wd: wd ?? 1e-3, momentum: 0.9, search: search ?? 0, imageSize: size,
                              seed: seed ?? 0, checkpointEvery: checkpointEvery, name: name)
        guard options.epochs >= 1 else { throw CheckpointError.invalid("--epochs must be at least 1, got \(options.epochs)") }
        if let s = options.steps, s < 1 { throw CheckpointError.invalid("--steps must be at least 1, got \(s)") }
        guard options.batchSize >= 2 else {
            throw CheckpointError.invalid("--batch-size must be at least 2 (train-mode BatchNorm needs 2 samples), got \(options.batchSize)")
        }
        guard options.batchSize <= trainCount else {
            throw CheckpointError.invalid("--batch-size \(options.batchSize) is larger than the \(trainCount) training images")
        }
        guard options.lr > 0, options.lr.isFinite else { throw CheckpointError.invalid("--lr must be a positive finite number, got \(options.lr)") }
        guard options.wd >= 0, options.wd.isFinite else { throw CheckpointError.invalid("--wd must be a finite number, 0 or more, got \(options.wd)") }
        guard options.search >= 0 else { throw CheckpointError.invalid("--search must be 0 or more, got \(options.search)") }
        guard options.seed >= 0 else { throw CheckpointError.invalid("--seed must not be negative, got \(options.seed)") }
        if let c = options.checkpointEvery, c < 1 { throw CheckpointError.invalid("--checkpoint-every must be at least 1, got \(c)") }
        if randomInit { _ = try FineTuneStart.architecture(arch: options.arch!, width: options.width!, stem: options.stem!) }
        return options
    }

    /// Training and validation data: `--val`, or the hold-out of `--data` through split files in
    /// the run directory (`holdout-train.txt`, `holdout-val.txt`; rewritten identically on resume).
    /// With `directory` nil only the training count is computed.
    static func datasets(_ o: Options, directory: URL?) throws -> (train: ImageDataset?, val: ImageDataset?, trainURI: String, valURI: String, trainCount: Int) {
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
            let text = "# bissl finetune hold-out of \(o.data): \(holdoutRule)\n" + indices.map(String.init).joined(separator: "\n") + "\n"
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

    /// A resumed run must see the data it started with (its first steps used it): refuses, without
    /// touching the run, when a recorded fingerprint differs from the data's today.
    static func checkDataUnchanged(_ o: Options, run: Run) throws {
        guard let recorded = try? JSONDecoder().decode([String: String].self, from: Data(contentsOf: fingerprintsURL(run))) else { return }
        let d = try datasets(o, directory: run.directory)
        for (role, data) in [("--data", d.train), ("--val", d.val)] {
            guard let data, let then = recorded[role] else { continue }
            let now = try data.fingerprint()
            guard now == then else {
                throw CheckpointError.invalid("the data of \(role) changed since run \(run.id) started (fingerprint \(then.prefix(19)) then, \(now.prefix(19)) now); restore it to resume")
            }
        }
    }

    func execute(run: Run, options o: Options, zoo: Zoo) throws {
        let d = try Self.datasets(o, directory: run.directory)
        guard let train = d.train, let val = d.val else { throw CheckpointError.invalid("no data") }
        if !FileManager.default.fileExists(atPath: Self.fingerprintsURL(run).path) {
            let fingerprints = ["--data": try train.fingerprint(), "--val": try val.fingerprint()]
            try AtomicFile.write(try JSONEncoder().encode(fingerprints), to: Self.fingerprintsURL(run))
        }
        let say = { (s: String) in FileHandle.standardError.write(Data("\(s)\n".utf8)) }
        if o.val == nil {
            say("no --val: holding out every 10th image of --data for validation (\(val.count) images; \(train.count) train)")
        }
        let classes = max(train.classNames.count, val.classNames.count)
        let start: FineTuneStart
        if o.randomInit {
            let a = try FineTuneStart.architecture(arch: o.arch ?? "resnet18", width: o.width ?? 64, stem: o.stem ?? "small")
            start = try FineTuneStart(randomArchitecture: a, classes: classes, seed: UInt64(o.seed))
        } else {
            guard let ref = o.ref else { throw CheckpointError.invalid("the run's config has no entry") }
            let checkpoint = try zoo.checkpoint(ref)
            start = FineTuneStart(entry: try Network(checkpoint: checkpoint), entryId: ref, entryStage: checkpoint.provenance.stage,
                                  classes: classes, seed: UInt64(o.seed))
        }
        if let w = start.warning { say("warning: \(w)") }
        let tuner = try FineTuner(config: o.config, start: start.network, train: train, val: val, run: run)
        say("fine-tuning \(start.network.architecture.label) (\(start.note)): \(train.count) train / \(val.count) val images, " +
            "\(classes) classes, \(o.imageSize)x\(o.imageSize), batch \(o.batchSize), \(tuner.stepsPerTrial) steps" +
            (o.search > 0 ? " x \(o.search) trials" : ", lr \(o.lr), wd \(o.wd)"))
        guard let outcome = try tuner.runAll() else {
            say("stopped; resume with: bissl finetune --resume \(run.id)")
            return
        }
        let datasets = [Provenance.Dataset(role: "downstream-train", uri: d.trainURI, fingerprint: try train.fingerprint()),
                        Provenance.Dataset(role: "downstream-val", uri: d.valURI, fingerprint: try val.fingerprint())]
        var provenance = tuner.provenance(outcome: outcome, start: start, parentId: o.ref, datasets: datasets)
        // hyperparameters = the run config; a run started before camelCase keys still records camelCase
        provenance.hyperparameters = RecordedSettings.camelCased(provenance.hyperparameters)
        let result = try run.finish(outcome.network.checkpoint(provenance: provenance), name: o.name)
        let chosen = outcome.trials[outcome.chosen]
        if o.search > 0 {
            print(ZooOutput.table(["TRIAL", "LR", "WD", "VAL TOP-1", "BEST", "EPOCH"], outcome.trials.map { t in
                ["\(t.index)\(t.index == outcome.chosen ? "*" : "")", String(format: "%.6g", t.lr), String(format: "%.6g", t.weightDecay),
                 String(format: "%.2f", t.top1 ?? 0), String(format: "%.2f", t.bestTop1), "\(t.bestEpoch)"]
            }))
        }
        print(String(format: "finetune entry %@%@: val top-1 %.2f %% (best %.2f %% after epoch %d), run %@",
                     String(result.id.prefix(12)), result.name.map { " (\($0))" } ?? "", chosen.top1 ?? 0, chosen.bestTop1, chosen.bestEpoch, run.id))
    }
}
