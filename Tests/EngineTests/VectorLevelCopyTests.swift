import CKernels
import XCTest
@testable import Engine
import TestSupport

/// `bissl_im2col` and `MaxPool2d.infer` (Sources/CKernels/im2col.c) and `bissl_store_rows`
/// (Sources/CKernels/gemm_output.c) at every vector level this CPU has, the x86-64 baseline included. They
/// move, compare or add values in a fixed order, so they are checked with tolerance 0 (bit patterns): im2col
/// and the epilogue against their definitions written here, the inference pool against `MaxPool2d.forward`.
final class VectorLevelCopyTests: XCTestCase {
    let levels = [Int32(BISSL_LEVEL_BASELINE), Int32(BISSL_LEVEL_AVX2), Int32(BISSL_LEVEL_AVX512)]
        .filter { $0 <= DirectConvolution.supportedLevel }

    func values(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { _ in rng.uniform(-1, 1) }
    }

    /// The stem (7x7/2 pad 3, also on a 2x2 image whose first taps read only padding), strided 3x3 and 1x1
    /// convolutions, "same" 3x3 convolutions on small planes (the contiguous run with its wrapped edges
    /// zeroed), a 5x5 without padding and a 3x3/3, on chunks of 1-3 images; every value of `cols` is
    /// first set to NaN, so a value left unwritten fails the test.
    func testIm2colEqualsItsDefinitionAtEveryLevel() {
        let shapes: [(n: Int, c: Int, h: Int, w: Int, k: Int, s: Int, p: Int)] = [
            (2, 3, 9, 45, 7, 2, 3), (1, 3, 2, 2, 7, 2, 3), (3, 5, 6, 6, 3, 1, 1), (2, 4, 3, 3, 3, 1, 1),
            (2, 3, 7, 40, 3, 2, 1), (3, 4, 6, 37, 1, 2, 0), (2, 2, 5, 7, 3, 1, 1), (1, 2, 9, 11, 5, 1, 0),
            (2, 2, 10, 19, 3, 3, 1), (2, 3, 12, 12, 1, 1, 0)]
        for t in shapes {
            let ho = (t.h + 2 * t.p - t.k) / t.s + 1, wo = (t.w + 2 * t.p - t.k) / t.s + 1, P = ho * wo
            let image = t.c * t.h * t.w, x = values(t.n * image, seed: UInt64(t.h * 100 + t.w))
            var want = [Float](repeating: 0, count: t.c * t.k * t.k * t.n * P)
            for c in 0..<t.c { for i in 0..<t.k { for j in 0..<t.k { for n in 0..<t.n { for oh in 0..<ho { for ow in 0..<wo {
                let ih = oh * t.s - t.p + i, iw = ow * t.s - t.p + j
                let v: Float = ih >= 0 && ih < t.h && iw >= 0 && iw < t.w ? x[n * image + (c * t.h + ih) * t.w + iw] : 0
                want[((c * t.k + i) * t.k + j) * t.n * P + n * P + oh * wo + ow] = v
            } } } } } }
            for level in levels {
                var got = [Float](repeating: .nan, count: want.count)
                x.withUnsafeBufferPointer { xp in
                    let images: [UnsafePointer<Float>?] = (0..<t.n).map { xp.baseAddress! + $0 * image }
                    got.withUnsafeMutableBufferPointer { gp in
                        bissl_im2col(level, images, t.n, t.c, t.h, t.w, t.k, t.s, t.p, ho, wo, gp.baseAddress!)
                    }
                }
                XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(t) level \(level)")
            }
        }
    }

