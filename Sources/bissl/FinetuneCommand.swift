import ArgumentParser
import Foundation
import Training

/// `bissl finetune REF --data URI ...` / `bissl finetune --random-init --arch resnet18 ... --data URI`:
/// full fine-tuning (`FineTuneJob`, docs/finetuning.md); the result is a `finetune` zoo entry with
/// components backbone + classifier.
struct FinetuneCommand: TrainingCommand {
    typealias Job = FineTuneJob
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune an entry (or a random-initialised ResNet) on labelled data; adds a finetune entry.",
        discussion: """
            Every parameter is trained: SGD momentum 0.9, weight decay on all parameters, cosine from \
            --lr to 0.001*lr per step without warmup, cross-entropy, downstream train transform \
            (--augment, by default RandomResizedCrop ratio (0.5, 1) at --image-size, horizontal flip; ImageNet normalisation). \
            Validation top-1 after every epoch on --val (eval mode, test transform); without --val every \
            10th image of --data (positions 9, 19, 29, ...) is held out for validation and the rest trains. \
            The entry's classifier is kept when its class count matches the data; otherwise (or when it \
            has none) a new Linear(F, C) with PyTorch's default init is used, and the lineage says \
            "classifier re-initialised A -> B". --random-init starts from torchvision's init instead of \
            an entry (the from-scratch baseline; --arch default resnet18, --width 64, --stem small). \
            --search N runs N trials with lr log-uniform in \
            [1e-4, 1] and wd log-uniform in [1e-5, 1e-2] (seeded), each with the full budget, and \
            keeps the trial with the best validation top-1. --keep best delivers each trial's weights \
            after its best validation epoch instead of its last step (model selection on --val). State is saved at every epoch end and \
            about every 2 minutes; --resume RUN continues an interrupted run bit-exactly.
            """)

    @Argument(help: "Entry to fine-tune: id, unique id prefix, name or tag (omit with --random-init or --resume).")
    var ref: String?
    @Flag(name: .customLong("random-init"), help: "Start from a randomly initialised ResNet (--arch, --width, --stem) instead of an entry.")
    var randomInit = false
    @OptionGroup var architecture: ArchitectureOptions
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
    @Option(name: .customLong("image-size"), parsing: .unconditional, help: ArgumentHelp("Image side S of the transforms (default: the entry's, else the data's own: its first image's shorter side).", valueName: "S"))
    var imageSize: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of the classifier init (and backbone with --random-init), data order, augmentation and search (default 0).", valueName: "N"), transform: SeedArgument.parse)
    var seed: UInt64?
    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: ArgumentHelp("Save the run state every N steps (default: about every 2 minutes, and at every epoch end).", valueName: "N"))
    var checkpointEvery: Int?
    @Option(help: ArgumentHelp("Weights each trial delivers: last (after the last step, default) or best (after the epoch with the highest validation top-1).", valueName: "WHICH"))
    var keep: FineTuneKeep?
    @OptionGroup var augmentOption: AugmentOption
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var zooOptions: ZooOptions

    var jobOptions: FineTuneOptions {
        var o = FineTuneOptions()
        o.ref = ref; o.randomInit = randomInit
        o.arch = architecture.arch; o.width = architecture.width; o.stem = architecture.stem?.rawValue
        o.data = data; o.val = val; o.epochs = epochs; o.steps = steps; o.batchSize = batchSize; o.lr = lr; o.wd = wd
        o.search = search; o.imageSize = imageSize; o.seed = seed; o.checkpointEvery = checkpointEvery; o.name = runOptions.name; o.syncBn = runOptions.syncBN
        o.augment = augmentOption.augment; o.keep = keep
        return o
    }

    func report(_ r: JobResult) throws {
        let keptBest = r.provenance.hyperparameters["keep"] == .string(FineTuneKeep.best.rawValue)
        let h = r.provenance.hyperparameters
        guard case .array(let records)? = h["trials"], case .int(let chosenIndex)? = h["chosenTrial"] else { return }
        let trials = try records.map(FineTuneTrial.init(json:))
        let chosen = trials[Int(chosenIndex)]
        if runOptions.json {
            struct Output: Encodable { var entry: String; var run: String; var name: String?; var trials: [FineTuneTrial]; var chosen: Int }
            return try ZooOutput.printJSON(Output(entry: r.entry.id, run: r.run.id, name: r.entry.name, trials: trials, chosen: Int(chosenIndex)))
        }
        // A run counted in steps (--steps) says after which step the best validation came, not an epoch.
        let inSteps = h["steps"] != nil && h["steps"] != .null
        func position(_ t: FineTuneTrial) -> Int { inSteps ? t.bestStep ?? 0 : t.bestEpoch }
        let unit = inSteps ? "step" : "epoch"
        if case .int(let search)? = h["search"], search > 0 {
            print(ZooOutput.table(["TRIAL", "LR", "WD", "VAL TOP-1", "BEST", unit.uppercased()], trials.map { t in
                ["\(t.index)\(t.index == chosen.index ? "*" : "")", String(format: "%.6g", t.lr), String(format: "%.6g", t.weightDecay),
                 String(format: "%.2f", t.top1 ?? 0), String(format: "%.2f", t.bestTop1), "\(position(t))"]
            }))
        }
        ZooOutput.printLine(String(format: keptBest ? "finetune entry %@%@: val top-1 %.2f %% (kept the best validation: %.2f %% after %@ %d), run %@"
                                      : "finetune entry %@%@: val top-1 %.2f %% (best %.2f %% after %@ %d), run %@",
                     String(r.entry.id.prefix(12)), r.entry.name.map { " (\($0))" } ?? "", chosen.top1 ?? 0, chosen.bestTop1,
                     unit, position(chosen), r.run.id))
    }
}

extension FineTuneKeep: ExpressibleByArgument {}
