import XCTest
@testable import Engine
import TestSupport

/// The one-image chunks of 1x1 stride-1 forwards (`Conv2d.oneImageColumns`) and im2col's stride-2 rows,
/// against definitions written here in Double.
final class OneImageChunkTests: XCTestCase {
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { _ in rng.uniform(-1, 1) }
    }

    /// Forward of 1x1 stride-1 convolutions on planes above and below `oneImageColumns` (one image per
    /// chunk, in place; chunks of several images), and of stride-2 convolutions with long output rows (the
    /// 7x7 stem, a 3x3 and the 1x1 downsample), against the definition in Double. Bound per output: the float32 sum of K
    /// products in any order is within γ_K Σ|w x| of the exact sum (Higham, "Accuracy and Stability of
    /// Numerical Algorithms", 2nd ed., §3.1), γ_K = K u / (1 - K u), u = 2^-24; the definition's own
    /// Double rounding (≤ γ_K in 2^-53) is far below it.
    func testStrideTwoAndOneImageForwardsMatchTheDefinition() {
        for (n, c, o, h, w, k, s, p) in [(2, 3, 4, 9, 45, 7, 2, 3), (2, 3, 5, 6, 40, 3, 2, 1), (2, 5, 6, 4, 37, 1, 2, 0),
                                         (3, 5, 6, 12, 12, 1, 1, 0), (5, 4, 3, 8, 16, 1, 1, 0), (9, 4, 3, 5, 5, 1, 1, 0)] {
            let conv = Conv2d(name: "", inChannels: c, outChannels: o, kernel: k, stride: s, padding: p)
            conv.weight.value = values(o * c * k * k, seed: 1)
            let x = Tensor4(n: n, c: c, h: h, w: w, data: values(n * c * h * w, seed: 2))
            let y = conv.forward(x)
            let ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1, K = c * k * k
            XCTAssertEqual(y.shape, [n, o, ho, wo])
            let u = 0x1p-24, gamma = Double(K) * u / (1 - Double(K) * u)
            var worst = 0.0
            for b in 0..<n { for oc in 0..<o { for i in 0..<ho { for j in 0..<wo {
                var exact = 0.0, magnitude = 0.0
                for ci in 0..<c { for a in 0..<k { for bb in 0..<k {
                    let ih = i * s - p + a, iw = j * s - p + bb
                    guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                    let t = Double(conv.weight.value[((oc * c + ci) * k + a) * k + bb]) * Double(x.data[((b * c + ci) * h + ih) * w + iw])
                    exact += t; magnitude += abs(t)
                } } }
                let got = Double(y.data[((b * o + oc) * ho + i) * wo + j])
                XCTAssertLessThanOrEqual(abs(got - exact), gamma * magnitude, "k\(k) s\(s) \(h)x\(w) at \(b) \(oc) \(i) \(j)")
                worst = max(worst, abs(got - exact) / max(gamma * magnitude, .leastNormalMagnitude))
            } } } }
            XCTAssertLessThanOrEqual(worst, 1)
        }
    }
}
