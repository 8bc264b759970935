import ArgumentParser
import Training

/// `bissl pretrain --method simclr|byol --data URI [...]`: SSL pretraining (`PretrainJob`) ending as a
/// `pretext` zoo entry (backbone, projector, and the method's heads). Defaults: `PretrainConfig`
/// (docs/pretraining.md).
struct PretrainCommand: TrainingCommand {
    typealias Job = PretrainJob
    static let configuration = CommandConfiguration(
        commandName: "pretrain",
        abstract: "SSL-pretrain a ResNet (SimCLR or BYOL) into a new pretext zoo entry.",
        discussion: """
            Defaults (docs/pretraining.md) scaled to the data: LARS lr 4.8 (no batch scaling), wd 1e-6, \
            momentum 0.9, eta 0.001; warmup 10 epochs (or 10% of the steps when shorter), cosine to 0.001*lr; \
            step 1 runs at the full lr before the warmup starts at lr/W (W warmup steps), so the log reads \
            lr 4.8, 2.4, 4.8 for steps 1-3 when W = 2; \
            temperature 0.5; EMA 0.9995; batch min(256, images/2); 10 epochs; image size 96, or the image side \
            rounded up to a multiple of 8 for smaller images; small stem below 64 px. The run lives in \
            <zoo>/runs/ and is resumable with --resume RUN; only a completed run adds an entry.
            """)

    @Option(help: ArgumentHelp("Pretext method: \(PretextMethods.names).", valueName: "METHOD"))
    var method: PretextObjective.Method?
    @Option(help: ArgumentHelp("Pretext images (idx:DIR, cifar:DIR, folder:DIR, h5:FILE, with #test, #split=FILE).", valueName: "URI"))
    var data: String?
    @OptionGroup var architecture: ArchitectureOptions
    @Option(name: .customLong("image-size"), parsing: .unconditional, help: ArgumentHelp("Crop size of the views (pixels).", valueName: "S"))
    var imageSize: Int?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per step (each gives two views).", valueName: "B"))
    var batchSize: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Optimiser steps.", valueName: "N"))
    var steps: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Epochs (steps = epochs x batches per epoch).", valueName: "E"))
    var epochs: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Base learning rate (LARS default 4.8, SGD 0.05); step 1 runs at the full LR, then step k = 2..W+1 at LR*(k-1)/W (W warmup steps), then cosine.", valueName: "LR"))
    var lr: Float?
    @Option(parsing: .unconditional, help: ArgumentHelp("Weight decay (default 1e-6).", valueName: "WD"))
    var wd: Float?
    @Option(help: ArgumentHelp("lars (default) or sgd.", valueName: "OPT"))
    var optimizer: Optimizer?
    @Option(parsing: .unconditional, help: ArgumentHelp("NT-Xent temperature (SimCLR, default 0.5).", valueName: "T"))
    var temperature: Float?
    @Option(name: .customLong("ema-decay"), parsing: .unconditional, help: ArgumentHelp("BYOL target EMA decay (default 0.9995).", valueName: "D"))
    var emaDecay: Float?
    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of initialisation, data order and augmentations (default 0).", valueName: "N"), transform: SeedArgument.parse)
    var seed: UInt64?
    @Option(help: ArgumentHelp("Continue from this entry (its architecture and weights).", valueName: "REF"))
    var from: String?
    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: ArgumentHelp("Save the run state every N steps (default: about every 2 minutes, and every epoch).", valueName: "N"))
    var checkpointEvery: Int?
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var zooOptions: ZooOptions

    enum Optimizer: String, CaseIterable, ExpressibleByArgument { case lars, sgd }

    var jobOptions: PretrainOptions {
        var o = PretrainOptions(method: method, data: data)
        o.arch = architecture.arch; o.width = architecture.width; o.stem = architecture.stem?.rawValue
        o.imageSize = imageSize; o.batchSize = batchSize; o.steps = steps; o.epochs = epochs; o.lr = lr; o.weightDecay = wd
        o.optimizer = optimizer?.rawValue; o.temperature = temperature; o.emaDecay = emaDecay; o.seed = seed; o.from = from
        o.name = runOptions.name; o.syncBn = runOptions.syncBN; o.checkpointEvery = checkpointEvery
        return o
    }

    func report(_ r: JobResult) throws {
        struct Output: Encodable { var entry: String; var run: String; var runDirectory: String; var name: String? }
        try printResult(json: runOptions.json, Output(entry: r.entry.id, run: r.run.id, runDirectory: r.run.directory.path, name: r.entry.name),
                        "pretext entry \(r.entry.id.prefix(12)) from run \(r.run.id)")
    }
}
