import XCTest
@testable import Engine
import CKernels
import TestSupport

/// `Conv2d.infer`'s epilogue on the direct 3x3 path, applied by the C kernels as they store each output
/// (the masked vector stores of `.lanes`, the tile stores of `.byPosition`), against the same operations
/// done here on `forward`'s output: `v + shift[o]`, `+ residual`, then ReLU's rule.
final class ConvolutionEpilogueTests: XCTestCase {
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { _ in rng.uniform(-1, 1) }
    }

    /// With a scale of 1 the folded weight is the weight itself (w * 1 is exact), and both paths form each
    /// sum with the same kernel in the same order, so the results must agree bit for bit (tolerance 0): a
    /// value stored at the wrong place, a dropped or extra epilogue step, another order of the two additions
    /// or another ReLU rule (NaN kept, -0 to +0) shows. Shapes: `.lanes` on planes 4 to 33 wide (vectors
    /// across rows, a short last vector) with 3 to 128 input channels, `.byPosition` at stride 2;
    /// a NaN in the residual must reach its output through the ReLU.
    func testDirectEpilogueEqualsTheSeparateOperations() {
        let saved = DirectConvolution.level
        defer { DirectConvolution.level = saved }
        let cases: [(n: Int, c: Int, o: Int, h: Int, w: Int, s: Int)] = [
            (3, 8, 8, 32, 33, 1), (37, 4, 8, 16, 17, 1), (101, 4, 4, 8, 8, 1), (5, 3, 8, 9, 11, 1),
            (6, 32, 64, 4, 4, 1), (9, 16, 16, 5, 4, 1), (2, 128, 128, 4, 4, 1), (3, 8, 12, 7, 5, 1),
            (4, 8, 16, 9, 11, 2), (3, 16, 64, 8, 8, 2),
        ]
        for level in [Int32(BISSL_LEVEL_AVX2), Int32(BISSL_LEVEL_AVX512)] where level <= DirectConvolution.supportedLevel {
            DirectConvolution.level = level
            for t in cases {
                let conv = Conv2d(name: "", inChannels: t.c, outChannels: t.o, kernel: 3, stride: t.s, padding: 1)
                // every case on the direct path at AVX-512; at AVX2 the stride-2 ones and 128 channels run im2col + GEMM
                if level == BISSL_LEVEL_AVX512 {
                    XCTAssertNotNil(DirectConvolution.kernel(for: .forward, kernel: 3, stride: t.s, padding: 1, width: t.w,
                                                             inputChannels: t.c, outputChannels: t.o), "\(t): not on the direct path")
                }
                conv.weight.value = values(conv.weight.count, seed: 1)
                let x = Tensor4(n: t.n, c: t.c, h: t.h, w: t.w, data: values(t.n * t.c * t.h * t.w, seed: 2))
                let y = conv.forward(x)
                let shift = values(t.o, seed: 3), ones = [Float](repeating: 1, count: t.o)
                var residual = Tensor4(n: y.n, c: y.c, h: y.h, w: y.w, data: values(y.count, seed: 4))
                residual.data[y.count / 2] = .nan
                for (withResidual, relu) in [(false, false), (false, true), (true, false), (true, true)] {
                    let got = conv.infer(x, scale: ones, shift: shift, adding: withResidual ? residual : nil, relu: relu)
                    let p = y.h * y.w
                    var want = y.data
                    for i in want.indices {
                        var v = want[i] + shift[(i / p) % t.o]
                        if withResidual { v += residual.data[i] }
                        want[i] = relu ? (v <= 0 ? 0 : v) : v
                    }
                    XCTAssertEqual(got.shape, y.shape)
                    XCTAssertEqual(got.data.map(\.bitPattern), want.map(\.bitPattern),
                                   "\(t) level \(level) residual \(withResidual) relu \(relu)")
                    if withResidual { XCTAssertTrue(got.data[y.count / 2].isNaN) }
                }
                // infer keeps its folded weights (and their by-position layout) between calls: a weight changed
                // in place, as an optimiser step does, must be seen by the next call
                for i in conv.weight.value.indices { conv.weight.value[i] *= -1 }
                let y2 = conv.forward(x), p = y2.h * y2.w
                let got2 = conv.infer(x, scale: ones, shift: shift, relu: false)
                XCTAssertEqual(got2.data.map(\.bitPattern), y2.data.indices.map { (y2.data[$0] + shift[($0 / p) % t.o]).bitPattern },
                               "\(t) level \(level) after the weight changed")
            }
        }
    }
}
