import Checkpoint
import Engine
import XCTest
@testable import Training
import TestSupport

/// PretextObjective against PyTorch (fixtures of tools/fixtures/make_pretext_fixtures.py): ResNet-18
/// width 4, small stem, 16x16, N = 4 per view, projector 32-24-24-16, BYOL predictor 16-24-24-16.
/// Tolerances: loss 1e-4 relative, gradients 1e-3 of the largest magnitude.
final class PretextObjectiveTests: XCTestCase {
    static let architecture = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small")

    /// The fixture's network: hashed weights (seeds backbone 1, projector 2, predictor 3).
    func network(byol: Bool) throws -> Network {
        var a = Self.architecture
        a.heads = ["projector": .init(kind: "mlp", dims: [32, 24, 24, 16])]
        if byol { a.heads["predictor"] = .init(kind: "mlp", dims: [16, 24, 24, 16]) }
        let net = try Network(architecture: a, seed: 99)
        try net.backbone.load(HashedWeights.filled(net.backbone.stateDict(), seed: 1))
        for (name, seed) in [("projector", UInt64(2)), ("predictor", 3)] {
            if let head = net.heads[name] { try head.load(HashedWeights.filled(head.stateDict(), seed: seed)) }
        }
        return net
    }

    func views() -> (Tensor4, Tensor4) {
        let count = 4 * 3 * 16 * 16
        func x(_ seed: UInt64) -> Tensor4 {
            Tensor4(n: 4, c: 3, h: 16, w: 16, data: HashedWeights.unit(seed: seed, tensor: 0, count: count).map { Float(1.5 * $0) })
        }
        return (x(6), x(7))
    }

    /// Per tensor: `max |ours - ref| <= 1e-3 * scale`, scale = the tensor's largest reference magnitude,
    /// but at least 1e-3 of the largest over all tensors (gradients that are exactly 0 in exact arithmetic,
    /// the Linear biases cancelled by the BN after them, carry only rounding noise; PyTorch's own float32
    /// run differs from its float64 one there too).
    func assertTensorsClose(_ ours: [(String, [Float])], _ f: StateDict, prefix: String, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        let refs = ours.map { f.floats(prefix + $0.0, file: file, line: line) }
        let largest = refs.map { $0.map(abs).max() ?? 0 }.max() ?? 0
        XCTAssertGreaterThan(largest, 0)
        for ((name, a), r) in zip(ours, refs) {
            XCTAssertEqual(a.count, r.count, "\(what) \(name) size", file: file, line: line)
            let scale = max(r.map(abs).max() ?? 0, 1e-3 * largest)
            let err = zip(a, r).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(err, 1e-3 * scale, "\(what) \(name): max error \(err), scale \(scale)", file: file, line: line)
        }
    }

    /// A LARS step (lr 1, eta 1e-3) against the fixture's parameter change. The Linear biases that a BN
    /// follows (`N.bias` of a head but its last layer) have an exactly zero gradient, so their LARS direction
    /// is `wd * p` plus float32 rounding noise of comparable size: only LARS's step length,
    /// `lr * eta * ||p||` on the first step, is defined there, and that is what is compared.
    func assertStep(_ o: PretextObjective, before: [[Float]], _ f: StateDict, _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
        var regular: [(String, [Float])] = []
        for ((name, p), b) in zip(named(o), before) {
            let delta = zip(p.value, b).map { $0 - $1 }
            let head = name.hasPrefix("projector.") || name.hasPrefix("predictor.")
            if head && name.hasSuffix(".bias") {
                let norm = { (x: [Float]) in x.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }
                let ref = norm(f.floats("delta." + name, file: file, line: line))
                XCTAssertEqual(norm(delta), ref, accuracy: 1e-3 * ref, "\(what) \(name) step length", file: file, line: line)
            } else {
                regular.append((name, delta))
            }
        }
        assertTensorsClose(regular, f, prefix: "delta.", what, file: file, line: line)
    }

    func assertLoss(_ loss: Float, _ f: StateDict, file: StaticString = #filePath, line: UInt = #line) {
        let ref = f.floats("loss", file: file, line: line)[0]
        XCTAssertEqual(loss, ref, accuracy: 1e-4 * abs(ref), "loss", file: file, line: line)
    }

    func named(_ o: PretextObjective) -> [(String, Parameter)] {
        o.backboneParameters.map { ($0.name, $0) } + o.projector.parameters.map { ("projector." + $0.name, $0) }
            + (o.predictor?.parameters.map { ("predictor." + $0.name, $0) } ?? [])
    }

