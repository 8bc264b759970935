import XCTest
@testable import Engine
import CKernels
import TestSupport

/// `Conv2d.infer` on the packed path (`PackedConvolution.swift`, `Sources/CKernels/packed_gemm.c`) against
/// its definition in Double, at each vector level this machine has, for the GEMM path's shapes and the
/// dense path's.
final class PackedConvolutionTests: XCTestCase {
    func values(_ count: Int, seed: UInt64, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { _ in rng.uniform(lo, hi) }
    }

    /// Shapes for each way through the kernel: 1x1 stride 1 read in place (planes of 16 and 64 pixels,
    /// chunks of several images) and gathered (3x3 and 2x2 planes), the 1x1 stride-2 downsample, the 7x7
    /// stride-2 stem, a 3x3 convolution without a direct kernel (no padding), output channels that do not
    /// fill the last panel of rows (13, 5), columns that do not fill the last panel (3x3 planes, 9
    /// pixels), one image whose rows are split over the cores (a batch of one image is one chunk), and
    /// one large chunk of 16-pixel planes with a short last chunk.
    let shapes: [(n: Int, c: Int, o: Int, h: Int, w: Int, k: Int, s: Int, p: Int)] = [
        (5, 24, 40, 4, 4, 1, 1, 0), (3, 16, 13, 8, 8, 1, 1, 0), (7, 20, 24, 3, 3, 1, 1, 0), (9, 32, 64, 2, 2, 1, 1, 0),
        (4, 12, 36, 7, 7, 1, 2, 0), (2, 3, 16, 13, 11, 7, 2, 3), (3, 8, 5, 6, 7, 3, 1, 0), (1, 16, 48, 12, 12, 1, 1, 0),
        (37, 8, 12, 4, 4, 1, 1, 0),
    ]

    /// Shapes of the dense path (planes with fewer pixels than taps, or one pixel): 3x3 on 2x2 and 1x1 planes
    /// at stride 1 and 2, the 7x7 stem on a 2x2 image, 1x1 on a 1x1 plane at stride 1 and 2; batches of one
    /// image, of more images than a panel has columns (37) and output rows that do not fill the last panel.
    let denseShapes: [(n: Int, c: Int, o: Int, h: Int, w: Int, k: Int, s: Int, p: Int)] = [
        (5, 8, 16, 2, 2, 3, 1, 1), (37, 4, 8, 1, 1, 3, 1, 1), (3, 6, 5, 2, 2, 3, 2, 1), (4, 3, 8, 2, 2, 7, 2, 3),
        (1, 5, 7, 1, 1, 1, 1, 0), (40, 3, 4, 1, 1, 1, 2, 0),
    ]

    /// Every output value against `v = Σ_k fl(w scale) x + shift (+ residual)`, then ReLU, summed in Double
    /// from the same folded weights. Bound (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd
    /// ed., section 3.1): the kernel forms the K products' sum with K fused multiply-adds (at most K
    /// roundings), then adds the shift and the residual (two more), so |computed - exact| <= γ_{K+2}
    /// (Σ_k |w_k x_k| + |shift| + |residual|), γ_n = n u / (1 - n u), u = 2^-24; ReLU only shrinks the
    /// error. A wrong product, tap, place or epilogue is off by about the values themselves, far above it.
    func testPackedInferenceMatchesTheDefinitionAtEveryLevel() {
        let saved = DirectConvolution.level
        defer { DirectConvolution.level = saved }
        let levels = [Int32(BISSL_LEVEL_AVX2), Int32(BISSL_LEVEL_AVX512)].filter { $0 <= DirectConvolution.supportedLevel }
        for level in levels {
            DirectConvolution.level = level
            for (index, t) in (shapes + denseShapes).enumerated() {
                let conv = Conv2d(name: "", inChannels: t.c, outChannels: t.o, kernel: t.k, stride: t.s, padding: t.p)
                let dense = index >= shapes.count
                XCTAssertEqual(conv.isDense(h: t.h, w: t.w), dense, "\(t)")
                if !dense {
                    XCTAssertNil(DirectConvolution.kernel(for: .forward, kernel: t.k, stride: t.s, padding: t.p, width: t.w,
                                                          inputChannels: t.c, outputChannels: t.o), "\(t)")
                }
                conv.weight.value = values(conv.weight.count, seed: 1)
                let x = Tensor4(n: t.n, c: t.c, h: t.h, w: t.w, data: values(t.n * t.c * t.h * t.w, seed: 2))
                let ho = conv.outputSize(t.h), wo = conv.outputSize(t.w)
                let scale = values(t.o, seed: 3, 0.5, 1.5), shift = values(t.o, seed: 4)
                let residual = Tensor4(n: t.n, c: t.o, h: ho, w: wo, data: values(t.n * t.o * ho * wo, seed: 5))
                for (withResidual, relu) in [(false, false), (true, true), (false, true)] {
                    let r = withResidual ? residual : nil
                    let y = conv.infer(x, scale: scale, shift: shift, adding: r, relu: relu)
                    XCTAssertNotNil(conv.packed, "level \(level) \(t): the packed path was not taken")
                    let (exact, magnitude) = definition(x, conv, scale: scale, shift: shift, residual: r, relu: relu)
                    XCTAssertEqual(y.shape, [t.n, t.o, ho, wo])
                    // the dense path sums over every input value of the image (C H W terms, the zeros of D included)
                    let K = dense ? t.c * t.h * t.w : t.c * t.k * t.k, u = Double(Float.ulpOfOne) / 2, gamma = Double(K + 2) * u / (1 - Double(K + 2) * u)
                    var worst = 0.0
                    for i in exact.indices {
                        let error = abs(Double(y.data[i]) - exact[i])
                        XCTAssertLessThanOrEqual(error, gamma * magnitude[i], "level \(level) shape \(index) \(t) value \(i)")
                        worst = max(worst, error / max(magnitude[i], .leastNonzeroMagnitude))
                        if error > gamma * magnitude[i] { return }
                    }
                    XCTAssertLessThan(worst, gamma)
                }
            }
        }
    }

