import Checkpoint
import Datasets
import Engine
import Foundation
import XCTest
@testable import Training
import TestSupport

/// Frozen features: eval mode leaves every BN buffer untouched, and the result does not depend on
/// the batch size (eval-mode BN uses running statistics, never the batch).
final class DownstreamFeaturesTests: XCTestCase {
    /// The committed 8x8 digits (data/digits/digits.h5), first `count` images through a split file.
    static func digits(first count: Int, offset: Int = 0) throws -> ImageDataset {
        let repo = Fixtures.repository
        let split = FileManager.default.temporaryDirectory.appendingPathComponent("digits-split-\(offset)-\(count)-\(UUID().uuidString).txt")
        try (offset..<(offset + count)).map(String.init).joined(separator: "\n").write(to: split, atomically: true, encoding: .utf8)
        return try ImageDataset(parsing: "h5:\(repo.path)/data/digits/digits.h5#split=\(split.path)")
    }

    /// A ResNet-18 width 4 (small stem) whose BN running statistics are not the initial 0/1.
    static func trainedBackbone() throws -> ResNet {
        let net = try ResNet(depth: 18, width: 4, stem: "small")
        net.initialize(seed: 7, zeroInitLastBN: false)
        var rng = SeededRNG(seed: 3)
        let x = Tensor4(n: 4, c: 3, h: 8, w: 8, data: (0..<(4 * 3 * 64)).map { _ in rng.normal() })
        _ = net.forward(x, mode: .train)   // moves running_mean / running_var / num_batches_tracked
        return net
    }

    func testExtractLeavesRunningStatisticsUnchanged() throws {
        let net = try Self.trainedBackbone()
        let before = net.stateDict()
        XCTAssertEqual(net.batchNorms[0].numBatchesTracked, 1)
        _ = try FrozenFeatures.extract(backbone: net, dataset: Self.digits(first: 10), imageSize: 8, batchSize: 4)
        let after = net.stateDict()
        XCTAssertEqual(Array(before.keys), Array(after.keys))
        for (k, t) in before {
            XCTAssertEqual(after[k], t, "\(k) changed during feature extraction")
        }
    }

    func testFeaturesMatchOneEvalForwardWhateverTheBatchSize() throws {
        let net = try Self.trainedBackbone()
        let data = try Self.digits(first: 9)
        let a = try FrozenFeatures.extract(backbone: net, dataset: data, imageSize: 8, batchSize: 4)
        // Reference: the transform applied by hand, all 9 images in one eval forward.
        var pixels: [Float] = []
        for i in 0..<data.count { pixels += Augment.downstreamTest(try data.image(i), size: 8) }
        let direct = net.forward(Tensor4(n: 9, c: 3, h: 8, w: 8, data: pixels), mode: .eval)
        XCTAssertEqual(a.features.shape, [9, net.featureCount])
        assertClose(a.features.data, direct.data, tolerance: 1e-5, "features vs one eval forward")
        XCTAssertEqual(a.labels, data.labels)
        XCTAssertEqual(a.classCount, 10)
        XCTAssertEqual(try FrozenFeatures.nativeImageSize(data), 8)
    }
}
