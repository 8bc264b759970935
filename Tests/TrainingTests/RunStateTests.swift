import Checkpoint
import Engine
import Foundation
import XCTest
@testable import Training
import TestSupport

/// TrainingState: the state.h5 file round trip and capture/restore of each part.
final class RunStateTests: XCTestCase {
    func tempFile(_ name: String) -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-state-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.appendingPathComponent(name)
    }

    func testFileRoundTripKeepsEveryValueAndOrder() throws {
        var state = TrainingState(step: 42)
        state.arrays["model/backbone/conv1.weight"] = [1.5, -0.0, .infinity, Float(bitPattern: 0x7FC0_0001), 3e-39]
        state.arrays["opt/sgd/lr"] = [0.05]
        state.arrays["empty"] = []
        state.integers["model/backbone/bn1.num_batches_tracked"] = 7
        state.integers["big"] = Int64.max
        state.extra = ["epoch": .int(3), "position": .int(17), "best": .double(0.125), "note": .string("a/b")]
        let url = tempFile("state.h5")
        try state.write(to: url)
        let back = try TrainingState.read(url)
        XCTAssertEqual(back.step, 42)
        XCTAssertEqual(Array(back.arrays.keys), ["model/backbone/conv1.weight", "opt/sgd/lr", "empty"])
        for (k, v) in state.arrays { XCTAssertEqual(back.arrays[k]!.map(\.bitPattern), v.map(\.bitPattern), k) }
        XCTAssertEqual(back.integers, state.integers)
        XCTAssertEqual(back.extra, state.extra)
        XCTAssertEqual(try TrainingState.storedStep(url), 42)
        // No temporary left next to it.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
        XCTAssertEqual(siblings, ["state.h5"])
    }

    func testReadRefusesOtherFiles() throws {
        let url = tempFile("x.h5")
        try Data("not hdf5".utf8).write(to: url)
        XCTAssertThrowsError(try TrainingState.read(url)) { XCTAssertFalse("\($0)".contains("\n")) }
        XCTAssertThrowsError(try TrainingState.read(tempFile("missing.h5")))
    }

    /// Network capture covers every parameter and buffer, including BatchNorm1d of the MLP head;
    /// restore puts them back exactly.
    func testNetworkCaptureRestoreIncludesBatchNormBuffers() throws {
        let job = try ToyJob(seed: 5, totalSteps: 4)
        for s in 1...2 { job.step(s) }   // BN running statistics and counters move
        var state = TrainingState(step: 2)
        state.capture(job.net)
        XCTAssertEqual(state.integers["model/backbone/bn1.num_batches_tracked"], 2)
        XCTAssertEqual(state.integers["model/projector/1.num_batches_tracked"], 2)
        XCTAssertNotNil(state.arrays["model/projector/1.running_var"])
        XCTAssertNotNil(state.arrays["model/classifier/fc.weight"])
        let expectedCount = job.net.components().values.map(\.count).reduce(0, +)
        XCTAssertEqual(state.arrays.count + state.integers.count, expectedCount)

        let other = try ToyJob(seed: 77, totalSteps: 4)
        XCTAssertNotEqual(other.net.components(), job.net.components())
        try state.restore(other.net)
        XCTAssertEqual(other.net.components(), job.net.components())
    }

    func testRestoreRefusesMismatchWithOneLine() throws {
        let job = try ToyJob(seed: 5, totalSteps: 4)
        var state = TrainingState(step: 0)
        state.capture(job.net)
        // A wider network: sizes differ (small-stem conv1 is [width, 3, 3, 3]: 4*27 = 108 vs 8*27 = 216 values).
        var wide = ToyJob.architecture
        wide.width = 8
        wide.heads = ["projector": .init(kind: "mlp", dims: [64, 16, 8]), "classifier": .init(kind: "linear", dims: [64, 10])]
        let wideNet = try Network(architecture: wide, seed: 1)
        let before = wideNet.components()
        XCTAssertThrowsError(try state.restore(wideNet)) { error in
            XCTAssertTrue("\(error)".contains("has 108 values, expected 216"), "\(error)")
            XCTAssertFalse("\(error)".contains("\n"))
        }
        XCTAssertEqual(wideNet.components(), before, "nothing changed on a refused restore")
        // A network without the projector: the state has entries it does not expect.
        let smaller = try Network(architecture: ToyJob.architecture, seed: 1)
        smaller.removeHead("projector")
        XCTAssertThrowsError(try state.restore(smaller)) { error in
            XCTAssertTrue("\(error)".contains("model/projector/"), "\(error)")
            XCTAssertTrue("\(error)".contains("not expected"), "\(error)")
        }
        // A missing entry.
        var partial = state
        partial.arrays.removeValue(forKey: "model/backbone/conv1.weight")
        XCTAssertThrowsError(try partial.restore(job.net)) { error in
            XCTAssertTrue("\(error)".contains("'model/backbone/conv1.weight' is missing"), "\(error)")
        }
    }

    /// SGD before its first step has no buffers; after, its buffers and lr come back exactly, and
    /// continuing from the restored optimiser gives the same parameters as continuing the original.
    func testSGDCaptureRestore() throws {
        let p = Parameter(name: "w", shape: [3], value: [1, 2, 3])
        let sgd = SGD(parameters: [p], lr: 0.1, momentum: 0.9, weightDecay: 0.01)
        var state = TrainingState(step: 0)
        state.capture(sgd)
        XCTAssertEqual(state.integers["opt/sgd/started"], 0)
        let fresh = SGD(parameters: [Parameter(name: "w", shape: [3], value: [1, 2, 3])], lr: 0.5, momentum: 0.9, weightDecay: 0.01)
        try state.restore(fresh)
        XCTAssertNil(fresh.buffers)
        XCTAssertEqual(fresh.lr, 0.1)

        p.grad = [0.5, -1, 2]
        sgd.step()
        sgd.lr = 0.07
        state.capture(sgd)
        XCTAssertEqual(state.arrays["opt/sgd/0.w"], sgd.buffers![0])
        let q = Parameter(name: "w", shape: [3], value: p.value)
        let restored = SGD(parameters: [q], lr: 1, momentum: 0.9, weightDecay: 0.01)
        try state.restore(restored)
        p.grad = [0.25, 0.5, -0.75]; q.grad = p.grad
        sgd.step(); restored.step()
        XCTAssertEqual(q.value.map(\.bitPattern), p.value.map(\.bitPattern))
        // Wrong parameter list.
        let bad = SGD(parameters: [Parameter(name: "w", shape: [4])], lr: 1, momentum: 0.9)
        XCTAssertThrowsError(try state.restore(bad)) { XCTAssertTrue("\($0)".contains("has 3 values, expected 4"), "\($0)") }
    }

    func testLARSAndScheduleCaptureRestore() throws {
        let p = Parameter(name: "layer.weight", shape: [2, 2], value: [0.5, -1, 2, 0.25])
        let lars = LARS(parameters: [p], lr: 1.0)
        var schedule = CosineSchedule(base: 1.0, warmup: 2, total: 10)
        for g in [[Float](arrayLiteral: 0.1, 0.2, -0.3, 0.4), [0.3, -0.1, 0.2, 0.1]] {
            p.grad = g
            lars.step()
            lars.lr = schedule.step()
        }
        var state = TrainingState(step: 2)
        state.capture(lars)
        state.capture(schedule)
        XCTAssertEqual(state.integers["sched/counter"], 3)

        let q = Parameter(name: "layer.weight", shape: [2, 2], value: p.value)
        let lars2 = LARS(parameters: [q], lr: 123)
        var schedule2 = CosineSchedule(base: 1.0, warmup: 2, total: 10)
        try state.restore(lars2)
        try state.restore(&schedule2)
        XCTAssertEqual(lars2.buffers, lars.buffers)
        XCTAssertEqual(lars2.lr, lars.lr)
        XCTAssertEqual(schedule2.counter, 3)
        p.grad = [0.05, 0.05, -0.2, 0.3]; q.grad = p.grad
        lars.step(); lars2.step()
        XCTAssertEqual(q.value.map(\.bitPattern), p.value.map(\.bitPattern))
        XCTAssertEqual(schedule.step(), schedule2.step())
        var empty = TrainingState(step: 0)
        empty.capture(schedule)
        empty.removeAll(prefix: "sched")
        XCTAssertThrowsError(try empty.restore(&schedule2)) { XCTAssertTrue("\($0)".contains("sched/counter"), "\($0)") }
    }
}
