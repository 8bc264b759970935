import ArgumentParser
import Checkpoint
import Foundation
import Training
import Zoo

/// `bissl eval REF --data URI [--image-size S] [--json]`: top-1, top-5, mean per-class accuracy and
/// the confusion matrix of an entry's backbone + classifier on labelled data.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Top-1, top-5, mean per-class accuracy and confusion matrix of an entry with a classifier.",
        discussion: """
            The network runs in eval mode (BN running statistics) on the downstream test transform \
            (shorter side to int(S*256/224), centre crop S, ImageNet normalisation). Top-k counts an \
            image when its class is among the k largest logits (equal logits: the lower class first). \
            Multi-label data (VOC07-style 11-point mAP, implemented in the library as \
            ClassificationMetrics.meanAveragePrecision11) is not yet readable: every dataset reader \
            gives one label per image, so eval reports single-label metrics only.
            """)

    @Argument(help: "Entry with a classifier component: id, unique id prefix, name or tag.")
    var ref: String

    @Option(help: ArgumentHelp("Evaluation data (dataset URI, e.g. idx:/usr/share/datasets/fashion-mnist#test).", valueName: "URI"))
    var data: String

    @Option(name: .customLong("image-size"), parsing: .unconditional, help: ArgumentHelp("Image side S (default: the entry's fine-tuning image size, else the data's own).", valueName: "S"))
    var imageSize: Int?

    @Flag(help: "Print the result (with the confusion matrix) as JSON.")
    var json = false

    @OptionGroup var zooOptions: ZooOptions

    struct Report: Encodable {
        var entry: String
        var data: String
        var imageSize: Int
        var classNames: [String]
        var metrics: EvaluationReport
    }

    func run() throws {
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        let id = try zoo.resolve(ref)
        let checkpoint = try zoo.checkpoint(id)
        let network = try Network(checkpoint: checkpoint)
        guard let classifier = network.heads["classifier"] else {
            throw CLIError("entry \(id.prefix(12)) has no classifier component; fine-tune it first (bissl finetune) or use bissl probe")
        }
        let dataset = try DownstreamData.open(data, role: "--data")
        // The size the entry was fine-tuned at, when its provenance says so.
        var size = imageSize
        if size == nil { size = DownstreamData.recordedImageSize(checkpoint.provenance) }
        let side = try DownstreamData.imageSize(size, data: dataset)
        let classes = classifier.record.outputs
        guard dataset.classNames.count == classes else {
            throw CLIError("--data has \(dataset.classNames.count) classes but the classifier of \(id.prefix(12)) has \(classes) outputs: evaluate it on its own task, or fine-tune it to this one (bissl finetune)")
        }
        let features = try FrozenFeatures.extract(backbone: network.backbone, dataset: dataset, imageSize: side)
        let logits = classifier.forward(features.features, mode: .eval)
        let report = EvaluationReport(scores: logits, labels: features.labels)
        var names = dataset.classNames
        while names.count < classes { names.append("class\(names.count)") }
        if json {
            try ZooOutput.printJSON(Report(entry: id, data: data, imageSize: side, classNames: names, metrics: report))
            return
        }
        print("entry \(id.prefix(12)) on \(data): \(report.count) images, \(classes) classes, \(side)x\(side)")
        print(String(format: "top-1                    %.2f %%", report.top1))
        print(String(format: "top-5                    %.2f %%", report.top5))
        print(String(format: "mean per-class accuracy  %.2f %%", report.meanPerClassAccuracy))
        print("confusion matrix (rows: true class, columns: predicted class)")
        let header = ["true\\pred"] + (0..<classes).map(String.init)
        // Row label: the index, plus the class name when it says more than the index.
        let rows = report.confusion.enumerated().map { t, row in [names[t] == "\(t)" ? "\(t)" : "\(t) \(names[t])"] + row.map(String.init) }
        print(ZooOutput.table(header, rows))
    }
}
