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
    static let digits = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/digits/digits.h5").path

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

    func makeAligner() throws -> Aligner {
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
        return try Aligner(settings: s, pretext: try PretextObjective(method: .simclr, network: p), downstream: d,
                           pretextData: try subset(16..<28), trainData: try subset(0..<8), validationData: try subset(8..<16))
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
        XCTAssertEqual(runA.history("val_top1").count, 2, "val top-1 logged per alternation")
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
        XCTAssertEqual(runC.history("val_top1").map(\.value), runA.history("val_top1").map(\.value))
    }
}
