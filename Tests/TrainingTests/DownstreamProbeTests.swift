import Engine
import Foundation
import XCTest
@testable import Training
import TestSupport

/// The linear probe and `Probe.run`: frozen backbone (BN running statistics unchanged), a probe
/// that separates separable features, seeded determinism.
final class DownstreamProbeTests: XCTestCase {
    func testProbeLeavesTheBackboneAndItsRunningStatisticsUnchanged() throws {
        let net = try DownstreamFeaturesTests.trainedBackbone()
        let before = net.stateDict()
        XCTAssertTrue(net.batchNorms.contains { bn in bn.runningMean.contains { $0 != 0 } }, "running statistics are not the initial ones")
        let train = try DownstreamFeaturesTests.digits(first: 30)
        let eval = try DownstreamFeaturesTests.digits(first: 10, offset: 30)
        let r = try Probe.run(backbone: net, train: train, eval: eval, imageSize: 8, k: 3, config: .init(epochs: 3))
        XCTAssertEqual(r.trainCount, 30); XCTAssertEqual(r.evalCount, 10); XCTAssertEqual(r.k, 3)
        let after = net.stateDict()
        for (k, t) in before { XCTAssertEqual(after[k], t, "\(k) changed during probe") }
    }

    /// Three well separated Gaussian clusters in 6-D: a linear classifier gets every point right.
    func testLinearProbeSeparatesSeparableClustersAndIsSeeded() {
        var rng = SeededRNG(seed: 42)
        func points(_ n: Int) -> FeatureSet {
            var data: [Float] = [], labels: [Int] = []
            for i in 0..<n {
                let y = i % 3
                for d in 0..<6 { data.append((d == 2 * y ? 4 : 0) + 0.5 * rng.normal()) }
                labels.append(y)
            }
            return FeatureSet(features: Matrix(rows: n, cols: 6, data: data), labels: labels, classCount: 3)
        }
        let train = points(90), test = points(30)
        let probe = LinearProbe(train: train, config: .init(epochs: 30, batchSize: 16, seed: 5))
        XCTAssertEqual(probe.top1(test), 100)
        let again = LinearProbe(train: train, config: .init(epochs: 30, batchSize: 16, seed: 5))
        XCTAssertEqual(probe.head.stateDict(), again.head.stateDict(), "same seed, same classifier")
        let other = LinearProbe(train: train, config: .init(epochs: 30, batchSize: 16, seed: 6))
        XCTAssertNotEqual(probe.head.stateDict(), other.head.stateDict())
        // k-NN on the same clusters
        XCTAssertEqual(KNNClassifier(train: train, k: 5).top1(test), 100)
    }
}
