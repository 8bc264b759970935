import CKernels
import XCTest
@testable import Engine

/// `bissl_conv3x3_planes` (the correlation read from the NCHW planes at stride 1, from their phase-split
/// copies at stride 2, taps in the padding masked off) against `bissl_conv3x3_by_position` on the zero-padded
/// copies of the same planes, at strides 1 and 2 and every vector level this CPU has. Both sum each output over c, then the taps in (i, j) order, one fused multiply-add
/// per term, and a tap in the padding adds `0 * w` in both (a masked load gives +0, the padded plane
/// holds +0), so the results must be the same bits (tolerance 0): a wrong mask (a lane of the next row or
/// of memory past the plane read), a wrong tap offset, a term's planes taken from the wrong image or an
/// output stored at the wrong place shows (at stride 2 also a wrong phase: odd and even heights and widths).
/// Shapes: planes of one row and one column, widths 1 to 17
/// (vectors across rows and a short last vector at both widths of vector), one and two terms (the tangent
/// rules' sums), 4 to 36 output channels (tiles of 4, 8 and 16), 1 to 7 images (tiles of 4, 2 and 1 images
/// sharing a vector's masks), with the epilogue (shift, residual, ReLU)
/// and without. The planes sit between NaN guards: a read outside them would turn outputs into NaN.
final class PlanesConvolutionTests: XCTestCase {
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { _ in rng.uniform(-1, 1) }
    }

    func testPlanesEqualTheCorrelationOnPaddedPlanes() {
        let levels = [Int32(BISSL_LEVEL_AVX2), Int32(BISSL_LEVEL_AVX512)].filter { $0 <= DirectConvolution.supportedLevel }
        let shapes: [(n: Int, terms: Int, c: Int, o: Int, h: Int, w: Int)] = [
            (2, 1, 3, 8, 1, 17), (2, 1, 5, 16, 17, 1), (3, 2, 4, 8, 4, 4), (2, 1, 7, 24, 5, 3), (3, 1, 16, 32, 8, 8),
            (2, 2, 6, 16, 9, 11), (1, 1, 2, 8, 2, 2), (2, 1, 9, 8, 13, 16), (2, 1, 3, 16, 3, 3),
            (5, 1, 8, 16, 4, 4), (6, 2, 3, 16, 7, 9), (7, 1, 4, 24, 8, 32), (4, 1, 5, 8, 2, 17),
        ]
        for level in levels {
            for t in shapes { for stride in [1, 2] {
                let C = t.terms * t.c, p = t.h * t.w, guardCount = 64
                let q = ((t.h - 1) / stride + 1) * ((t.w - 1) / stride + 1)   // output positions
                // each term's batch between NaN guards
                let inputs = (0..<t.terms).map { k -> [Float] in
                    let nan = [Float](repeating: .nan, count: guardCount)
                    return nan + values(t.n * t.c * p, seed: UInt64(10 + k)) + nan
                }
                let w = values(t.o * C * 9, seed: 3), shift = values(t.o, seed: 4), residual = values(t.n * t.o * q, seed: 5)
                for epilogue in [false, true] {
                    let got = run(level, inputs, guardCount, t, stride, w, epilogue ? shift : nil, epilogue ? residual : nil, planes: true)
                    let want = run(level, inputs, guardCount, t, stride, w, epilogue ? shift : nil, epilogue ? residual : nil, planes: false)
                    XCTAssertFalse(got.contains { $0.isNaN }, "\(t) stride \(stride) level \(level): a value outside the planes was read")
                    XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(t) stride \(stride) level \(level) epilogue \(epilogue)")
                }
            } }
        }
    }

    /// `[n, o, h, w]` from the planes kernel (`planes`) or from the by-position kernel on padded copies.
    func run(_ level: Int32, _ inputs: [[Float]], _ guardCount: Int, _ t: (n: Int, terms: Int, c: Int, o: Int, h: Int, w: Int),
             _ stride: Int, _ w: [Float], _ shift: [Float]?, _ residual: [Float]?, planes: Bool) -> [Float] {
        let p = t.h * t.w, C = t.terms * t.c, ho = (t.h - 1) / stride + 1, wo = (t.w - 1) / stride + 1, q = ho * wo
        var out = [Float](repeating: -7, count: t.n * t.o * q)
        withBaseAddresses(inputs) { bases in
            let images: [UnsafePointer<Float>?] = (0..<t.terms).flatMap { k in (0..<t.n).map { bases[k] + guardCount + $0 * t.c * p } }
            w.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    withOptional(shift) { sp in
                        withOptional(residual) { rp in
                            var y = bissl_output(out: op.baseAddress!, images: t.n, height: ho, width: wo, channelStride: q,
                                                 imageStride: t.o * q, shift: sp, residual: rp, relu: 1)
                            if planes {
                                bissl_conv3x3_planes(level, images, t.terms, t.c, t.h, t.w, stride, wp.baseAddress!, t.o, &y)
                                return
                            }
                            let layout = DirectConvolution.Layout(images: t.n, h: t.h, w: t.w, pieces: 1)
                            XCTAssertEqual(layout.chunkCount, 1)
                            var padded = [Float](repeating: 0, count: C * layout.plane)
                            padded.withUnsafeMutableBufferPointer { pp in
                                for k in 0..<t.terms {
                                    bissl_pad_planes(Array(images[(k * t.n)..<((k + 1) * t.n)]), t.n, t.c, t.h, t.w, layout.plane,
                                                     pp.baseAddress! + k * t.c * layout.plane)
                                }
                            }
                            let windows = layout.windows(stride: stride, ho: ho, wo: wo)
                            let places = (0..<(t.n * q)).map { ($0 / q) * t.o * q + $0 % q }
                            let transposed = DirectConvolution.outputChannelsInnermost(wp.baseAddress!, outChannels: t.o, inChannels: C)
                            bissl_conv3x3_by_position(level, padded, C, layout.plane, layout.row, windows, t.n * q, transposed, t.o,
                                                      &y, places)
                        }
                    }
                }
            }
        }
        return out
    }

    func withOptional<R>(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let a else { return body(nil) }
        return a.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
