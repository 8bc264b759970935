import Checkpoint
import Engine
import TestSupport
import XCTest
@testable import Training

/// Exact Hessian-vector products (forward-over-reverse, the default of `ImplicitGradient`) against
/// PyTorch double backward: fixtures `bissl/hvp_<net>_<method>.npz` from tools/fixtures/make_hvp_fixtures.py
/// (ResNet-18 width 2 imagenet stem at 40x40, ResNet-50 width 2 small stem at 16x16; SimCLR and BYOL;
/// B_H 4 + 4 views; directions g and later search directions of a real upper step's global CG).
final class ExactHVPTests: XCTestCase {
    /// The bar. Derivation: the reference is float64 (exact to ~1e-15 for this purpose); a float32
    /// implementation carries rounding noise. The fixture stores PyTorch's OWN float32 double-backward
    /// error on the same case (`f32_spread`, 4e-6 to 2e-5 here); our products are the same float32
    /// operations in another order (other GEMM kernels, other summation orders), so their error has
    /// that magnitude, whatever the kernel. The bar is asserted to be at least 4x that spread; a wrong
    /// tangent rule gives errors of order 1 and cannot pass.
    static let tolerance = 1e-4

    func check(_ tag: String, depth: Int, stem: String, method: PretextObjective.Method, directions: [Int]) throws {
        let f = try Fixtures.npz("hvp_\(tag)", area: "bissl")
        let spec = ResNet.depths[depth]!
        let features = 2 * 8 * (spec.block == "bottleneck" ? 4 : 1)
        var heads: [String: Architecture.Head] = ["projector": .init(kind: "mlp", dims: [features, 16, 16, 8])]
        if method == .byol { heads["predictor"] = .init(kind: "mlp", dims: [8, 16, 8]) }
        let network = try Network(architecture: Architecture(depth: depth, block: spec.block, layers: spec.layers, width: 2,
                                                             stem: stem, heads: heads), seed: 0)
        try network.backbone.load(f.stripping("state.backbone."))
        try network.heads["projector"]!.load(f.stripping("state.projector."))
        if method == .byol { try network.heads["predictor"]!.load(f.stripping("state.predictor.")) }
        let pretext = try PretextObjective(method: method, network: network, temperature: 0.5)
        if method == .byol {
            try pretext.targetBackbone!.load(f.stripping("state.target."))
            try pretext.targetProjector!.load(f.stripping("state.target_projector."))
        }
        let side = Int(Double(f.floats("x1").count / 12).squareRoot())
        func view(_ key: String) -> Tensor4 { Tensor4(n: 4, c: 3, h: side, w: side, data: f.floats(key)) }
        let ig = ImplicitGradient(pretext: pretext, options: .init())
        XCTAssertEqual(ig.options.hvp, .exact, "exact is the default")
        ig.setHessianBatch(view1: view("x1"), view2: view("x2"))
        let names = pretext.backboneParameters.map(\.name)
        let spread = f.floats("f32_spread")
        for (i, k) in directions.enumerated() {
            XCTAssertLessThanOrEqual(4 * Double(spread[i]), Self.tolerance, "the bar is at least 4x PyTorch's float32 spread")
            let hv = ig.hessianVectorProduct(names.map { f.floats("v\(k)." + $0) }).flatMap { $0 }
            let (rel, cos) = compare(hv, names.flatMap { f.floats("hv\(k)." + $0) })
            print("exact HVP \(tag) direction \(k): relative error \(rel) (PyTorch float32: \(spread[i])), cosine \(cos)")
            XCTAssertLessThanOrEqual(rel, Self.tolerance, "\(tag): H v\(k)")
        }
        XCTAssertEqual(ig.gradientEvaluations, 1, "one recorded primal pass")
        XCTAssertEqual(ig.tangentEvaluations, directions.count)
    }

    func testResNet18ImagenetStemSimCLR() throws { try check("r18_simclr", depth: 18, stem: "imagenet", method: .simclr, directions: [0, 2, 4]) }
    func testResNet18ImagenetStemBYOL() throws { try check("r18_byol", depth: 18, stem: "imagenet", method: .byol, directions: [0, 2, 4]) }
    func testResNet50SmallStemSimCLR() throws { try check("r50_simclr", depth: 50, stem: "small", method: .simclr, directions: [0, 4]) }
    func testResNet50SmallStemBYOL() throws { try check("r50_byol", depth: 50, stem: "small", method: .byol, directions: [4]) }

    /// The products' copy of the pretext model is made at the first `setHessianBatch` and reused: after the
    /// online weights, BYOL's target and the BN buffers moved, a second `setHessianBatch` gives the products
    /// of a fresh `ImplicitGradient` bit for bit (a stale weight anywhere in the copy changes them).
    func testHessianBatchAfterTheWeightsMoved() throws {
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small",
                                heads: ["projector": .init(kind: "mlp", dims: [16, 16, 8]), "predictor": .init(kind: "mlp", dims: [8, 16, 8])])
        let pretext = try PretextObjective(method: .byol, network: try Network(architecture: arch, seed: 0), temperature: 0.5, emaDecay: 0.5)
        var rng = SeededRNG(seed: 1)
        func tensor(_ count: Int) -> [Float] { (0..<count).map { _ in rng.normal() } }
        let view1 = Tensor4(n: 4, c: 3, h: 8, w: 8, data: tensor(4 * 3 * 64)), view2 = Tensor4(n: 4, c: 3, h: 8, w: 8, data: tensor(4 * 3 * 64))
        let v = pretext.backboneParameters.map { tensor($0.count) }
        let reused = ImplicitGradient(pretext: pretext, options: .init())
        reused.setHessianBatch(view1: view1, view2: view2)
        let before = reused.hessianVectorProduct(v)
        for p in pretext.parameters { p.value = p.value.map { $0 * 1.25 + 0.01 } }
        pretext.lossAndGradient(view1: view1, view2: view2, mode: .train, updateEMA: true)   // moves the target and the BN buffers
        reused.setHessianBatch(view1: view1, view2: view2)
        let fresh = ImplicitGradient(pretext: pretext, options: .init())
        fresh.setHessianBatch(view1: view1, view2: view2)
        let after = reused.hessianVectorProduct(v)
        XCTAssertEqual(after, fresh.hessianVectorProduct(v))
        XCTAssertNotEqual(after, before, "the weights moved")
    }

    /// `||a − b|| / ||b||` and the cosine (Double accumulation).
    func compare(_ a: [Float], _ b: [Float]) -> (Double, Double) {
        var d: Double = 0, ab: Double = 0, aa: Double = 0, bb: Double = 0
        for (x, y) in zip(a, b) {
            let x = Double(x), y = Double(y)
            d += (x - y) * (x - y); ab += x * y; aa += x * x; bb += y * y
        }
        return (d.squareRoot() / bb.squareRoot(), ab / (aa * bb).squareRoot())
    }
}