    /// `MaxPool2d.infer` gives `forward`'s values bit for bit, with NaNs (propagated), infinities and zeros
    /// of both signs (the first of equal maxima kept) among the inputs: the stem's pool (3, 2, 1) on odd,
    /// even, 1x1, 2x2 and wide planes (the vectorised middle of each row), and (2, 2, 0), (3, 1, 1).
    func testInferencePoolEqualsForwardAtEveryLevel() {
        let saved = DirectConvolution.level
        defer { DirectConvolution.level = saved }
        for (k, s, p) in [(3, 2, 1), (2, 2, 0), (3, 1, 1)] {
            let pool = MaxPool2d(kernel: k, stride: s, padding: p)
            for (n, c, h, w) in [(2, 3, 13, 13), (1, 2, 24, 24), (2, 1, 1, 1), (1, 2, 2, 2), (1, 2, 5, 70), (3, 2, 48, 48)] {
                var x = values(n * c * h * w, seed: UInt64(h * w + k))
                let special: [Float] = [.nan, -.nan, .infinity, -.infinity, 0, -0.0, 0, -0.0]
                var rng = SeededRNG(seed: 7)
                for i in x.indices where rng.uniform(0, 1) < 0.15 { x[i] = special[i % special.count] }
                // runs of equal zeros of both signs, so that the first maximum decides the bits
                for i in x.indices where i % 11 < 4 && x[i] < 0.3 { x[i] = i % 2 == 0 ? 0 : -0.0 }
                let t = Tensor4(n: n, c: c, h: h, w: w, data: x)
                let want = pool.forward(t)
                for level in levels {
                    DirectConvolution.level = level
                    let got = pool.infer(t)
                    XCTAssertEqual(got.shape, want.shape)
                    XCTAssertEqual(got.data.map(\.bitPattern), want.data.map(\.bitPattern), "(\(k), \(s), \(p)) \([n, c, h, w]) level \(level)")
                }
            }
        }
    }

    /// `bissl_store_rows` against its definition (`v + shift[o]`, then `+ residual`, then `v <= 0 ? 0 : v`, in
    /// float32 in that order) with and without each part, moved out of `[O, n P]` rows and in place, over
    /// planes of 9, 36 and 37 pixels (vector tails), with NaNs and zeros of both signs among the values.
    func testStoreRowsEqualsTheEpilogueAtEveryLevel() {
        for (n, o, p) in [(3, 5, 9), (2, 4, 36), (1, 3, 37), (2, 2, 1)] {
            var rows = values(n * o * p, seed: UInt64(p))
            for i in rows.indices where i % 7 == 3 { rows[i] = [.nan, 0, -0.0][i % 3] }
            let shift = values(o, seed: 5), residual = values(n * o * p, seed: 6)
            for (hasShift, hasResidual, relu) in [(false, false, false), (true, false, false), (true, false, true),
                                                  (true, true, false), (true, true, true)] {
                for inPlace in [false, true] {
                    // the row of (image b, channel c): [O, n P] rows, or the NCHW output itself
                    func source(_ b: Int, _ c: Int) -> Int { inPlace ? (b * o + c) * p : c * n * p + b * p }
                    var want = [Float](repeating: 0, count: n * o * p)
                    for b in 0..<n { for c in 0..<o { for q in 0..<p {
                        var v = rows[source(b, c) + q]
                        if hasShift {
                            v = v + shift[c]
                            if hasResidual { v = v + residual[(b * o + c) * p + q] }
                            if relu { v = v <= 0 ? 0 : v }
                        }
                        want[(b * o + c) * p + q] = v
                    } } }
                    for level in levels {
                        var out = [Float](repeating: .nan, count: n * o * p)
                        if inPlace { out = rows }
                        let src = rows
                        shift.withUnsafeBufferPointer { sp in residual.withUnsafeBufferPointer { rp in src.withUnsafeBufferPointer { xp in
                            out.withUnsafeMutableBufferPointer { op in
                                var y = bissl_output(out: op.baseAddress!, images: n, height: 1, width: p, channelStride: p, imageStride: o * p,
                                                     shift: hasShift ? sp.baseAddress : nil, residual: hasResidual ? rp.baseAddress : nil,
                                                     relu: relu ? 1 : 0)
                                bissl_store_rows(level, inPlace ? UnsafePointer(op.baseAddress!) : xp.baseAddress!, inPlace ? o * p : p,
                                                 inPlace ? p : n * p, o, &y)
                            }
                        } } }
                        XCTAssertEqual(out.map(\.bitPattern), want.map(\.bitPattern),
                                       "\([n, o, p]) shift \(hasShift) residual \(hasResidual) relu \(relu) in place \(inPlace) level \(level)")
                    }
                }
            }
        }
    }
}
