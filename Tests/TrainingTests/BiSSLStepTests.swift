import Checkpoint
import Engine
import XCTest
@testable import Training
import TestSupport

/// BiSSL lower and upper steps against the PyTorch reference of tools/bissl_reference.py with the
/// exact (double-backward) Hessian-vector product (fixtures from tools/fixtures/make_bissl_fixtures.py:
/// ResNet-18 width 2, small stem, 16x16 images, projector 16-16-16-8, classifier 16 -> 5).
final class BiSSLStepTests: XCTestCase {
    static let architecture = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small",
                                           heads: ["projector": .init(kind: "mlp", dims: [16, 16, 16, 8])])

    /// (pretext objective over θ_P + φ_P, downstream network θ_D + φ_D) loaded from state.npz.
    func load() throws -> (PretextObjective, Network) {
        let state = try Fixtures.npz("state", area: "bissl")
        let p = try Network(architecture: Self.architecture, seed: 0)
        try p.backbone.load(state.stripping("p."))
        try p.heads["projector"]!.load(state.stripping("projector."))
        var darch = Self.architecture
        darch.heads = ["classifier": .init(kind: "linear", dims: [16, 5])]
        let d = try Network(architecture: darch, seed: 0)
        try d.backbone.load(state.stripping("d."))
        try d.heads["classifier"]!.load(state.stripping("classifier."))
        return (try PretextObjective(method: .simclr, network: p, temperature: 0.5), d)
    }

    func images(_ f: StateDict, _ key: String) -> Tensor4 {
        let v = f.floats(key)
        return Tensor4(n: v.count / 768, c: 3, h: 16, w: 16, data: v)
    }

    /// Every float tensor of `actual` against `expected[prefix + key]` (parameters and BN buffers);
    /// `num_batches_tracked` exactly.
    func assertState(_ actual: StateDict, _ expected: StateDict, prefix: String, tolerance: Float, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        for (key, t) in actual {
            guard let e = expected[prefix + key] else { XCTFail("\(what): fixture lacks \(prefix + key)", file: file, line: line); continue }
            if key.hasSuffix("num_batches_tracked") {
                XCTAssertEqual(t.floats(), e.floats(), "\(what): \(key)", file: file, line: line)
            } else {
                assertClose(t.floats(), e.floats(), tolerance: tolerance, "\(what): \(key)", file: file, line: line)
            }
        }
    }

    func checkLower(_ name: String) throws {
        let f = try Fixtures.npz("lower_\(name)", area: "bissl")
        let (pretext, down) = try load()
        let lam = f.floats("lam")[0], clip = f.floats("clip")[0], lr = f.floats("lr")[0]
        let lower = LowerLevel(pretext: pretext, downstream: down.backbone, lambda: lam, clip: clip, lr: lr)
        let r = lower.step(view1: images(f, "x1"), view2: images(f, "x2"))
        XCTAssertEqual(r.pretextLoss, f.floats("pretext")[0], accuracy: 1e-4 * abs(f.floats("pretext")[0]), "\(name) NT-Xent")
        XCTAssertEqual(r.regulariser, f.floats("reg")[0], accuracy: 1e-4 * abs(f.floats("reg")[0]), "\(name) regulariser")
        XCTAssertEqual(r.gradientNorm, f.floats("norm")[0], accuracy: 1e-3 * f.floats("norm")[0], "\(name) gradient norm")
        XCTAssertGreaterThan(f.floats("norm")[0], clip, "the fixture exercises clipping")
        assertState(pretext.network.backbone.stateDict(), f, prefix: "after.p.", tolerance: 1e-4, "\(name) θ_P after the step")
        assertState(pretext.projector.stateDict(), f, prefix: "after.projector.", tolerance: 1e-4, "\(name) φ_P after the step")
    }

    func testLowerStepDefaults() throws { try checkLower("default") }
    /// λ = 2, clip 1: the regulariser's gradient λ(θ_P − θ_D) is a visible part of the step.
    func testLowerStepStrongRegulariser() throws { try checkLower("strong") }

    /// `||a − b|| / ||b||` and the cosine of a and b (flattened).
    func compare(_ a: [Float], _ b: [Float]) -> (relative: Double, cosine: Double) {
        var d: Double = 0, ab: Double = 0, aa: Double = 0, bb: Double = 0
        for (x, y) in zip(a, b) {
            d += Double(x - y) * Double(x - y); ab += Double(x) * Double(y); aa += Double(x) * Double(x); bb += Double(y) * Double(y)
        }
        return (d.squareRoot() / bb.squareRoot(), ab / (aa * bb).squareRoot())
    }

    /// The port's finite-difference HVP of the pretext loss on B_H, w.r.t. θ_P, against double backward.
    func checkHVP(_ scheme: HessianVectorProduct.Scheme) throws {
        let f = try Fixtures.npz("hvp", area: "bissl")
        let (pretext, _) = try load()
        let before = pretext.network.components()
        let ig = ImplicitGradient(pretext: pretext, options: .init(hvp: scheme))
        ig.setHessianBatch(view1: images(f, "h1"), view2: images(f, "h2"))
        let names = pretext.backboneParameters.map(\.name)
        let hv = ig.hessianVectorProduct(names.map { f.floats("g." + $0) }).flatMap { $0 }
        let (rel, cos) = compare(hv, names.flatMap { f.floats("hg." + $0) })
        print("BiSSL HVP \(scheme): relative error \(rel), cosine \(cos)")
        XCTAssertGreaterThan(cos, 0.999, "\(scheme) HVP cosine")
        XCTAssertLessThan(rel, 2e-2, "\(scheme) HVP relative error")
        XCTAssertEqual(pretext.network.components(), before, "HVP probes leave θ_P, φ_P and BN buffers untouched")
    }

    /// Engine `ActivationPatterns`: replay applies the recorded ReLU masks and max-pool winners even
    /// when the inputs moved across a kink; outside record/replay nothing changes.
    func testActivationPatternsPinReLUMasksAndMaxPoolWinners() {
        let relu = ReLU(), pool = MaxPool2d(kernel: 2, stride: 2, padding: 0)
        let patterns = ActivationPatterns()
        let x0 = Tensor4(n: 1, c: 1, h: 2, w: 2, data: [1, -1, 0.5, 2])
        patterns.record {
            XCTAssertEqual(relu.forward([1, -1]), [1, 0])
            XCTAssertEqual(pool.forward(x0).data, [2])
        }
        XCTAssertEqual(patterns.recordedCalls.relu, 1)
        patterns.replay {
            XCTAssertEqual(relu.forward([-2, 3]), [-2, 0], "mask of the recording: on, off")
            XCTAssertEqual(relu.backward([1, 1]), [1, 0])
            let moved = Tensor4(n: 1, c: 1, h: 2, w: 2, data: [5, -1, 0.5, 2])
            XCTAssertEqual(pool.forward(moved).data, [2], "winner of the recording (index 3), not the new maximum")
            XCTAssertEqual(pool.backward(Tensor4(n: 1, c: 1, h: 1, w: 1, data: [1])).data, [0, 0, 0, 1])
        }
        XCTAssertEqual(relu.forward([-2, 3]), [0, 3], "unpinned again outside replay")
        XCTAssertEqual(relu.backward([1, 1]), [0, 1])
    }

    func testForwardDifferenceHVPAgainstDoubleBackward() throws { try checkHVP(.forward) }
    func testCentralDifferenceHVPAgainstDoubleBackward() throws { try checkHVP(.central) }

    /// One whole upper step from state.npz: u from the reference g (isolates FD-HVP + CG), then the
    /// step itself; the issue's criterion is every θ_D, φ_D value after the step within 1e-3 relative.
    func checkUpper(_ name: String, options: ImplicitGradientOptions, uTolerance: Double) throws {
        let f = try Fixtures.npz("upper_\(name)", area: "bissl")
        let io = try Fixtures.npz("hvp", area: "bissl")
        let (pretext, down) = try load()
        XCTAssertEqual(options.damping, f.floats("delta")[0])
        XCTAssertEqual(options.iterations, Int(f.floats("iters")[0]))
        let ig = ImplicitGradient(pretext: pretext, options: options)
        ig.setHessianBatch(view1: images(io, "h1"), view2: images(io, "h2"))
        let names = pretext.backboneParameters.map(\.name)
        if options.enabled {
            let u = ig.solve(names.map { io.floats("g." + $0) }).flatMap { $0 }
            let (rel, cos) = compare(u, names.flatMap { f.floats("u." + $0) })
            print("BiSSL upper \(name) \(options.hvp): u relative error \(rel), cosine \(cos); ||Hg||/((λ+δ)||g||) ours \(ig.lastRelativeHessianTerm!) reference \(f.floats("ratio")[0])")
            XCTAssertLessThan(rel, uTolerance, "\(name): u")
            XCTAssertEqual(ig.lastRelativeHessianTerm!, Double(f.floats("ratio")[0]), accuracy: 0.01 * Double(f.floats("ratio")[0]))
        }
        let dBefore = down.backbone.parameters.flatMap(\.value)
        let upper = try UpperLevel(pretext: pretext, downstream: down, implicit: ig, clip: 10, lr: 0.05, weightDecay: 1e-3)
        let r = upper.step(images: images(io, "x"), labels: io.floats("y").map { Int($0) })
        XCTAssertEqual(r.lowerPathLoss, f.floats("l1")[0], accuracy: 1e-4 * f.floats("l1")[0])
        XCTAssertEqual(r.directLoss, f.floats("l2")[0], accuracy: 1e-4 * f.floats("l2")[0])
        XCTAssertEqual(r.gradientNorm, f.floats("norm")[0], accuracy: Float(uTolerance) * f.floats("norm")[0], "\(name): assembled gradient norm")
        XCTAssertGreaterThan(f.floats("norm")[0], 10, "the fixture exercises clipping")
        // the issue's criterion: (θ_D, φ_D) after the step within 1e-3 relative (vector norm)
        let after = down.backbone.parameters.flatMap(\.value) + down.heads["classifier"]!.parameters.flatMap(\.value)
        let refAfter = down.backbone.parameters.flatMap { f.floats("after.d." + $0.name) }
            + down.heads["classifier"]!.parameters.flatMap { f.floats("after.classifier." + $0.name) }
        let paramError = compare(after, refAfter).relative
        print("BiSSL upper \(name) \(options.hvp): (θ_D, φ_D) after the step relative error \(paramError)")
        XCTAssertLessThan(paramError, 1e-3, "\(name): parameters after the step")
        // BN running statistics of θ_D (the l2 forward), per tensor
        assertState(down.backbone.stateDict().filter { $0.key.contains("running") || $0.key.contains("num_batches") }, f,
                    prefix: "after.d.", tolerance: 1e-4, "\(name) θ_D buffers")
        // θ_P: only its BN running statistics moved (the l1 forward); the HVP probes left no trace
        let pAfter = pretext.network.backbone.stateDict()
        assertState(pAfter.filter { $0.key.contains("running") || $0.key.contains("num_batches") }, f, prefix: "after.p.",
                    tolerance: 1e-4, "\(name) θ_P buffers")
        // the update itself (after − before), a finer check than the parameters
        let step = zip(down.backbone.parameters.flatMap(\.value), dBefore).map { $0 - $1 }
        let refStep = zip(down.backbone.parameters.flatMap { f.floats("after.d." + $0.name) }, dBefore).map { $0 - $1 }
        let (rel, cos) = compare(step, refStep)
        print("BiSSL upper \(name) \(options.hvp): θ_D update relative error \(rel), cosine \(cos)")
        XCTAssertLessThan(rel, options.enabled ? 3 * uTolerance : 1e-4, "\(name): θ_D update")
    }

    // Layer-wise CG with the FORWARD-difference HVP is not checked against the reference: on this
    // net its u is chaotic in the HVP's 3e-3 error (measured: u from the reference g 2.3% off, the
    // whole step's θ_D update 50% off), see docs/bissl.md. The central scheme is the default.
    func testUpperStepLayerwiseCGCentralHVP() throws {
        try checkUpper("layerwise", options: .init(iterations: 2, solver: .layerwise, hvp: .central), uTolerance: 1e-2)
    }
    func testUpperStepGlobalCGForwardHVP() throws {
        try checkUpper("global", options: .init(solver: .global, hvp: .forward), uTolerance: 2e-2)
    }
    func testUpperStepGlobalCGCentralHVP() throws {
        try checkUpper("global", options: .init(solver: .global, hvp: .central), uTolerance: 5e-3)
    }
    func testUpperStepNoIJ() throws { try checkUpper("noij", options: .init(enabled: false), uTolerance: 1e-4) }
}
