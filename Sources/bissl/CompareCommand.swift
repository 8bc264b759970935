import ArgumentParser
import Foundation
import Training
import Zoo

/// `bissl compare A B [C ...] --data URI [--json]`: paired comparison of entries with classifiers on
/// the same images (`PairedComparison`, docs/bissl.md, "Comparing entries").
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Say whether entries with classifiers differ in top-1 on the same images (paired tests).",
        discussion: """
            Every entry is evaluated as `bissl eval` does (eval mode, downstream test transform, each at its \
            fine-tuning image size unless --image-size). For each pair: top-1 of both, the difference, the \
            exact McNemar test (two-sided binomial test on the images only one of the two gets right) and a \
            paired percentile-bootstrap 95% interval of the difference (10,000 resamples of the images, \
            --seed). With more than two entries every pair is compared and the p-values are Holm-adjusted. \
            The verdict reads "better" only when the (adjusted) p-value is at most 5%.
            """)

    @Argument(help: "Two or more entries with a classifier component (id, unique id prefix, name or tag).")
    var refs: [String] = []

    @OptionGroup var evaluation: EvaluationOptions

    @OptionGroup var zooOptions: ZooOptions

    struct Entry: Encodable {
        var entry: String, name: String?, imageSize: Int
        var top1: Double, top1Lower: Double, top1Upper: Double
    }
    struct Pair: Encodable {
        var a: String, b: String
        var comparison: PairedComparison
        var verdict: String
    }
    struct Report: Encodable {
        var data: String, images: Int, alpha: Double, correction: String
        var entries: [Entry]
        var pairs: [Pair]
    }

    func validate() throws {
        guard refs.count >= 2 else { throw ValidationError("give at least two entries to compare, got \(refs.count)") }
    }

    func run() throws {
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        let dataset = try DownstreamData.open(evaluation.data, role: "--data")
        var scored: [EntryScores] = []
        for ref in refs {
            let s = try EntryScores(zoo: zoo, ref: ref, dataset: dataset, imageSize: evaluation.imageSize)
            if let same = scored.first(where: { $0.id == s.id }) {
                throw CLIError("'\(ref)' is the same entry as an earlier argument (\(same.id.prefix(12))); compare different entries")
            }
            scored.append(s)
        }
        let correct = scored.map(\.correct)
        let labels = scored.map { ZooOutput.label($0.id, $0.name) }
        var pairs: [Pair] = []
        for i in scored.indices { for j in scored.indices where j > i {
            pairs.append(Pair(a: scored[i].id, b: scored[j].id,
                              comparison: PairedComparison(correctA: correct[i], correctB: correct[j], seed: evaluation.seed ?? 0), verdict: ""))
        } }
        let adjusted = PairedTests.holm(pairs.map(\.comparison.mcnemarP))
        for k in pairs.indices {
            pairs[k].comparison.holmP = adjusted[k]
            let i = scored.firstIndex { $0.id == pairs[k].a }!, j = scored.firstIndex { $0.id == pairs[k].b }!
            pairs[k].verdict = pairs[k].comparison.verdict(labels[i], labels[j])
        }
        let n = dataset.count
        let entries = scored.map { s -> Entry in
            let k = s.correct.filter { $0 }.count
            let w = AccuracyIntervals.wilson(successes: k, trials: s.labels.count)
            return Entry(entry: s.id, name: s.name, imageSize: s.imageSize, top1: 100 * Double(k) / Double(max(s.labels.count, 1)),
                         top1Lower: 100 * w.lower, top1Upper: 100 * w.upper)
        }
        let report = Report(data: evaluation.data, images: n, alpha: 0.05, correction: pairs.count > 1 ? "holm" : "none",
                            entries: entries, pairs: pairs)
        if evaluation.json {
            try ZooOutput.printJSON(report)
            return
        }
        ZooOutput.printLine("compare on \(evaluation.data): \(n) images, \(scored[0].classNames.count) classes")
        print(ZooOutput.table(["entry", "size", "top-1 %", "95% CI (Wilson)"], zip(labels, entries).map { label, e in
            [label, "\(e.imageSize)", String(format: "%.2f", e.top1), String(format: "%.2f-%.2f", e.top1Lower, e.top1Upper)]
        }))
        let header = ["A", "B", "A-B points", "95% CI (bootstrap)", "only A right", "only B right", "McNemar p"]
            + (pairs.count > 1 ? ["Holm p"] : [])
        print(ZooOutput.table(header, pairs.map { p in
            let c = p.comparison
            func short(_ id: String) -> String { scored.first { $0.id == id }?.name ?? String(id.prefix(12)) }
            return [short(p.a), short(p.b), String(format: "%+.2f", c.difference),
                    String(format: "[%+.2f, %+.2f]", c.differenceLower, c.differenceUpper), "\(c.onlyARight)", "\(c.onlyBRight)",
                    String(format: "%.3g", c.mcnemarP)] + (pairs.count > 1 ? [String(format: "%.3g", c.holmP)] : [])
        }))
        for p in pairs { ZooOutput.printLine("verdict: " + p.verdict) }
    }
}
