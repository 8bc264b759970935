import XCTest
@testable import Engine
import TestSupport

/// The input gradient of 1x1 stride-1 convolutions: one image per chunk written in place from
/// `Conv2d.oneImageColumns` pixels, chunks of several images moved into NCHW below it.
final class InputGradientChunkTests: XCTestCase {
    func values(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { _ in rng.uniform(-1, 1) * scale }
    }

    /// Hostile gradients: magnitudes from 1e-30 to 1e30 in one plane (sums that cancel down to the small
    /// values), exact zeros of both signs.
    func hostile(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { i in
            let v: Float = rng.uniform(-1, 1)
            switch i % 5 {
            case 0: return v * 1e30
            case 1: return v * 1e-30
            case 2: return i % 2 == 0 ? 0 : -0.0
            default: return v
            }
        }
    }

    /// Planes above (12x12, 16x8) and below (6x6, 3x3) `oneImageColumns`, batches that leave a short last
    /// chunk. dx against the definition `dx[b, c, i, j] = Σ_o w[o, c] dy[b, o, i, j]` in Double. Bound per
    /// value: the float32 sum of O products in any order is within γ_O Σ|w dy| of the exact sum (Higham,
    /// "Accuracy and Stability of Numerical Algorithms", 2nd ed., §3.1), γ_O = O u / (1 - O u), u = 2^-24;
    /// the Double definition's own rounding (γ_O in 2^-53) is far below it. No overflow: |w| ≤ 1, so
    /// |Σ| ≤ O · 1e30 < 3.4e38.
    /// And bit for bit (tolerance 0): each image's dx from the batch equals that image's dx alone (a batch of
    /// one, one GEMM over its own columns in place): the chunks split the products by columns only and the
    /// move is `col2im`'s `0 + v`, so the batch size and the chunking change no value.
    func testOneByOneInputGradientsMatchTheDefinitionAndEachImageAlone() {
        for (n, c, o, h, w) in [(3, 5, 6, 12, 12), (5, 4, 7, 16, 8), (9, 4, 3, 6, 6), (11, 6, 5, 3, 3), (2, 3, 4, 12, 12)] {
            for data in ["uniform", "hostile"] {
                let conv = Conv2d(name: "", inChannels: c, outChannels: o, kernel: 1)
                conv.weight.value = values(o * c, seed: 1)
                let x = Tensor4(n: n, c: c, h: h, w: w, data: values(n * c * h * w, seed: 2))
                let count = n * o * h * w
                let dy = Tensor4(n: n, c: o, h: h, w: w, data: data == "uniform" ? values(count, seed: 3) : hostile(count, seed: 3))
                _ = conv.forward(x)
                guard let dx = conv.backward(dy) else { return XCTFail("no input gradient") }
                XCTAssertEqual(dx.shape, [n, c, h, w])
                let p = h * w, u = 0x1p-24, gamma = Double(o) * u / (1 - Double(o) * u)
                for b in 0..<n { for ci in 0..<c { for i in 0..<p {
                    var exact = 0.0, magnitude = 0.0
                    for oc in 0..<o {
                        let t = Double(conv.weight.value[oc * c + ci]) * Double(dy.data[(b * o + oc) * p + i])
                        exact += t; magnitude += abs(t)
                    }
                    let got = Double(dx.data[(b * c + ci) * p + i])
                    XCTAssertLessThanOrEqual(abs(got - exact), gamma * magnitude, "\(data) \(h)x\(w) n\(n) at \(b) \(ci) \(i)")
                } } }
                for b in 0..<n {
                    let alone = Conv2d(name: "", inChannels: c, outChannels: o, kernel: 1)
                    alone.weight.value = conv.weight.value
                    _ = alone.forward(Tensor4(n: 1, c: c, h: h, w: w, data: Array(x.data[(b * c * p)..<((b + 1) * c * p)])))
                    let one = alone.backward(Tensor4(n: 1, c: o, h: h, w: w, data: Array(dy.data[(b * o * p)..<((b + 1) * o * p)])))!
                    let mine = Array(dx.data[(b * c * p)..<((b + 1) * c * p)])
                    XCTAssertEqual(mine.map(\.bitPattern), one.data.map(\.bitPattern), "\(data) \(h)x\(w) n\(n) image \(b)")
                }
            }
        }
    }
}
