import ArgumentParser
import Checkpoint
import Foundation
import Training
import Zoo

/// `bissl probe REF --data URI [--eval-data URI] [--knn K] [--image-size S] [--json]`: linear-probe
/// and k-NN top-1 of an entry's frozen backbone. The backbone only runs in eval
/// mode: the entry (immutable in the zoo anyway) and its BN running statistics are unchanged.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Linear-probe and k-NN top-1 of an entry's frozen backbone.",
        discussion: """
            Features: the backbone in eval mode (BN running statistics used, never updated) on the \
            downstream test transform (shorter side to int(S*256/224), centre crop S, ImageNet \
            normalisation). k-NN: cosine similarity of L2-normalised features, the K nearest vote with \
            weight exp(similarity/0.07) (InstDisc/DINO). Linear probe: features standardised with the \
            training mean/std, softmax regression by SGD (momentum 0.9, lr 0.1 cosine to 0.0001, wd 1e-4, \
            batch 256, --probe-epochs passes, seeded). Both train on --data and report top-1 on \
            --eval-data (default: the test part of --data). --recalibrate-bn first recomputes every BN \
            running statistic on the --data images (test transform, batches of 128, one train-mode pass \
            with the cumulative average of torch's momentum=None), so probes of different entries compare \
            features rather than statistics left over from their training.
            """)

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String

    @Option(help: ArgumentHelp("Training data (dataset URI, e.g. idx:/usr/share/datasets/fashion-mnist).", valueName: "URI"))
    var data: String

    @Option(name: .customLong("eval-data"), help: ArgumentHelp("Evaluation data (default: --data with #test).", valueName: "URI"))
    var evalData: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Neighbours of the k-NN vote.", valueName: "K"))
    var knn = 20

    @Option(name: .customLong("image-size"), parsing: .unconditional, help: ArgumentHelp("Image side S (default: the entry's imageSize hyperparameter, else the data's own: its first image's shorter side).", valueName: "S"))
    var imageSize: Int?

    @Option(name: .customLong("probe-epochs"), parsing: .unconditional, help: ArgumentHelp("Passes of the linear probe's SGD over the training features.", valueName: "E"))
    var probeEpochs = 100

    @Option(parsing: .unconditional, help: "Seed of the linear probe (initialisation and batch order).", transform: SeedArgument.parse)
    var seed: UInt64 = 0

    @Flag(name: .customLong("recalibrate-bn"), help: "Recompute the BN running statistics on the --data images before extracting features.")
    var recalibrateBN = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    @OptionGroup var zooOptions: ZooOptions

    struct Report: Encodable {
        var entry: String
        var data: String
        var evalData: String
        var result: ProbeResult
    }

    func validate() throws {
        guard probeEpochs >= 1 else { throw CLIError("--probe-epochs must be at least 1, got \(probeEpochs)") }
        guard knn >= 1 else { throw CLIError("--knn must be at least 1, got \(knn)") }
    }

    func run() throws {
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        let id = try zoo.resolve(ref)
        let checkpoint = try zoo.checkpoint(id)
        let network = try Network(checkpoint: checkpoint, heads: [])   // the backbone alone
        let train = try DownstreamData.open(data, role: "--data")
        let (eval, evalURI) = try DownstreamData.openEvaluation(evalData, trainURI: data, flag: "--eval-data")
        // The size the entry was trained at, when its provenance says so; else the data's own.
        var given = imageSize
        if given == nil { given = DownstreamData.recordedImageSize(checkpoint.provenance) }
        let size = try DownstreamData.imageSize(given, data: train)
        guard knn >= 1 && knn <= train.count else {
            throw CLIError("--knn must be between 1 and the \(train.count) training images, got \(knn)")
        }
        let quiet = json
        let result = try Probe.run(backbone: network.backbone, train: train, eval: eval, imageSize: size, k: knn,
                                   config: LinearProbe.Config(epochs: probeEpochs, seed: seed), recalibrateBN: recalibrateBN) { message in
            if !quiet { printStandardError(message) }
        }
        if json {
            try ZooOutput.printJSON(Report(entry: id, data: data, evalData: evalURI, result: result))
        } else {
            ZooOutput.printLine("entry \(id.prefix(12)): \(network.architecture.label), \(result.featureCount) features at \(size)x\(size)")
            ZooOutput.printLine("train \(data) (\(result.trainCount) images) -> eval \(evalURI) (\(result.evalCount) images)")
            if let batches = result.recalibratedBatchNormBatches {
                ZooOutput.printLine("BN running statistics recomputed on the training images (\(batches) batches)")
            }
            print(String(format: "linear probe top-1  %.2f %%", result.linearTop1))
            print(String(format: "k-NN (k=%d) top-1   %.2f %%", result.k, result.knnTop1))
        }
    }
}
