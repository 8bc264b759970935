import Checkpoint
import XCTest
@testable import Engine
import TestSupport

/// ResNet forward, backward, BN statistics and optimiser steps against real PyTorch 2.13
/// (tools/fixtures/make_engine_fixtures.py; tolerances: forward 1e-4, gradients 1e-3,
/// relative to the largest magnitude of each tensor).
final class ResNetParityTests: XCTestCase {
    struct Case {
        let tag: String, depth: Int, width: Int, stem: String
    }
    static let r18 = Case(tag: "r18", depth: 18, width: 6, stem: "imagenet")
    static let r50 = Case(tag: "r50", depth: 50, width: 4, stem: "small")

    /// Model and head loaded from `<tag>_state.npz`, plus the `<tag>_io.npz` arrays.
    func load(_ c: Case) throws -> (ResNet, LinearHead, StateDict, Tensor4, [Int]) {
        let state = try Fixtures.npz("\(c.tag)_state")
        let io = try Fixtures.npz("\(c.tag)_io")
        let model = try ResNet(depth: c.depth, width: c.width, stem: c.stem)
        let head = LinearHead(features: model.featureCount, classes: 10)
        try model.load(state.excluding("fc."))
        try head.load(state.filter { $0.key.hasPrefix("fc.") })
        let xt = io["x"]!
        let x = Tensor4(n: xt.shape[0], c: xt.shape[1], h: xt.shape[2], w: xt.shape[3], data: xt.floats())
        let labels = io["labels"]!.doubles().map { Int($0) }
        return (model, head, io, x, labels)
    }

    /// Train-mode forward, cross-entropy, backward: (loss, logits).
    func trainStep(_ model: ResNet, _ head: LinearHead, _ x: Tensor4, _ labels: [Int]) -> (Float, Matrix) {
        let params = model.parameters + head.parameters
        params.zeroGrad()
        let logits = head.forward(model.forward(x, mode: .train))
        let (loss, dlogits) = CrossEntropy.forward(logits: logits, labels: labels)
        model.backward(head.backward(dlogits))
        return (loss, logits)
    }

    func checkForwardBackward(_ c: Case) throws {
        let (model, head, io, x, labels) = try load(c)
        let eval = head.forward(model.forward(x, mode: .eval))
        assertClose(eval.data, io.floats("logits_eval"), tolerance: 1e-4, "\(c.tag) eval logits")
        // eval leaves the buffers alone
        XCTAssertEqual(model.bn1.numBatchesTracked, Int64(try Fixtures.npz("\(c.tag)_state")["bn1.num_batches_tracked"]!.doubles()[0]))

        let (loss, logits) = trainStep(model, head, x, labels)
        assertClose(logits.data, io.floats("logits_train"), tolerance: 1e-4, "\(c.tag) train logits")
        assertClose([loss], io.floats("loss"), tolerance: 1e-4, "\(c.tag) loss")

        let grads = try Fixtures.npz("\(c.tag)_grads")
        let params = model.parameters + head.parameters
        XCTAssertEqual(params.map(\.name), Array(grads.keys), "parameter order is PyTorch's")
        for p in params { assertClose(p.grad, grads.floats(p.name), tolerance: 1e-3, "\(c.tag) grad \(p.name)") }

        let buffers = try Fixtures.npz("\(c.tag)_buffers")
        let sd = model.stateDict()
        for (key, expected) in buffers {
            guard let got = sd[key] else { XCTFail("no \(key)"); continue }
            if key.hasSuffix("num_batches_tracked") {
                XCTAssertEqual(got.dtype, .int64)
                XCTAssertEqual(got.doubles(), expected.doubles(), key)
            } else {
                assertClose(got.floats(), expected.floats(), tolerance: 1e-4, "\(c.tag) \(key) after train forward")
            }
        }
    }