    func testSimCLRLossGradientsAndBuffers() throws {
        let f = try Fixtures.npz("simclr_grads", area: "pretext")
        let o = try PretextObjective(method: .simclr, network: try network(byol: false), temperature: 0.5)
        XCTAssertNil(o.targetBackbone)
        XCTAssertTrue(o.targetParameters.isEmpty)
        let (x1, x2) = views()
        o.parameters.zeroGrad()
        let loss = o.lossAndGradient(view1: x1, view2: x2, mode: .train, updateEMA: true)
        assertLoss(loss, f)
        assertTensorsClose(named(o).map { ($0.0, $0.1.grad) }, f, prefix: "grad.", "SimCLR gradient")
        let sd = o.network.backbone.stateDict(), psd = o.projector.stateDict()
        for k in PretextObjectiveTests.someBN {
            assertClose(sd[k]!.floats(), f.floats("after." + k), tolerance: 1e-4, "BN buffer \(k)")
        }
        for (k, t) in psd where k.contains("running") {
            assertClose(t.floats(), f.floats("after.projector." + k), tolerance: 1e-4, "projector buffer \(k)")
        }
        // gradients accumulate: a second call with the same weights and frozen statistics doubles them
        let first = o.parameters.flatMap(\.grad)
        o.lossAndGradient(view1: x1, view2: x2, mode: .trainFrozenStatistics, updateEMA: false)
        assertClose(o.parameters.flatMap(\.grad), first.map { 2 * $0 }, tolerance: 1e-5, "accumulated gradients")
    }

    static let someBN = ["bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_var", "layer3.0.downsample.1.running_mean"]

    func testSimCLRLARSStep() throws {
        let f = try Fixtures.npz("simclr_step", area: "pretext")
        let o = try PretextObjective(method: .simclr, network: try network(byol: false), temperature: 0.5)
        let (x1, x2) = views()
        let before = o.parameters.map(\.value)
        let lars = LARS(parameters: o.parameters, lr: 1.0, momentum: 0.9, weightDecay: 1e-6, eta: 1e-3)
        o.parameters.zeroGrad()
        o.lossAndGradient(view1: x1, view2: x2, mode: .train, updateEMA: true)
        lars.step()
        assertStep(o, before: before, f, "SimCLR LARS step")
    }

    /// Loads the fixture's BYOL target (seeds 4 and 5: different from the online network).
    func loadFixtureTarget(_ o: PretextObjective) throws {
        try o.targetBackbone!.load(HashedWeights.filled(o.targetBackbone!.stateDict(), seed: 4))
        try o.targetProjector!.load(HashedWeights.filled(o.targetProjector!.stateDict(), seed: 5))
    }

    func testBYOLLossGradientsAndTargetAfterEMA() throws {
        let f = try Fixtures.npz("byol_grads", area: "pretext")
        let ft = try Fixtures.npz("byol_target", area: "pretext")
        let o = try PretextObjective(method: .byol, network: try network(byol: true), emaDecay: 0.9)
        // a fresh objective's target is a copy of the online backbone and projector
        XCTAssertEqual(o.targetBackbone!.stateDict(), o.network.backbone.stateDict())
        XCTAssertEqual(o.targetProjector!.stateDict(), o.projector.stateDict())
        try loadFixtureTarget(o)
        let targetBefore = o.targetParameters.map(\.value)
        let (x1, x2) = views()
        o.parameters.zeroGrad()
        o.targetParameters.zeroGrad()
        let loss = o.lossAndGradient(view1: x1, view2: x2, mode: .train, updateEMA: true)
        assertLoss(loss, f)
        assertTensorsClose(named(o).map { ($0.0, $0.1.grad) }, f, prefix: "grad.", "BYOL gradient")
        let tnamed = o.targetBackbone!.parameters.map(\.name) + o.targetProjector!.parameters.map { "projector." + $0.name }
        let tdelta = zip(zip(tnamed, o.targetParameters), targetBefore).map { ($0.0.0, zip($0.0.1.value, $0.1).map { $0 - $1 }) }
        assertTensorsClose(tdelta, ft, prefix: "target_delta.", "BYOL target EMA")
        // the target received no gradient, is not among the trained parameters, and its BN buffers
        // moved by the train-mode forward (not by the EMA)
        for p in o.targetParameters { XCTAssertTrue(p.grad.allSatisfy { $0 == 0 }, "target \(p.name) has a gradient") }
        let trained = Set(o.parameters.map { ObjectIdentifier($0) })
        XCTAssertTrue(o.targetParameters.allSatisfy { !trained.contains(ObjectIdentifier($0)) })
        let tsd = o.targetBackbone!.stateDict()
        for k in Self.someBN {
            assertClose(tsd[k]!.floats(), ft.floats("after.target." + k), tolerance: 1e-4, "target BN buffer \(k)")
        }
        for (k, t) in o.targetProjector!.stateDict() where k.contains("running") {
            assertClose(t.floats(), ft.floats("after.target.projector." + k), tolerance: 1e-4, "target projector buffer \(k)")
        }
    }

