import Checkpoint
import Datasets
import Engine
import Foundation
import XCTest
@testable import Training
import TestSupport

/// BiSSL's head-only warmup at the feature scale of a wide ResNet-50: with the paper's lr 0.03 the
/// loss climbs (the step is far past the stability bound of cross-entropy on features with a large
/// E‖x‖²); with the step size `AlignPlan` derives from a measurement of θ_0 it falls.
final class AlignWarmupScaleTests: XCTestCase {
    static let digits = Fixtures.digits

    func testWarmupImprovesWithTheMeasuredStepSizeAndNotWithTheFixedOne() throws {
        let data = try ImageDataset(parsing: "h5:\(Self.digits)")
        var settings = AlignmentSettings()
        settings.dBatchSize = 32
        settings.imageSize = 8
        settings.seed = 1
        // ResNet-50 width 32: 1024 features (the README's width-64 model has 2048).
        let arch = Architecture(depth: 50, block: "bottleneck", layers: [3, 4, 6, 3], width: 32, stem: "small",
                                heads: ["classifier": .init(kind: "linear", dims: [1024, 10])])
        let steps = 20
        func losses(fixedLR: Float?) throws -> (losses: [Float], plan: AlignPlan) {
            let net = try Network(architecture: arch, seed: 5)
            // Every residual branch active (as after pretraining; a fresh net zero-initialises the last
            // BN of each block), so the features carry the residual stream's grown scale.
            net.backbone.initialize(seed: 5, zeroInitLastBN: false)
            let plan = AlignPlan.measure(backbone: net.backbone, batch: try Aligner.firstDownstreamBatch(data, settings: settings),
                                         warmupSteps: steps, alternations: 0, lowerSteps: 0, upperSteps: 0, pretextBatch: 2,
                                         byol: false, cgIterations: 0, centralHVP: false, validationImages: 0)
            let warmup = try LinearWarmup(downstream: net, lr: fixedLR ?? Float(plan.warmupLR(requested: 0.03)), weightDecay: 1e-3)
            let epoch = Aligner.downstreamLoader(data, settings: settings).epoch(0)
            var out: [Float] = []
            for _ in 0..<steps {
                let b = try XCTUnwrap(try epoch.nextBatch())
                out.append(warmup.step(images: Tensor4(n: b.count, c: 3, h: 8, w: 8, data: b.views[0]), labels: b.labels))
            }
            return (out, plan)
        }
        func tail(_ l: [Float]) -> Float { l.suffix(5).reduce(0, +) / 5 }
        let measured = try losses(fixedLR: nil)
        XCTAssertGreaterThan(measured.plan.meanFeatureNorm2, 100, "a wide network's features have a large E‖x‖²")
        XCTAssertLessThan(measured.plan.warmupLR(requested: 0.03), 0.03)
        // Cross-entropy starts near ln 10 = 2.30 for a fresh head; the measured step size lowers it.
        XCTAssertLessThan(tail(measured.losses), measured.losses[0], "\(measured.losses)")
        let fixed = try losses(fixedLR: 0.03)
        XCTAssertGreaterThan(tail(fixed.losses), fixed.losses[0], "the paper's lr at this scale: the loss climbs \(fixed.losses)")
    }

    func testPlanCostsEveryKindOfStep() {
        let p = AlignPlan(warmupSteps: 10, alternationSteps: 6, meanFeatureNorm2: 400, forwardSeconds: 1, forwardBackwardSeconds: 3, seconds: 0)
        XCTAssertEqual(p.warmupLR(requested: 0.03), 0.0025, accuracy: 1e-12)
        XCTAssertEqual(p.warmupLR(requested: 0.001), 0.001)
        XCTAssertEqual(p.totalSteps, 16)
        XCTAssertEqual(AlignPlan.duration(0.04), "0.0 s")
        XCTAssertEqual(AlignPlan.duration(0.42), "0.4 s", "a tiny run's estimate is not rounded to 0 s")
        XCTAssertEqual(AlignPlan.duration(9.96), "10 s")
        XCTAssertEqual(AlignPlan.duration(42), "42 s")
        XCTAssertEqual(AlignPlan.duration(600), "10 min")
        XCTAssertEqual(AlignPlan.duration(5400), "1.5 h")
    }
}
