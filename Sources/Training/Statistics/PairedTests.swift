import BisslCore
import Foundation

/// Paired comparison of two classifiers on the same images (docs/bissl.md, "Comparing entries").
///
/// - Exact McNemar test (Q. McNemar, "Note on the sampling error of the difference between correlated
///   proportions or percentages", Psychometrika 12, 1947): only the discordant images count, b (A right,
///   B wrong) and c (A wrong, B right); under H0 (equal accuracy) b ~ Binomial(b + c, 1/2), and the
///   two-sided p-value is min(1, 2·P(X ≤ min(b, c))) - the same value as
///   `scipy.stats.binomtest(b, b + c, 0.5)` (whose two-sided rule, for the symmetric p = 1/2, sums
///   the same two tails).
/// - Paired percentile bootstrap of the top-1 difference (B. Efron, R. J. Tibshirani, "An Introduction
///   to the Bootstrap", Chapman & Hall 1993, ch. 13): images resampled with replacement (both
///   classifiers' outcomes of an image stay together), `Bootstrap.resamples` replicates, seeded.
/// - Several comparisons: Holm's step-down adjustment (S. Holm, "A simple sequentially rejective
///   multiple test procedure", Scandinavian Journal of Statistics 6, 1979), which controls the
///   family-wise error rate without assumptions on the dependence between the tests.
public enum PairedTests {
    /// Two-sided exact McNemar p-value for `b` and `c` discordant images (b, c ≥ 0). 1 when b = c
    /// (including no discordant image).
    public static func mcnemarExact(b: Int, c: Int) -> Double {
        precondition(b >= 0 && c >= 0, "mcnemarExact: negative count")
        let n = b + c, k = min(b, c)
        guard n > 0, b != c else { return 1 }
        // P(X ≤ k), X ~ Bin(n, 1/2): log C(n, i) built up as log C(n, i−1) + log((n−i+1)/i), each term
        // exp(log C(n, i) + n·log(1/2)), so n in the millions neither overflows nor underflows term by term
        // (relative error about i ulps in term i).
        let logHalfN = Double(n) * log(0.5)
        var logChoose = 0.0, tail = exp(logHalfN)
        if k > 0 {
            for i in 1...k {
                logChoose += log(Double(n - i + 1) / Double(i))
                tail += exp(logChoose + logHalfN)
            }
        }
        return min(1, 2 * tail)
    }

    /// Holm-adjusted p-values, in the order given: sorted ascending p_(1) ≤ ... ≤ p_(m), the adjusted
    /// p_(i) = max over j ≤ i of min(1, (m − j + 1)·p_(j)). Reject H_(i) at level α when its adjusted
    /// value is ≤ α. Equal p-values keep their input order.
    public static func holm(_ p: [Double]) -> [Double] {
        let m = p.count
        let order = p.indices.sorted { p[$0] < p[$1] || (p[$0] == p[$1] && $0 < $1) }
        var adjusted = [Double](repeating: 1, count: m)
        var running = 0.0
        for (rank, i) in order.enumerated() {
            running = max(running, min(1, Double(m - rank) * p[i]))
            adjusted[i] = running
        }
        return adjusted
    }

    /// Paired percentile-bootstrap 95% interval of top-1(A) − top-1(B), in percentage points, from the
    /// per-image correctness of A and B (same images, same order).
    public static func pairedBootstrap(_ a: [Bool], _ b: [Bool], resamples: Int = Bootstrap.resamples,
                                       seed: UInt64 = 0) -> (lower: Double, upper: Double) {
        precondition(a.count == b.count, "pairedBootstrap: \(a.count) vs \(b.count) images")
        let n = a.count
        guard n > 0 else { return (0, 0) }
        // per image: +1 (only A right), −1 (only B right), 0
        let d = zip(a, b).map { ($0 ? 1 : 0) - ($1 ? 1 : 0) }
        var rng = SeededGenerator(seed: seed)
        var replicates = [Double](repeating: 0, count: resamples)
        for r in 0..<resamples {
            var sum = 0
            for _ in 0..<n { sum += d[Bootstrap.index(n, &rng)] }
            replicates[r] = 100 * Double(sum) / Double(n)
        }
        return Bootstrap.percentileInterval(replicates)
    }
}

/// The comparison of two classifiers' per-image outcomes on the same images (`bissl compare`).
public struct PairedComparison: Codable, Equatable, Sendable {
    /// Images compared.
    public var count: Int
    /// Top-1 of A and of B (percent), and A − B (percentage points).
    public var top1A: Double, top1B: Double, difference: Double
    /// Paired-bootstrap 95% interval of `difference` (percentage points) and its replicates.
    public var differenceLower: Double, differenceUpper: Double, bootstrapResamples: Int
    /// Discordant images: A right and B wrong, A wrong and B right.
    public var onlyARight: Int, onlyBRight: Int
    /// Exact McNemar two-sided p-value.
    public var mcnemarP: Double
    /// Holm-adjusted p-value among all the pairs compared together (= `mcnemarP` for one pair).
    public var holmP: Double

    /// - Parameters: per-image correctness of A and B (same images); bootstrap `seed`.
    public init(correctA a: [Bool], correctB b: [Bool], resamples: Int = Bootstrap.resamples, seed: UInt64 = 0) {
        precondition(a.count == b.count, "PairedComparison: \(a.count) vs \(b.count) images")
        count = a.count
        let n = Double(max(a.count, 1))
        top1A = 100 * Double(a.filter { $0 }.count) / n
        top1B = 100 * Double(b.filter { $0 }.count) / n
        difference = top1A - top1B
        onlyARight = zip(a, b).filter { $0 && !$1 }.count
        onlyBRight = zip(a, b).filter { !$0 && $1 }.count
        mcnemarP = PairedTests.mcnemarExact(b: onlyARight, c: onlyBRight)
        holmP = mcnemarP
        (differenceLower, differenceUpper) = PairedTests.pairedBootstrap(a, b, resamples: resamples, seed: seed)
        bootstrapResamples = resamples
    }

    /// Significant at level `alpha` (Holm-adjusted McNemar).
    public func significant(alpha: Double = 0.05) -> Bool { holmP <= alpha }

    /// One plain-language line: "no significant difference at 5%" or "A better than B" (with the
    /// numbers that say so).
    public func verdict(_ nameA: String, _ nameB: String, alpha: Double = 0.05) -> String {
        let level = "\(String(format: "%g", alpha * 100))%"
        let numbers = String(format: "top-1 %.2f vs %.2f, difference %+.2f points, 95%% CI [%+.2f, %+.2f], McNemar p = %.3g",
                             top1A, top1B, difference, differenceLower, differenceUpper, mcnemarP)
            + (holmP != mcnemarP ? String(format: ", Holm p = %.3g", holmP) : "")
        guard significant(alpha: alpha), onlyARight != onlyBRight else {
            return "\(nameA) vs \(nameB): no significant difference at \(level) (\(numbers))"
        }
        let (better, worse) = onlyARight > onlyBRight ? (nameA, nameB) : (nameB, nameA)
        return "\(better) better than \(worse) at \(level) (\(numbers))"
    }
}