    func testBYOLLARSStep() throws {
        let f = try Fixtures.npz("byol_step", area: "pretext")
        let o = try PretextObjective(method: .byol, network: try network(byol: true), emaDecay: 0.9)
        try loadFixtureTarget(o)
        let (x1, x2) = views()
        let before = o.parameters.map(\.value)
        let lars = LARS(parameters: o.parameters, lr: 1.0, momentum: 0.9, weightDecay: 1e-6, eta: 1e-3)
        o.parameters.zeroGrad()
        o.lossAndGradient(view1: x1, view2: x2, mode: .train, updateEMA: true)
        lars.step()
        assertStep(o, before: before, f, "BYOL LARS step")
    }

    /// HVP-probe mode: no EMA, no BN running-statistics change anywhere (online or target).
    func testFrozenStatisticsWithoutEMALeavesStateUntouched() throws {
        let o = try PretextObjective(method: .byol, network: try network(byol: true), emaDecay: 0.5)
        try loadFixtureTarget(o)
        let online = o.network.components()
        let target = (o.targetBackbone!.stateDict(), o.targetProjector!.stateDict())
        let (x1, x2) = views()
        o.lossAndGradient(view1: x1, view2: x2, mode: .trainFrozenStatistics, updateEMA: false)
        XCTAssertEqual(o.network.components(), online)
        XCTAssertEqual(o.targetBackbone!.stateDict(), target.0)
        XCTAssertEqual(o.targetProjector!.stateDict(), target.1)
        // resetTarget copies the online network again (parameters and buffers)
        o.resetTarget()
        XCTAssertEqual(o.targetBackbone!.stateDict(), o.network.backbone.stateDict())
        XCTAssertEqual(o.targetProjector!.stateDict(), o.projector.stateDict())
    }

    func testMissingHeadsAreRefused() throws {
        var a = Self.architecture
        a.heads = ["projector": .init(kind: "mlp", dims: [32, 24, 16])]
        let net = try Network(architecture: a, seed: 1)
        XCTAssertNoThrow(try PretextObjective(method: .simclr, network: net))
        XCTAssertThrowsError(try PretextObjective(method: .byol, network: net)) { e in
            XCTAssertTrue("\(e)".contains("predictor"), "\(e)")
        }
        a.heads = ["projector": .init(kind: "mlp", dims: [64, 16])]
        XCTAssertThrowsError(try PretextObjective(method: .simclr, network: try Network(architecture: a, seed: 1)))
        a.heads = [:]
        XCTAssertThrowsError(try PretextObjective(method: .simclr, network: try Network(architecture: a, seed: 1)))
    }
}

/// The weights of the pretext fixtures, generated on both sides instead of stored (mirrors `unit()` and
/// `fill()` of tools/fixtures/make_pretext_fixtures.py; see its docstring for the rules).
enum HashedWeights {
    /// `u_i in [-1, 1)`: a 32-bit integer hash of (seed, tensor index, i), exact in Double.
    static func unit(seed: UInt64, tensor: UInt64, count: Int) -> [Double] {
        (0..<count).map { i in
            let m: UInt64 = 0xFFFF_FFFF
            var x = (seed &* 0x9E37_79B1 &+ tensor &* 0x85EB_CA77 &+ UInt64(i) &* 0xC2B2_AE3D) & m
            x ^= x >> 15
            x = (x &* 0x2C1B_3C6D) & m
            x ^= x >> 12
            x = (x &* 0x297A_2D39) & m
            x ^= x >> 15
            return Double(x) / 2147483648.0 - 1
        }
    }

    /// `sd` with every float tensor replaced by the generated values (num_batches_tracked = 0).
    static func filled(_ sd: StateDict, seed: UInt64) -> StateDict {
        var out = StateDict()
        var ti: UInt64 = 0
        for (key, t) in sd {
            guard t.dtype == .float32 else { out[key] = Tensor(int64: 0); continue }
            let u = unit(seed: seed, tensor: ti, count: t.count)
            ti += 1
            let s = t.shape
            let v: [Float] = u.map { u in
                if key.hasSuffix("running_var") { return Float(0.75 + 0.25 * u) }
                if key.hasSuffix("running_mean") { return Float(0.1 * u) }
                if s.count == 4 { return Float((6.0 / Double(s[0] * s[2] * s[3])).squareRoot() * u) }
                if s.count == 2 { return Float(u / Double(s[1]).squareRoot()) }
                if key.hasSuffix("weight") { return Float(1 + 0.2 * u) }
                return Float(0.1 * u)
            }
            out[key] = Tensor(float32: v, shape: s)
        }
        return out
    }
}
