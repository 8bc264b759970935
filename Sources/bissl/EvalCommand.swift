import ArgumentParser
import Checkpoint
import Foundation
import Training
import Zoo

/// `bissl eval REF --data URI [--image-size S] [--json]`: top-1, top-5, mean per-class accuracy and
/// the confusion matrix of an entry (95% intervals: `AccuracyIntervals`)'s backbone + classifier on labelled data.
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
            gives one label per image, so eval reports single-label metrics only. \
            95% intervals: Wilson score interval for top-1; percentile bootstrap (10,000 resamples within \
            each class, --seed) for the mean per-class accuracy (docs/bissl.md, "Metrics").
            """)

    @Argument(help: "Entry with a classifier component: id, unique id prefix, name or tag.")
    var ref: String

    @OptionGroup var evaluation: EvaluationOptions

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
        // Before the data is opened: an entry that cannot be evaluated is said first.
        if let id = try? zoo.resolve(ref), let record = try? zoo.record(id), let provenance = record.summary.provenance {
            try EntryScores.refuseLowerAlignment(provenance, id: id)
        }
        let dataset = try DownstreamData.open(evaluation.data, role: "--data")
        let scores = try EntryScores(zoo: zoo, ref: ref, dataset: dataset, imageSize: evaluation.imageSize)
        let id = scores.id, side = scores.imageSize, names = scores.classNames, classes = names.count
        let report = EvaluationReport(scores: scores.logits, labels: scores.labels, seed: evaluation.seed ?? 0)
        if evaluation.json {
            try ZooOutput.printJSON(Report(entry: id, data: evaluation.data, imageSize: side, classNames: names, metrics: report))
            return
        }
        ZooOutput.printLine("entry \(id.prefix(12)) on \(evaluation.data): \(report.count) images, \(classes) classes, \(side)x\(side)")
        print(String(format: "top-1                    %.2f %%  (95%% CI %.2f-%.2f, Wilson)", report.top1, report.top1Lower, report.top1Upper))
        print(String(format: "top-5                    %.2f %%", report.top5))
        print(String(format: "mean per-class accuracy  %.2f %%  (95%% CI %.2f-%.2f, bootstrap, %ld resamples, seed ",
                     report.meanPerClassAccuracy, report.meanPerClassLower, report.meanPerClassUpper,
                     report.bootstrapResamples) + "\(report.bootstrapSeed))")
        ZooOutput.printLine("confusion matrix (rows: true class, columns: predicted class)")
        let header = ["true\\pred"] + (0..<classes).map(String.init)
        // Row label: the index, plus the class name when it says more than the index.
        let rows = report.confusion.enumerated().map { t, row in [names[t] == "\(t)" ? "\(t)" : "\(t) \(names[t])"] + row.map(String.init) }
        print(ZooOutput.table(header, rows))
    }
}