    /// The packed weight is kept between calls and packed again when the weight changes in place (as an
    /// optimiser step does), when the scale changes, and when the vector level changes; at the baseline
    /// level there is no packed path (the OpenBLAS path runs). Each result is checked against the
    /// definition with the bound of the test above.
    func testPackedWeightFollowsTheWeightScaleAndLevel() {
        let saved = DirectConvolution.level
        defer { DirectConvolution.level = saved }
        let conv = Conv2d(name: "", inChannels: 16, outChannels: 24, kernel: 1)
        conv.weight.value = values(conv.weight.count, seed: 6)
        let x = Tensor4(n: 4, c: 16, h: 4, w: 4, data: values(4 * 16 * 16, seed: 7))
        var scale = values(24, seed: 8, 0.5, 1.5)
        let shift = values(24, seed: 9)
        func check(_ what: String) {
            let y = conv.infer(x, scale: scale, shift: shift, relu: false)
            let (exact, magnitude) = definition(x, conv, scale: scale, shift: shift, residual: nil, relu: false)
            let u = Double(Float.ulpOfOne) / 2, gamma = 18 * u / (1 - 18 * u)   // K + 2 = 18
            for i in exact.indices where abs(Double(y.data[i]) - exact[i]) > gamma * magnitude[i] {
                XCTFail("\(what): value \(i) is \(y.data[i]), expected \(exact[i])")
                return
            }
        }
        DirectConvolution.level = Int32(BISSL_LEVEL_BASELINE)
        check("baseline")
        XCTAssertNil(conv.packed)
        // output planes of 256 pixels or more stay on the OpenBLAS path at every level
        DirectConvolution.level = DirectConvolution.supportedLevel
        let large = Conv2d(name: "", inChannels: 4, outChannels: 8, kernel: 1)
        _ = large.infer(Tensor4(n: 1, c: 4, h: 16, w: 16), scale: [Float](repeating: 1, count: 8), shift: [Float](repeating: 0, count: 8), relu: false)
        XCTAssertNil(large.packed)
        for level in [Int32(BISSL_LEVEL_AVX2), Int32(BISSL_LEVEL_AVX512)] where level <= DirectConvolution.supportedLevel {
            DirectConvolution.level = level
            check("level \(level)")
            XCTAssertEqual(conv.packed?.level, level)
            for i in conv.weight.value.indices { conv.weight.value[i] *= -1 }
            check("level \(level), weight negated in place")
            scale[3] *= 2
            check("level \(level), scale changed")
        }
    }

    /// `relu(Σ fl(w scale) x + shift + residual)` in Double, and Σ |fl(w scale) x| + |shift| + |residual| per
    /// output value (the error bound's magnitude).
    func definition(_ x: Tensor4, _ conv: Conv2d, scale: [Float], shift: [Float], residual: Tensor4?,
                    relu: Bool) -> (value: [Double], magnitude: [Double]) {
        let k = conv.kernel, s = conv.stride, p = conv.padding, O = conv.outChannels
        let ho = conv.outputSize(x.h), wo = conv.outputSize(x.w)
        var value = [Double](repeating: 0, count: x.n * O * ho * wo), magnitude = value
        for n in 0..<x.n { for o in 0..<O { for i in 0..<ho { for j in 0..<wo {
            var acc = 0.0, mag = 0.0
            for c in 0..<x.c { for a in 0..<k { for b in 0..<k {
                let ih = i * s - p + a, iw = j * s - p + b
                guard ih >= 0, ih < x.h, iw >= 0, iw < x.w else { continue }
                let w = conv.weight.value[((o * x.c + c) * k + a) * k + b] * scale[o]   // the folded weight, rounded to float
                let term = Double(w) * Double(x.data[((n * x.c + c) * x.h + ih) * x.w + iw])
                acc += term; mag += abs(term)
            } } }
            let at = ((n * O + o) * ho + i) * wo + j
            let r = residual.map { Double($0.data[at]) } ?? 0
            acc += Double(shift[o]) + r
            value[at] = relu ? max(acc, 0) : acc
            magnitude[at] = mag + abs(Double(shift[o])) + abs(r)
        } } } }
        return (value, magnitude)
    }
}