    func checkOptimisers(_ c: Case) throws {
        let (model, head, _, x, labels) = try load(c)
        _ = trainStep(model, head, x, labels)
        let params = model.parameters + head.parameters
        let start = params.map(\.value)

        let sgd = SGD(parameters: params, lr: 0.1, momentum: 0.9, weightDecay: 1e-4)
        sgd.step(); sgd.step()
        let sgdRef = try Fixtures.npz("\(c.tag)_sgd")
        // the update (after - before) is a gradient quantity: gradient tolerance, relative to its largest magnitude
        for (p, s) in zip(params, start) {
            assertClose(zip(p.value, s).map { $0 - $1 }, zip(sgdRef.floats(p.name), s).map { $0 - $1 }, tolerance: 1e-3, "\(c.tag) SGD update \(p.name)")
        }

        for (p, v) in zip(params, start) { p.value = v }
        let lars = LARS(parameters: params, lr: 0.5, momentum: 0.9, weightDecay: 1e-6, eta: 1e-3)
        lars.step(); lars.step()
        let larsRef = try Fixtures.npz("\(c.tag)_lars")
        for (p, s) in zip(params, start) {
            assertClose(zip(p.value, s).map { $0 - $1 }, zip(larsRef.floats(p.name), s).map { $0 - $1 }, tolerance: 1e-3, "\(c.tag) LARS update \(p.name)")
        }

        let clip = try Fixtures.npz("\(c.tag)_clip")
        let total = clipGradNorm(params, maxNorm: 1.0)
        assertClose([total], clip.floats("total_norm"), tolerance: 1e-4, "\(c.tag) total gradient norm")
        for p in params where p.name == "fc.weight" || p.name == "conv1.weight" {
            assertClose(p.grad, clip.floats("clipped." + p.name), tolerance: 1e-3, "\(c.tag) clipped \(p.name)")
        }
    }

    func testResNet18ForwardBackward() throws { try checkForwardBackward(Self.r18) }
    func testResNet50ForwardBackward() throws { try checkForwardBackward(Self.r50) }
    func testResNet18Optimisers() throws { try checkOptimisers(Self.r18) }
    func testResNet50Optimisers() throws { try checkOptimisers(Self.r50) }

    /// A stored state dict comes back identical: same keys in the same order, dtypes (int64
    /// `num_batches_tracked`), shapes and bytes.
    func testStateDictRoundTrip() throws {
        let state = try Fixtures.npz("r50_state")
        let model = try ResNet(depth: 50, width: 4, stem: "small")
        try model.load(state.excluding("fc."))
        let back = model.stateDict()
        XCTAssertEqual(Array(back.keys), Array(state.excluding("fc.").keys))
        for (k, t) in back { XCTAssertEqual(t, state[k], k) }
        XCTAssertEqual(back.count, 318)  // the 318 entries of docs/bissl.md for a ResNet-50 backbone
    }

    func testStrictLoadingRefusesBadStateDicts() throws {
        let state = try Fixtures.npz("r18_state").excluding("fc.")
        let model = try ResNet(depth: 18, width: 6, stem: "imagenet")
        var missing = state
        missing.removeValue(forKey: "layer2.0.downsample.0.weight")
        XCTAssertThrowsError(try model.load(missing)) { error in
            XCTAssertEqual((error as? ModelError)?.description.contains("missing tensor 'layer2.0.downsample.0.weight'"), true, "\(error)")
        }
        var extra = state
        extra["fc.weight"] = Tensor(float32: [1], shape: [1])
        XCTAssertThrowsError(try model.load(extra))
        var wrong = state
        wrong["conv1.weight"] = Tensor(float32: [Float](repeating: 1, count: 6 * 3 * 3 * 3), shape: [6, 3, 3, 3])
        XCTAssertThrowsError(try model.load(wrong))
        // nothing was changed by the failed loads
        XCTAssertEqual(model.conv1.weight.value, [Float](repeating: 0, count: 6 * 3 * 7 * 7))
        XCTAssertThrowsError(try ResNet(depth: 26))
        XCTAssertThrowsError(try ResNet(depth: 18, stem: "cifar"))
    }
}
