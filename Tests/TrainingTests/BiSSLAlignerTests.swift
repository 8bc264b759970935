import Checkpoint
import Datasets
import Engine
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// The alternation loop: data-cursor bookkeeping, and bit-exact resume of a whole alignment (tiny
/// ResNet-18 width 2 on 8x8 digits: 1 warmup epoch, 2 alternations of 2 lower + 2 upper steps).
final class BiSSLAlignerTests: XCTestCase {
    static let digits = Fixtures.digits

    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-aligner-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// Digits images `range` as a dataset (through a `#split=` file).
    func subset(_ range: Range<Int>) throws -> ImageDataset {
        let file = tmp.appendingPathComponent("split-\(range.lowerBound).txt")
        try range.map(String.init).joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        return try ImageDataset(parsing: "h5:\(Self.digits)#split=\(file.path)")
    }

    func testCursorRunsExactlyTheRequestedStepsAndReshufflesWhenShort() throws {
        let loader = DataLoader(dataset: try subset(0..<8), batchSize: 4, shuffle: true, dropLast: true, seed: 3,
                                height: 8, width: 8, workers: 1) { image, rng in [Augment.downstreamTrain(image, using: &rng, size: 8)] }
        var cursor = PhaseCursor()
        var seen: [[Int]] = []
        try cursor.run(3, on: loader) { seen.append($0.indices) }
        // 2 batches per epoch: epoch 0 (both), then the first of epoch 1
        XCTAssertEqual(seen.count, 3)
        XCTAssertEqual(cursor, PhaseCursor(epoch: 1, position: 1))
        XCTAssertEqual(Set(seen[0] + seen[1]), Set(0..<8), "one epoch visits every image once")
        XCTAssertEqual(seen[2], Array(loader.order(epoch: 1).prefix(4)))
        // 1 batch left < 3 needed: a fresh epoch (2) starts, then cycles into epoch 3
        seen = []
        try cursor.run(3, on: loader) { seen.append($0.indices) }
        XCTAssertEqual(cursor, PhaseCursor(epoch: 3, position: 1))
        XCTAssertEqual(seen[0], Array(loader.order(epoch: 2).prefix(4)))
        // enough left: continue in place
        var c2 = PhaseCursor(epoch: 5, position: 0)
        try c2.run(1, on: loader) { _ in }
        XCTAssertEqual(c2, PhaseCursor(epoch: 5, position: 1))
    }

