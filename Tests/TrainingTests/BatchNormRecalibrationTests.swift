import Checkpoint
import Engine
import XCTest
@testable import Training
import TestSupport

/// `BatchNormRecalibration` against PyTorch's `reset_running_stats()` + `momentum = None` + one
/// train-mode pass (fixture `downstream/bn_recalibration.npz`, tools/fixtures/make_bn_recalibration_fixture.py).
final class BatchNormRecalibrationTests: XCTestCase {
    func testMatchesTorchCumulativeAverage() throws {
        let f = try Fixtures.npz("bn_recalibration", area: "downstream")
        let spec = ResNet.depths[18]!
        let network = try Network(architecture: Architecture(depth: 18, block: spec.block, layers: spec.layers, width: 2,
                                                             stem: "small", heads: [:]), seed: 0)
        let backbone = network.backbone
        try backbone.load(f.stripping("state."))
        let before = backbone.parameters.map(\.value)
        let batches = try (0..<3).map { i -> Tensor4 in
            let x = try XCTUnwrap(f["x\(i)"])
            return Tensor4(n: x.shape[0], c: 3, h: 8, w: 8, data: x.floats())
        }
        XCTAssertEqual(BatchNormRecalibration.recalibrate(backbone, batches: batches), 3)
        XCTAssertEqual(backbone.parameters.map(\.value), before, "weights untouched")
        // Tolerance: the fixture's float32-vs-float64 spread of PyTorch itself (`spread`, about 4e-8 of the
        // largest value) measures float32 rounding on this network; our pass is the same float32
        // operations in another order (GEMM kernel, summation order), so its error has that order of
        // magnitude times the error growth over 17 layers. The bar, 1e-5 of the largest value, is above
        // 100x the spread; a wrong rule (momentum average, biased variance, eval-mode pass) is off by
        // more than 1e-2 of it.
        let spread = Double(try XCTUnwrap(f["spread"]).doubles()[0])
        XCTAssertLessThan(spread, 1e-7)
        var scale: Float = 0, worst: Float = 0
        for bn in backbone.batchNorms {
            let mean = f.floats("after.\(bn.prefix)running_mean"), variance = f.floats("after.\(bn.prefix)running_var")
            scale = max(scale, (mean + variance).map(abs).max() ?? 0)
            for (a, b) in zip(bn.runningMean + bn.runningVar, mean + variance) { worst = max(worst, abs(a - b)) }
            XCTAssertEqual(bn.numBatchesTracked, 3)
        }
        print("BatchNormRecalibration: max abs error \(worst) of max |value| \(scale)")
        XCTAssertLessThanOrEqual(worst, 1e-5 * scale)
    }
}
