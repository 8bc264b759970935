import Engine
import Foundation

/// Classification metrics on logits (or any per-class scores), docs/bissl.md, "Metrics".
///
/// Ranking rule (ties): the rank of class `c` in a row is the number of classes with a strictly
/// larger score plus the number of classes with an equal score and a lower index. So the
/// prediction (rank 0) is the first maximum, as `argmax`, and `top-k` counts a row correct when the
/// true class has rank `< k` (timm's `accuracy` uses `torch.topk`, whose order among equal values
/// is unspecified; on continuous logits ties do not occur).
public enum ClassificationMetrics {
    /// Rank of `label` among the scores of row `r` (0 = the prediction).
    static func rank(_ scores: Matrix, row r: Int, label: Int) -> Int {
        let base = r * scores.cols
        let s = scores.data[base + label]
        var rank = 0
        for c in 0..<scores.cols {
            let v = scores.data[base + c]
            if v > s || (v == s && c < label) { rank += 1 }
        }
        return rank
    }

    /// The predicted class of each row: the first index of its largest score.
    public static func predictions(_ scores: Matrix) -> [Int] {
        (0..<scores.rows).map { r in
            let base = r * scores.cols
            var best = 0
            for c in 1..<max(scores.cols, 1) where scores.data[base + c] > scores.data[base + best] { best = c }
            return best
        }
    }

    /// Top-k accuracy in percent (timm `accuracy`): rows whose true class ranks in the first `k`.
    /// With `k >= classes` every row counts. Returns 0 for no rows.
    /// - Parameters: scores `[N, C]`, labels `N` values in `0..<C`, `k >= 1`.
    public static func topK(_ scores: Matrix, labels: [Int], k: Int) -> Double {
        precondition(labels.count == scores.rows, "topK: \(labels.count) labels for \(scores.rows) rows")
        precondition(k >= 1, "topK: k must be at least 1")
        guard scores.rows > 0 else { return 0 }
        var correct = 0
        for (r, y) in labels.enumerated() where rank(scores, row: r, label: y) < k { correct += 1 }
        return 100 * Double(correct) / Double(scores.rows)
    }

    /// Confusion matrix `[classes][classes]`: entry `[t][p]` counts rows of true class `t` predicted as `p`.
    public static func confusion(predictions: [Int], labels: [Int], classes: Int) -> [[Int]] {
        precondition(predictions.count == labels.count, "confusion: \(predictions.count) predictions for \(labels.count) labels")
        var m = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (p, t) in zip(predictions, labels) { m[t][p] += 1 }
        return m
    }

    /// Mean per-class accuracy in percent: the mean over classes with at least one row of
    /// (correct rows of the class / rows of the class), i.e. the mean of the confusion matrix's
    /// diagonal over its row sums. Returns 0 when no class has rows.
    public static func meanPerClassAccuracy(confusion m: [[Int]]) -> Double {
        var sum = 0.0, present = 0
        for (t, row) in m.enumerated() {
            let n = row.reduce(0, +)
            guard n > 0 else { continue }
            sum += Double(row[t]) / Double(n)
            present += 1
        }
        return present == 0 ? 0 : 100 * sum / Double(present)
    }

