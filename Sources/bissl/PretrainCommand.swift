import ArgumentParser
import Checkpoint
import Foundation
import Training
import Zoo

/// `bissl pretrain --method simclr|byol --data URI [...]`: SSL pretraining on a run directory, ending as a
/// `pretext` zoo entry (backbone, projector, and predictor for BYOL). Defaults: `PretrainConfig` (method
/// brief 4.1 scaled to the data; docs/pretraining.md). `--resume RUN` continues an interrupted run from
/// its last saved state with the settings it started with.
struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "SSL-pretrain a ResNet (SimCLR or BYOL) into a new pretext zoo entry.",
        discussion: """
            Defaults follow the BiSSL brief (4.1) scaled to the data: LARS lr 4.8 (no batch scaling), wd 1e-6, \
            momentum 0.9, eta 0.001; warmup 10 epochs (or 10% of the steps when shorter), cosine to 0.001*lr; \
            as in R5, step 1 runs at the full lr before the warmup starts at lr/W (W warmup steps), so the log reads \
            lr 4.8, 2.4, 4.8 for steps 1-3 when W = 2; \
            temperature 0.5; EMA 0.9995; batch min(256, images/2); 10 epochs; image size 96, or the image side \
            rounded up to a multiple of 8 for smaller images; small stem below 64 px. The run lives in \
            <zoo>/runs/ and is resumable with --resume RUN; only a completed run adds an entry.
            """)

    @Option(help: ArgumentHelp("Pretext method: simclr or byol.", valueName: "METHOD"))
    var method: String?
    @Option(help: ArgumentHelp("Pretext images (idx:DIR, cifar:DIR, folder:DIR, h5:FILE, with #test, #split=FILE).", valueName: "URI"))
    var data: String?
    @Option(help: ArgumentHelp("Backbone: resnet18, resnet34, resnet50 (default), resnet101, resnet152.", valueName: "ARCH"))
    var arch: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Stem width (64 in torchvision).", valueName: "W"))
    var width: Int?
    @Option(help: ArgumentHelp("imagenet (7x7/2 conv + max pool) or small (3x3/1 conv).", valueName: "STEM"))
    var stem: String?
    @Option(name: .customLong("image-size"), parsing: .unconditional, help: ArgumentHelp("Crop size of the views (pixels).", valueName: "S"))
    var imageSize: Int?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per step (each gives two views).", valueName: "B"))
    var batchSize: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Optimiser steps.", valueName: "N"))
    var steps: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Epochs (steps = epochs x batches per epoch).", valueName: "E"))
    var epochs: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Base learning rate (LARS default 4.8, SGD 0.05); step 1 runs at the full LR, then step k = 2..W+1 at LR*(k-1)/W (W warmup steps), then cosine (R5's schedule).", valueName: "LR"))
    var lr: Float?
    @Option(parsing: .unconditional, help: ArgumentHelp("Weight decay (default 1e-6).", valueName: "WD"))
    var wd: Float?
    @Option(help: ArgumentHelp("lars (default) or sgd.", valueName: "OPT"))
    var optimizer: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("NT-Xent temperature (SimCLR, default 0.5).", valueName: "T"))
    var temperature: Float?
    @Option(name: .customLong("ema-decay"), parsing: .unconditional, help: ArgumentHelp("BYOL target EMA decay (default 0.9995).", valueName: "D"))
    var emaDecay: Float?
    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of initialisation, data order and augmentations (default 0).", valueName: "N"))
    var seed: UInt64?
    @Option(help: ArgumentHelp("Continue from this entry (its architecture and weights).", valueName: "REF"))
    var from: String?
    @Option(help: ArgumentHelp("Name for the new entry.", valueName: "NAME"))
    var name: String?
    @Option(help: ArgumentHelp("Resume this interrupted run (id, unique prefix or directory); no other options.", valueName: "RUN"))
    var resume: String?
    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: ArgumentHelp("Save the run state every N steps (default: about every 2 minutes, and every epoch).", valueName: "N"))
    var checkpointEvery: Int?
    @Flag(help: "Print the result as JSON.")
    var json = false
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let commandLine = CommandLine.arguments
        let result: (Run, ImportResult)
        if let resume {
            let given: [(String, Bool)] = [("--method", method != nil), ("--data", data != nil), ("--arch", arch != nil),
                                           ("--width", width != nil), ("--stem", stem != nil), ("--image-size", imageSize != nil),
                                           ("--batch-size", batchSize != nil), ("--steps", steps != nil), ("--epochs", epochs != nil),
                                           ("--lr", lr != nil), ("--wd", wd != nil), ("--optimizer", optimizer != nil),
                                           ("--temperature", temperature != nil), ("--ema-decay", emaDecay != nil), ("--seed", seed != nil),
                                           ("--from", from != nil), ("--name", name != nil), ("--checkpoint-every", checkpointEvery != nil)]
            if let extra = given.first(where: { $0.1 }) {
                throw CheckpointError.invalid("--resume continues a run with the settings it started with; \(extra.0) cannot be given")
            }
            let zoo = try zooOptions.open()
            defer { try? zoo.close() }
            result = try Pretraining.resume(zoo: zoo, id: resume, commandLine: commandLine)
        } else {
            guard let method else { throw CheckpointError.invalid("pretrain needs --method simclr|byol (or --resume RUN)") }
            guard let m = PretextObjective.Method(rawValue: method.lowercased()) else {
                throw CheckpointError.invalid("unknown --method '\(method)' (simclr, byol)")
            }
            guard let data else { throw CheckpointError.invalid("pretrain needs --data URI") }
            var o = PretrainOptions(method: m, data: data)
            o.arch = arch; o.width = width; o.stem = stem; o.imageSize = imageSize; o.batchSize = batchSize
            o.steps = steps; o.epochs = epochs; o.lr = lr; o.weightDecay = wd; o.optimizer = optimizer?.lowercased()
            o.temperature = temperature; o.emaDecay = emaDecay; o.seed = seed; o.from = from; o.name = name
            o.checkpointEvery = checkpointEvery
            let zoo = try zooOptions.open(create: true)
            defer { try? zoo.close() }
            result = try Pretraining.start(zoo: zoo, options: o, commandLine: commandLine)
        }
        let (run, imported) = result
        if json {
            struct Output: Encodable { var entry: String; var run: String; var runDirectory: String; var name: String? }
            try ZooOutput.printJSON(Output(entry: imported.id, run: run.id, runDirectory: run.directory.path, name: name))
        } else {
            print("pretext entry \(imported.id.prefix(12)) from run \(run.id)")
        }
    }
}
