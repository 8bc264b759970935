import BisslCore
import Foundation

/// Confidence intervals of classification accuracies (docs/bissl.md, "Metrics").
///
/// - Top-1: the Wilson score interval (E. B. Wilson, "Probable inference, the law of succession, and
///   statistical inference", JASA 22, 1927), without continuity correction. Chosen over the exact
///   Clopper-Pearson interval because its coverage is close to the nominal 95% on average while
///   Clopper-Pearson is conservative (too wide) by construction (L. D. Brown, T. T. Cai, A. DasGupta,
///   "Interval estimation for a binomial proportion", Statistical Science 16, 2001, recommend Wilson
///   for n < 40 and for larger n alike), it stays inside [0, 1], is sensible at 0 and n correct, and
///   it is closed-form (the same numbers as `scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`).
/// - Mean per-class accuracy: a seeded percentile bootstrap (B. Efron, R. J. Tibshirani, "An
///   Introduction to the Bootstrap", Chapman & Hall 1993, ch. 13): images are resampled with
///   replacement within each true class (the class sizes are fixed by the test set, so a stratified
///   resample keeps every class present), the statistic recomputed, and the 2.5% and 97.5%
///   percentiles of `Bootstrap.resamples` replicates reported.
public enum AccuracyIntervals {
    /// The standard normal quantile z_{0.975} (two-sided 95%).
    public static let z95 = 1.959963984540054

    /// Wilson score interval for `successes` out of `trials`, as proportions in [0, 1]:
    /// centre (k + z²/2)/(n + z²), half-width z·sqrt(k(n−k)/n + z²/4)/(n + z²).
    /// Returns (0, 1) for `trials == 0` (no information).
    /// - Precondition: 0 ≤ successes ≤ trials.
    public static func wilson(successes k: Int, trials n: Int, z: Double = z95) -> (lower: Double, upper: Double) {
        precondition(k >= 0 && k <= n, "wilson: \(k) successes out of \(n)")
        guard n > 0 else { return (0, 1) }
        let kd = Double(k), nd = Double(n), z2 = z * z
        let centre = (kd + z2 / 2) / (nd + z2)
        let half = z * (kd * (nd - kd) / nd + z2 / 4).squareRoot() / (nd + z2)
        return (max(0, centre - half), min(1, centre + half))
    }

    /// Stratified percentile-bootstrap 95% interval of the mean per-class accuracy (percent), from
    /// per-image predictions and labels; `resamples` replicates from `seed`. Classes without an image
    /// are left out of the mean, as `ClassificationMetrics.meanPerClassAccuracy`.
    /// - Precondition: `predictions.count == labels.count`, labels in `0..<classes`.
    public static func meanPerClassBootstrap(predictions: [Int], labels: [Int], classes: Int,
                                             resamples: Int = Bootstrap.resamples, seed: UInt64 = 0) -> (lower: Double, upper: Double) {
        precondition(predictions.count == labels.count, "meanPerClassBootstrap: \(predictions.count) predictions for \(labels.count) labels")
        // per class: the 0/1 correctness of its images
        var correct = [[Bool]](repeating: [], count: classes)
        for (p, y) in zip(predictions, labels) { correct[y].append(p == y) }
        let present = correct.filter { !$0.isEmpty }
        guard !present.isEmpty else { return (0, 0) }
        var rng = SeededGenerator(seed: seed)
        var replicates = [Double](repeating: 0, count: resamples)
        for b in 0..<resamples {
            var sum = 0.0
            for images in present {
                var hits = 0
                for _ in 0..<images.count where images[Bootstrap.index(images.count, &rng)] { hits += 1 }
                sum += Double(hits) / Double(images.count)
            }
            replicates[b] = 100 * sum / Double(present.count)
        }
        return Bootstrap.percentileInterval(replicates)
    }
}

/// Shared pieces of the seeded percentile bootstrap (Efron & Tibshirani 1993, ch. 13).
public enum Bootstrap {
    /// Replicates per interval: 10,000, so the Monte Carlo error of a 2.5% percentile is about
    /// sqrt(0.025·0.975/10000) ≈ 0.16% of the replicates' distribution mass.
    public static let resamples = 10_000

    /// A uniform index in `0..<n` (Lemire's multiply-shift; bias below n/2^64).
    @inline(__always)
    static func index(_ n: Int, _ rng: inout SeededGenerator) -> Int {
        Int(truncatingIfNeeded: rng.next().multipliedFullWidth(by: UInt64(n)).high)
    }

    /// The 2.5% and 97.5% percentiles of `values` (linear interpolation between order statistics,
    /// numpy's default `percentile` rule: position q·(B−1)).
    public static func percentileInterval(_ values: [Double]) -> (lower: Double, upper: Double) {
        let s = values.sorted()
        func at(_ q: Double) -> Double {
            guard s.count > 1 else { return s.first ?? .nan }
            let pos = q * Double(s.count - 1)
            let i = Int(pos.rounded(.down)), f = pos - Double(i)
            return i + 1 < s.count ? s[i] + f * (s[i + 1] - s[i]) : s[i]
        }
        return (at(0.025), at(0.975))
    }
}