    func makeAligner(pretextImages: Range<Int> = 16..<28, heldOut: ImageDataset? = nil,
                     _ configure: (inout AlignmentSettings) -> Void = { _ in }) throws -> Aligner {
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small",
                                heads: ["projector": .init(kind: "mlp", dims: [16, 16, 16, 8])])
        let p = try Network(architecture: arch, seed: 5)
        var darch = arch
        darch.heads = ["classifier": .init(kind: "linear", dims: [16, 10])]
        let d = try Network(architecture: darch, seed: 6)
        try d.backbone.load(p.backbone.stateDict())
        var s = AlignmentSettings()
        s.alternations = 2; s.lowerSteps = 2; s.upperSteps = 2; s.warmupEpochs = 1
        s.pBatchSize = 4; s.dBatchSize = 4; s.imageSize = 8; s.evalBatchSize = 8
        s.implicit = ImplicitGradientOptions(iterations: 2)
        s.dLR = 0.05; s.seed = 11
        configure(&s)
        return try Aligner(settings: s, pretext: try PretextObjective(method: .simclr, network: p), downstream: d,
                           pretextData: try subset(pretextImages), trainData: try subset(0..<8), validationData: try subset(8..<16),
                           pretextHeldOut: heldOut)
    }

    func newRun(_ zoo: Zoo, _ aligner: Aligner) throws -> Run {
        try Run.create(zoo: zoo, kind: "align", config: [:], commandLine: ["test"], totalSteps: aligner.totalSteps,
                       progress: ProgressReporter(total: aligner.totalSteps, mode: .none, write: { _ in }, now: { 0 }))
    }

    /// `--lambda 0 --no-ij` is exactly continued pretext training: θ_P and φ_P after 3 alternations equal,
    /// bit for bit, 6 plain pretext steps written out here (zero grads, SimCLR loss and gradient in train
    /// mode, clip 10, LARS, lower cosine schedule) on the same batches (the aligner's pretext loader:
    /// seed derive(seed, 1); 16 images = 4 batches of 4, so the 2-step phases walk epochs 0, 0, 1 in
    /// order). BN running statistics are not compared: the upper phases' train-mode forwards through θ_P
    /// move them (as in every arm; `bissl probe --recalibrate-bn` recomputes them).
    func testLambdaZeroNoIJIsExactlyContinuedPretextTraining() throws {
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        let aligner = try makeAligner(pretextImages: 16..<32) { s in
            s.alternations = 3
            s.implicit = ImplicitGradientOptions(lambda: 0, damping: 10, iterations: 2, enabled: false)
        }
        let plain = try aligner.pretext.copy()
        let run = try newRun(zoo, aligner)
        try aligner.run(run)
        // plain pretext steps
        let s = aligner.settings
        var v1 = Augment.PretextView.view1, v2 = Augment.PretextView.view2
        v1.size = 8
        v2.size = 8
        let views = (v1, v2)
        let loader = DataLoader(dataset: try subset(16..<32), batchSize: 4, shuffle: true, dropLast: true,
                                seed: Aligner.derive(s.seed, 1), height: 8, width: 8) { image, rng in
            let (a, b) = Augment.pretextPair(image, using: &rng, views: views, pixelScale: s.pixelScale)
            return [a, b]
        }
        XCTAssertEqual(loader.batchesPerEpoch, 4)
        let lars = LARS(parameters: plain.parameters, lr: s.pLR, momentum: s.pMomentum, weightDecay: s.pWD, eta: s.pEta)
        var schedule = s.lowerSchedule
        var steps = 0
        for epoch in 0..<2 {
            let iterator = loader.epoch(epoch)
            while steps < s.alternations * s.lowerSteps, let b = try iterator.nextBatch() {
                plain.parameters.zeroGrad()
                plain.lossAndGradient(view1: Tensor4(n: 4, c: 3, h: 8, w: 8, data: b.views[0]),
                                      view2: Tensor4(n: 4, c: 3, h: 8, w: 8, data: b.views[1]), mode: .train, updateEMA: true)
                _ = clipGradNorm(plain.parameters, maxNorm: s.clip)
                lars.step()
                lars.lr = schedule.step()
                steps += 1
            }
        }
        XCTAssertEqual(steps, 6)
        XCTAssertEqual(aligner.pretext.parameters.count, plain.parameters.count)
        for (a, b) in zip(aligner.pretext.parameters, plain.parameters) {
            XCTAssertEqual(a.value, b.value, "\(a.name): align --lambda 0 --no-ij differs from plain pretext steps")
        }
        XCTAssertNotEqual(aligner.pretext.parameters[0].value, try makeAligner().pretext.parameters[0].value, "θ_P moved")
        XCTAssertEqual(run.history("penalty_share").map(\.value), [Double](repeating: 0, count: 6))
    }

    /// penalty_share = λ·‖θ_P − θ_D‖ / ‖∇_θP L_P‖: with θ_D = θ_P − 0.01 in every backbone value the
    /// distance is 0.01·sqrt(P) (P backbone values), and ‖∇L_P‖ comes from a copy's own gradient on the
    /// same batch (the same float32 operations, so the same gradient bit for bit). Tolerance 1e-4
    /// relative: θ_P − θ_D is a float32 difference of values up to about 2 (BN weights near 1), each off
    /// 0.01 by at most an ulp of 2 (2.4e-7), i.e. 2.4e-5 relative at worst; the norms are float64 sums.
    func testPenaltyShareIsTheRelativeSizeOfThePenaltyGradient() throws {
        let aligner = try makeAligner { s in s.implicit = ImplicitGradientOptions(lambda: 0.5, damping: 10, iterations: 2) }
        for (d, p) in zip(aligner.downstream.backbone.parameters, aligner.pretext.backboneParameters) {
            for i in p.value.indices { d.value[i] = p.value[i] - 0.01 }
        }
        let twin = try aligner.pretext.copy()
        let g = Tensor4(n: 4, c: 3, h: 8, w: 8, data: (0..<(4 * 3 * 64)).map { Float(sin(Double($0))) })
        let h = Tensor4(n: 4, c: 3, h: 8, w: 8, data: (0..<(4 * 3 * 64)).map { Float(cos(Double($0) * 0.7)) })
        twin.parameters.zeroGrad()
        twin.lossAndGradient(view1: g, view2: h, mode: .train, updateEMA: true)
        let gradNorm = twin.backboneParameters.reduce(0.0) { $0 + $1.grad.reduce(0.0) { $0 + Double($1) * Double($1) } }.squareRoot()
        let count = Double(aligner.pretext.backboneParameters.reduce(0) { $0 + $1.count })
        let r = aligner.lower.step(view1: g, view2: h)
        let want = 0.5 * 0.01 * count.squareRoot() / gradNorm
        XCTAssertEqual(try XCTUnwrap(r.penaltyShare), want, accuracy: 1e-4 * want)
    }

    /// The held-out pretext loss leaves every parameter, BN buffer and optimiser state as it was, and
    /// is the same number when asked twice.
    func testHeldOutPretextLossChangesNothing() throws {
        let aligner = try makeAligner(heldOut: try subset(40..<52))
        let before = aligner.captureState()
        let a = try XCTUnwrap(aligner.heldOutPretextLoss()), b = try XCTUnwrap(aligner.heldOutPretextLoss())
        XCTAssertEqual(a, b)
        XCTAssertTrue(a.isFinite && a > 0)
        XCTAssertEqual(aligner.captureState().arrays, before.arrays)
        XCTAssertNil(try makeAligner().heldOutPretextLoss())
    }

    func testResumeIsBitExact() throws {
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        // uninterrupted
        let full = try makeAligner()
        let runA = try Run.create(zoo: zoo, kind: "align", config: [:], commandLine: ["test"], totalSteps: full.totalSteps,
                                  progress: ProgressReporter(total: full.totalSteps, mode: .none, write: { _ in }, now: { 0 }))
        XCTAssertEqual(full.totalSteps, 2 + 2 * 4)
        try full.run(runA)
        let reference = full.captureState()
        XCTAssertEqual(runA.history("upper_val_top1").count, 2, "val top-1 logged per alternation")
        XCTAssertEqual(runA.history("loss_lower").count, 4)
        XCTAssertEqual(runA.history("loss_upper").count, 4)
        XCTAssertEqual(runA.history("ij_relative_hessian").count, 4)
        XCTAssertNotEqual(reference.arrays["model/p/backbone/conv1.weight"], try makeAligner().captureState().arrays["model/p/backbone/conv1.weight"],
                          "θ_P moved")
        // interrupted after the first alternation, resumed by a fresh process-like setup
        var runId = ""
        do {
            let first = try makeAligner()
            let runB = try Run.create(zoo: zoo, kind: "align", config: [:], commandLine: ["test"], totalSteps: first.totalSteps,
                                      progress: ProgressReporter(total: first.totalSteps, mode: .none, write: { _ in }, now: { 0 }))
            runId = runB.id
            try first.run(runB, stopAfter: 1)
        }
        let resumed = try makeAligner()
        let runC = try Run.open(zoo: zoo, id: runId, expectedKind: "align", commandLine: ["test", "--resume"],
                                progress: ProgressReporter(total: resumed.totalSteps, mode: .none, write: { _ in }, now: { 0 }))
        try resumed.restore(XCTUnwrap(try runC.loadState()))
        try resumed.run(runC)
        let final = resumed.captureState()
        XCTAssertEqual(final.step, reference.step)
        XCTAssertEqual(final.integers, reference.integers)
        XCTAssertEqual(Set(final.arrays.keys), Set(reference.arrays.keys))
        for (k, v) in reference.arrays { XCTAssertEqual(final.arrays[k], v, "\(k) differs after resume") }
        XCTAssertEqual(runC.history("upper_val_top1").map(\.value), runA.history("upper_val_top1").map(\.value))
    }
}