    /// 11-point interpolated average precision of one class (VOC2007 `voc_eval`, docs/bissl.md, "Metrics"):
    /// rows sorted by score, larger first (equal scores: lower row index first); precision and recall
    /// after each row; for `t` in 0, 0.1, ..., 1 the interpolated precision is the largest precision
    /// at a recall `>= t` (0 if none); AP is the mean of the 11 values, in [0, 1]. Recall is compared
    /// with `t` exactly (`tp * 10 >= step * positives`); `voc_eval`'s `np.arange(0, 1.1, 0.1)` has
    /// 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001, so it misses a recall of
    /// exactly 0.3, 0.6 or 0.7 - we follow docs/bissl.md "Metrics": 0, 0.1, ..., 1.
    /// - Returns: nil when the class has no positive row (it is left out of the mean).
    public static func averagePrecision11(scores: [Float], positives: [Bool]) -> Double? {
        precondition(scores.count == positives.count, "averagePrecision11: \(scores.count) scores for \(positives.count) targets")
        let total = positives.filter { $0 }.count
        guard total > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        var tp = 0
        var precision: [Double] = [], truePositives: [Int] = []
        for (k, i) in order.enumerated() {
            if positives[i] { tp += 1 }
            precision.append(Double(tp) / Double(k + 1))
            truePositives.append(tp)
        }
        var ap = 0.0
        for step in 0...10 {
            // recall >= step/10, compared exactly as tp * 10 >= step * total
            var p = 0.0
            for (pr, tp) in zip(precision, truePositives) where tp * 10 >= step * total { p = max(p, pr) }
            ap += p / 11
        }
        return ap
    }

    /// Multi-label mAP in percent: the mean of `averagePrecision11` over the classes (columns) that
    /// have at least one positive, times 100. Returns nil when no class has a positive.
    /// - Parameters: scores `[N, C]`, targets `[N, C]` (multi-hot; a value > 0 is a positive).
    public static func meanAveragePrecision11(scores: Matrix, targets: Matrix) -> Double? {
        precondition(scores.shape == targets.shape, "mAP: scores \(scores.shape) vs targets \(targets.shape)")
        var sum = 0.0, present = 0
        for c in 0..<scores.cols {
            let s = (0..<scores.rows).map { scores.data[$0 * scores.cols + c] }
            let p = (0..<scores.rows).map { targets.data[$0 * targets.cols + c] > 0 }
            if let ap = averagePrecision11(scores: s, positives: p) { sum += ap; present += 1 }
        }
        return present == 0 ? nil : 100 * sum / Double(present)
    }
}

/// Everything `bissl eval` reports for single-label data. Accuracies in percent; the intervals are
/// 95% intervals (`AccuracyIntervals`: Wilson for top-1, stratified percentile bootstrap for the mean
/// per-class accuracy).
public struct EvaluationReport: Codable, Equatable, Sendable {
    public var count: Int
    public var classes: Int
    public var top1: Double
    /// Wilson score 95% interval of `top1` (percent).
    public var top1Lower: Double, top1Upper: Double
    public var top5: Double
    public var meanPerClassAccuracy: Double
    /// Bootstrap 95% interval of `meanPerClassAccuracy` (percent), its replicates and seed.
    public var meanPerClassLower: Double, meanPerClassUpper: Double
    public var bootstrapResamples: Int, bootstrapSeed: UInt64
    /// `[true][predicted]` counts.
    public var confusion: [[Int]]

    /// Computes the report from scores `[N, C]` and labels; the bootstrap draws from `seed`.
    public init(scores: Matrix, labels: [Int], resamples: Int = Bootstrap.resamples, seed: UInt64 = 0) {
        count = scores.rows
        classes = scores.cols
        top1 = ClassificationMetrics.topK(scores, labels: labels, k: 1)
        top5 = ClassificationMetrics.topK(scores, labels: labels, k: 5)
        let predictions = ClassificationMetrics.predictions(scores)
        confusion = ClassificationMetrics.confusion(predictions: predictions, labels: labels, classes: scores.cols)
        meanPerClassAccuracy = ClassificationMetrics.meanPerClassAccuracy(confusion: confusion)
        let correct = zip(predictions, labels).filter { $0 == $1 }.count
        let w = AccuracyIntervals.wilson(successes: correct, trials: count)
        (top1Lower, top1Upper) = (100 * w.lower, 100 * w.upper)
        (meanPerClassLower, meanPerClassUpper) = AccuracyIntervals.meanPerClassBootstrap(
            predictions: predictions, labels: labels, classes: scores.cols, resamples: resamples, seed: seed)
        bootstrapResamples = resamples
        bootstrapSeed = seed
    }
}
