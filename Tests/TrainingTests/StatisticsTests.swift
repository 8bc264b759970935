import XCTest
@testable import Training

/// Intervals and paired tests (`AccuracyIntervals`, `PairedTests`) against values computed
/// independently of the code under test: published worked examples, exact rational arithmetic, and
/// the normal approximation for the bootstrap intervals. scipy checks the McNemar p-values, the Holm
/// adjustment and the Wilson interval on real CLI output in the interop lane (test_compare.py).
final class StatisticsTests: XCTestCase {
    /// R. G. Newcombe, "Two-sided confidence intervals for the single proportion: comparison of seven
    /// methods", Statistics in Medicine 17 (1998), Table I, method 3 (score, no continuity correction),
    /// printed to 4 decimals: so a tolerance of half a unit in the 4th decimal.
    func testWilsonMatchesNewcombesTable() {
        for (k, n, lo, hi) in [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)] {
            let w = AccuracyIntervals.wilson(successes: k, trials: n)
            XCTAssertEqual(w.lower, lo, accuracy: 0.00005, "\(k)/\(n)")
            XCTAssertEqual(w.upper, hi, accuracy: 0.00005, "\(k)/\(n)")
        }
        XCTAssertEqual(AccuracyIntervals.wilson(successes: 0, trials: 0).upper, 1)
    }

    /// Exact tails as rationals: b = 0, c = 5: 2·(1/32); b = 1, c = 9: 2·(1 + 10)/1024; b = 2, c = 10:
    /// 2·(1 + 12 + 66)/4096; b = c: 1. The float sum of a handful of terms is within a few ulps.
    func testExactMcNemarSmallCases() {
        XCTAssertEqual(PairedTests.mcnemarExact(b: 0, c: 5), 2.0 / 32, accuracy: 1e-15)
        XCTAssertEqual(PairedTests.mcnemarExact(b: 9, c: 1), 22.0 / 1024, accuracy: 1e-15)
        XCTAssertEqual(PairedTests.mcnemarExact(b: 2, c: 10), 158.0 / 4096, accuracy: 1e-15)
        XCTAssertEqual(PairedTests.mcnemarExact(b: 7, c: 7), 1)
        XCTAssertEqual(PairedTests.mcnemarExact(b: 0, c: 0), 1)
        XCTAssertEqual(PairedTests.mcnemarExact(b: 0, c: 1), 1)  // 2·(1/2) capped at 1
        // large counts: 0 of 1000 discordant on one side is 2·2^-1000 (near the bottom of the double range)
        XCTAssertEqual(log2(PairedTests.mcnemarExact(b: 0, c: 1000)), -999, accuracy: 1e-9)
    }

    /// Holm's adjustment by hand: sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005 = 0.02, 3·0.01 = 0.03,
    /// 2·0.03 = 0.06, max(1·0.04, 0.06) = 0.06; one p-value is unchanged; large ones cap at 1.
    func testHolmByHand() {
        let adjusted = PairedTests.holm([0.01, 0.04, 0.03, 0.005])
        for (got, want) in zip(adjusted, [0.03, 0.06, 0.06, 0.02]) { XCTAssertEqual(got, want, accuracy: 1e-15) }
        XCTAssertEqual(PairedTests.holm([0.2]), [0.2])
        XCTAssertEqual(PairedTests.holm([0.6, 0.7]), [1, 1])
    }

    /// n = 1000 images, 60 only A right, 40 only B right: difference 2 points; the per-image
    /// difference d has variance 0.1 − 0.02² = 0.0996, so the normal-approximation interval is
    /// 2 ± 1.96·100·sqrt(0.0996/1000) = 2 ± 1.956 points. Tolerance 0.2 points: the replicates move in
    /// steps of 0.1 point, the Monte Carlo error of a 2.5% percentile from 10,000 replicates is
    /// sqrt(0.025·0.975/1e4)/φ(1.96) ≈ 0.027 standard errors ≈ 0.03 points, and the skew of the
    /// sampling distribution at n = 1000 moves the ends by well under 0.1 point.
    func testPairedBootstrapAgreesWithNormalApproximation() {
        let a = (0..<1000).map { $0 < 60 || $0 >= 100 && $0 < 700 }
        let b = (0..<1000).map { $0 >= 60 && $0 < 100 || $0 >= 100 && $0 < 700 }
        let c = PairedComparison(correctA: a, correctB: b, seed: 3)
        XCTAssertEqual(c.onlyARight, 60); XCTAssertEqual(c.onlyBRight, 40)
        XCTAssertEqual(c.difference, 2, accuracy: 1e-12)
        let half = 1.959964 * 100 * (0.0996 / 1000).squareRoot()
        XCTAssertEqual(c.differenceLower, 2 - half, accuracy: 0.2)
        XCTAssertEqual(c.differenceUpper, 2 + half, accuracy: 0.2)
        // p = 2·P(X ≤ 40), X ~ Bin(100, 1/2) = 0.0569 (normal approximation with continuity
        // correction: 2·Φ((40.5 − 50)/5) = 0.0574; the exact value is within 0.001 of it).
        XCTAssertEqual(c.mcnemarP, 0.0574, accuracy: 0.001)
        XCTAssertTrue(c.verdict("A", "B").hasPrefix("A vs B: no significant difference at 5%"), c.verdict("A", "B"))
        // the same seed gives the same interval; another seed a different one within the Monte Carlo error
        let again = PairedComparison(correctA: a, correctB: b, seed: 3)
        XCTAssertEqual(again, c)
    }

    /// A clear difference reads as "better", in the right direction.
    func testVerdictNamesTheBetterEntry() {
        let a = (0..<500).map { $0 < 400 }, b = (0..<500).map { $0 < 300 }
        let c = PairedComparison(correctA: b, correctB: a, resamples: 1000)
        XCTAssertLessThan(c.mcnemarP, 1e-20)
        XCTAssertTrue(c.verdict("X", "Y").hasPrefix("Y better than X at 5%"), c.verdict("X", "Y"))
    }

    /// Two classes of 500 images with accuracies 0.8 and 0.6: mean 70%, standard error
    /// 100·sqrt((0.8·0.2 + 0.6·0.4)/500)/2 = 1.414 points, normal interval 70 ± 2.77. Tolerance 0.2
    /// points (replicate steps of 0.1 point, Monte Carlo error ≈ 0.04 point, as above).
    func testMeanPerClassBootstrapAgreesWithNormalApproximation() {
        var predictions: [Int] = [], labels: [Int] = []
        for i in 0..<500 { labels.append(0); predictions.append(i < 400 ? 0 : 1) }
        for i in 0..<500 { labels.append(1); predictions.append(i < 300 ? 1 : 0) }
        let (lo, hi) = AccuracyIntervals.meanPerClassBootstrap(predictions: predictions, labels: labels, classes: 3, seed: 1)
        let half = 1.959964 * 100 * ((0.8 * 0.2 + 0.6 * 0.4) / 500).squareRoot() / 2
        XCTAssertEqual(lo, 70 - half, accuracy: 0.2)
        XCTAssertEqual(hi, 70 + half, accuracy: 0.2)
    }

    /// numpy's `percentile` rule (position q·(n−1), linear): for 0...100, the 2.5% point is 2.5 and
    /// the 97.5% point is 97.5.
    func testPercentileRule() {
        let (lo, hi) = Bootstrap.percentileInterval((0...100).map(Double.init).reversed())
        XCTAssertEqual(lo, 2.5, accuracy: 1e-12)
        XCTAssertEqual(hi, 97.5, accuracy: 1e-12)
    }
}
