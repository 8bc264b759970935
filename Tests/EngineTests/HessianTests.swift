import Checkpoint
import XCTest
@testable import Engine
import TestSupport

/// Finite-difference Hessian-vector products against PyTorch's exact double backward
/// (fixture `hvp.npz`), and the CG solvers against a float64 numpy run (`cg.npz`).
final class HessianTests: XCTestCase {
    func checkHVP(_ scheme: HessianVectorProduct.Scheme) throws {
        let state = try Fixtures.npz("simclr_state")
        let f = try Fixtures.npz("hvp")
        let backbone = try ResNet(depth: 18, width: 6, stem: "small")
        let projector = try MLPHead(dims: [48, 32, 32, 16])
        try backbone.load(state.excluding("projector."))
        try projector.load(state.stripping("projector."))
        let x = Tensor4(n: 8, c: 3, h: 16, w: 16, data: f.floats("x1") + f.floats("x2"))
        let before = (backbone.stateDict(), projector.stateDict())
        let hvp = HessianVectorProduct(parameters: backbone.parameters, scheme: scheme) { mode in
            let z = projector.forward(backbone.forward(x, mode: mode), mode: mode)
            backbone.backward(projector.backward(NTXent.forward(z, temperature: 0.5).gradient))
        }
        let v = backbone.parameters.map { f.floats("v." + $0.name) }
        let hv = hvp.apply(v).flatMap { $0 }
        let ref = backbone.parameters.flatMap { f.floats("hv." + $0.name) }
        var dotp: Double = 0, nh: Double = 0, nr: Double = 0, diff: Double = 0
        for (a, b) in zip(hv, ref) {
            dotp += Double(a) * Double(b); nh += Double(a) * Double(a); nr += Double(b) * Double(b)
            diff += Double(a - b) * Double(a - b)
        }
        let cosine = dotp / (nh.squareRoot() * nr.squareRoot()), relative = diff.squareRoot() / nr.squareRoot()
        XCTAssertGreaterThanOrEqual(cosine, 0.999, "\(scheme) HVP cosine")
        XCTAssertLessThanOrEqual(relative, 1e-2, "\(scheme) HVP relative error")
        // the probes left parameters, running statistics and num_batches_tracked exactly as they were
        XCTAssertEqual(backbone.stateDict(), before.0)
        XCTAssertEqual(projector.stateDict(), before.1)
        XCTAssertEqual(hvp.gradientEvaluations, 2)
        // a second product with the forward scheme reuses the cached gradient: one evaluation
        _ = hvp.apply(v)
        XCTAssertEqual(hvp.gradientEvaluations, scheme == .forward ? 3 : 4)
    }

    func testForwardDifferenceHVP() throws { try checkHVP(.forward) }
    func testCentralDifferenceHVP() throws { try checkHVP(.central) }

    func testConjugateGradientSolvers() throws {
        let f = try Fixtures.npz("cg")
        let a = f.floats("a"), b = f.floats("b")
        let sizes = [3, 5, 2]
        func split(_ x: [Float]) -> [[Float]] {
            var out: [[Float]] = [], i = 0
            for s in sizes { out.append(Array(x[i..<(i + s)])); i += s }
            return out
        }
        var calls = 0
        let op: ([[Float]]) -> [[Float]] = { d in
            calls += 1
            let flat = d.flatMap { $0 }
            return split((0..<10).map { r in (0..<10).reduce(Float(0)) { $0 + a[r * 10 + $1] * flat[$1] } })
        }
        let layerwise = ConjugateGradient.solveLayerwise(op, b: split(b), iterations: 5)
        XCTAssertEqual(calls, 5)
        assertClose(layerwise.flatMap { $0 }, f.floats("layerwise5"), tolerance: 1e-4, "layer-wise CG, 5 iterations")
        let global = ConjugateGradient.solveGlobal(op, b: split(b), iterations: 5)
        assertClose(global.flatMap { $0 }, f.floats("global5"), tolerance: 1e-4, "global CG, 5 iterations")
        // textbook CG solves a 10-dimensional SPD system in 10 iterations
        let exact = ConjugateGradient.solveGlobal(op, b: split(b), iterations: 10)
        assertClose(exact.flatMap { $0 }, f.floats("solution"), tolerance: 1e-3, "global CG, 10 iterations")
    }
}
