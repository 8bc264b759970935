import Checkpoint
import XCTest
@testable import Engine
import TestSupport

/// Losses against PyTorch autograd (fixture `losses.npz`, computed in float64 then rounded).
final class LossTests: XCTestCase {
    func matrix(_ sd: StateDict, _ key: String) -> Matrix {
        let t = sd[key]!
        return Matrix(rows: t.shape[0], cols: t.shape[1], data: t.floats())
    }

    func testCrossEntropyHardAndSoftTargets() throws {
        let f = try Fixtures.npz("losses")
        let hard = CrossEntropy.forward(logits: matrix(f, "hard_logits"), labels: f["hard_labels"]!.doubles().map { Int($0) })
        assertClose([hard.loss], f.floats("hard_loss"), tolerance: 1e-5, "hard CE loss")
        assertClose(hard.gradient.data, f.floats("hard_grad"), tolerance: 1e-5, "hard CE gradient")
        let soft = CrossEntropy.forward(logits: matrix(f, "soft_logits"), probabilities: matrix(f, "soft_target"))
        assertClose([soft.loss], f.floats("soft_loss"), tolerance: 1e-5, "soft CE loss")
        assertClose(soft.gradient.data, f.floats("soft_grad"), tolerance: 1e-5, "soft CE gradient")
    }

    func testNTXent() throws {
        let f = try Fixtures.npz("losses")
        let r = NTXent.forward(matrix(f, "z"), temperature: 0.5)
        assertClose([r.loss], f.floats("ntxent_loss"), tolerance: 1e-5, "NT-Xent loss")
        assertClose(r.gradient.data, f.floats("ntxent_grad"), tolerance: 1e-5, "NT-Xent gradient")
    }

    func testBYOL() throws {
        let f = try Fixtures.npz("losses")
        let r = BYOLLoss.forward(p1: matrix(f, "p1"), p2: matrix(f, "p2"), t1: matrix(f, "t1"), t2: matrix(f, "t2"))
        assertClose([r.loss], f.floats("byol_loss"), tolerance: 1e-5, "BYOL loss")
        assertClose(r.dp1.data, f.floats("byol_dp1"), tolerance: 1e-5, "BYOL dp1")
        assertClose(r.dp2.data, f.floats("byol_dp2"), tolerance: 1e-5, "BYOL dp2")
    }

    /// ResNet-18 backbone + MLP projector on two concatenated views, NT-Xent: every gradient and
    /// the projector's BN1d running statistics.
    func testSimCLRThroughBackboneAndProjector() throws {
        let state = try Fixtures.npz("simclr_state")
        let f = try Fixtures.npz("simclr")
        let backbone = try ResNet(depth: 18, width: 6, stem: "small")
        let projector = try MLPHead(dims: [48, 32, 32, 16])
        try backbone.load(state.excluding("projector."))
        try projector.load(state.stripping("projector."))
        let x1 = f["x1"]!, x2 = f["x2"]!
        let x = Tensor4(n: 8, c: 3, h: 16, w: 16, data: x1.floats() + x2.floats())
        let z = projector.forward(backbone.forward(x, mode: .train), mode: .train)
        assertClose(z.data, f.floats("z"), tolerance: 1e-4, "projections")
        let (loss, dz) = NTXent.forward(z, temperature: 0.5)
        assertClose([loss], f.floats("loss"), tolerance: 1e-4, "loss")
        backbone.backward(projector.backward(dz))
        for p in backbone.parameters { assertClose(p.grad, f.floats("grad." + p.name), tolerance: 1e-3, "grad \(p.name)") }
        for (i, l) in projector.linears.enumerated() {
            assertClose(l.weight.grad, f.floats("grad.projector." + l.weight.name), tolerance: 1e-3, "grad projector.\(l.weight.name)")
            if i < projector.norms.count {
                let bn = projector.norms[i]
                for p in [bn.weight, bn.bias] {
                    assertClose(p.grad, f.floats("grad.projector." + p.name), tolerance: 1e-3, "grad projector.\(p.name)")
                }
            }
            guard let b = l.bias else { continue }
            // A bias followed by BN has an exactly zero gradient (PyTorch float64: < 1e-12); what is
            // left here is rounding noise, which must be tiny next to the layer's weight gradient.
            XCTAssertLessThan(f.floats("grad.projector." + b.name).map(abs).max()!, 1e-12)
            XCTAssertLessThanOrEqual(b.grad.map(abs).max()!, 1e-4 * l.weight.grad.map(abs).max()!, "grad projector.\(b.name)")
        }
        let sd = projector.stateDict()
        for (k, t) in f.stripping("after.") {
            XCTAssertEqual(sd[k]?.dtype, t.dtype, k)
            assertClose(sd[k]!.floats(), t.floats(), tolerance: 1e-4, "projector \(k)")
        }
    }
}
