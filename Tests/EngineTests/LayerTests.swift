import XCTest
@testable import Engine
import CKernels
import TestSupport

/// Layers against direct textbook definitions written here independently (loops, Double), on
/// shapes the fixtures do not reach (stride 2 on a 1-pixel input, 1x1 stride 1 on a large plane).
final class LayerTests: XCTestCase {
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { _ in rng.uniform(-1, 1) }
    }

    /// y[n,o,i,j] = sum_{c,a,b} w[o,c,a,b] x[n,c,i*s-p+a,j*s-p+b]
    func naiveConv(_ x: Tensor4, _ w: [Float], o O: Int, k: Int, s: Int, p: Int) -> Tensor4 {
        let ho = (x.h + 2 * p - k) / s + 1, wo = (x.w + 2 * p - k) / s + 1
        var y = Tensor4(n: x.n, c: O, h: ho, w: wo)
        for n in 0..<x.n { for o in 0..<O { for i in 0..<ho { for j in 0..<wo {
            var acc: Double = 0
            for c in 0..<x.c { for a in 0..<k { for b in 0..<k {
                let ih = i * s - p + a, iw = j * s - p + b
                if ih >= 0, ih < x.h, iw >= 0, iw < x.w {
                    acc += Double(w[((o * x.c + c) * k + a) * k + b]) * Double(x.data[((n * x.c + c) * x.h + ih) * x.w + iw])
                }
            } } }
            y.data[((n * O + o) * ho + i) * wo + j] = Float(acc)
        } } } }
        return y
    }

    func checkConv(n: Int, c: Int, o: Int, h: Int, w: Int, k: Int, s: Int, p: Int) {
        let conv = Conv2d(name: "", inChannels: c, outChannels: o, kernel: k, stride: s, padding: p)
        conv.weight.value = values(o * c * k * k, seed: 1)
        let x = Tensor4(n: n, c: c, h: h, w: w, data: values(n * c * h * w, seed: 2))
        let y = conv.forward(x)
        let ref = naiveConv(x, conv.weight.value, o: o, k: k, s: s, p: p)
        XCTAssertEqual(y.shape, ref.shape)
        assertClose(y.data, ref.data, tolerance: 1e-5, "conv k\(k) s\(s) p\(p) \(h)x\(w) forward")
        // L = sum(y * r): dL/dx and dL/dw by the adjoint identity against finite-free naive sums
        let r = values(y.count, seed: 3)
        let dy = Tensor4(n: y.n, c: y.c, h: y.h, w: y.w, data: r)
        let dx = conv.backward(dy)!
        // dL/dx[n,c,ih,iw] = sum over outputs touching it; check via <dx, e> = <r, conv(e)> for random e
        let e = Tensor4(n: n, c: c, h: h, w: w, data: values(x.count, seed: 4))
        let ce = naiveConv(e, conv.weight.value, o: o, k: k, s: s, p: p)
        let lhs = zip(dx.data, e.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let rhs = zip(r, ce.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * max(1, abs(rhs)), "conv dx adjoint")
        // dL/dw[o,c,a,b] = sum r[n,o,i,j] x[n,c,...]: <dw, f> = <r, conv_f(x)>
        let f = values(conv.weight.count, seed: 5)
        let cf = naiveConv(x, f, o: o, k: k, s: s, p: p)
        let lhsW = zip(conv.weight.grad, f).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let rhsW = zip(r, cf.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        XCTAssertEqual(lhsW, rhsW, accuracy: 1e-4 * max(1, abs(rhsW)), "conv dW adjoint")
    }

    func testConvolutionShapes() {
        checkConv(n: 2, c: 3, o: 5, h: 7, w: 6, k: 3, s: 1, p: 1)
        checkConv(n: 2, c: 3, o: 4, h: 7, w: 9, k: 3, s: 2, p: 1)
        checkConv(n: 1, c: 2, o: 3, h: 1, w: 1, k: 3, s: 2, p: 1)   // stride 2 on a 1-pixel input
        checkConv(n: 2, c: 3, o: 4, h: 11, w: 11, k: 7, s: 2, p: 3) // imagenet stem
        checkConv(n: 2, c: 3, o: 4, h: 2, w: 3, k: 7, s: 2, p: 3)   // stem on 2x3: the first taps read only padding
        checkConv(n: 1, c: 3, o: 2, h: 1, w: 1, k: 7, s: 2, p: 3)   // stem on 1x1
        checkConv(n: 3, c: 5, o: 6, h: 9, w: 10, k: 1, s: 1, p: 0)  // direct GEMM path (90 pixels)
        checkConv(n: 3, c: 5, o: 6, h: 3, w: 3, k: 1, s: 1, p: 0)   // 1x1 on a small plane: batched GEMM
        checkConv(n: 2, c: 5, o: 6, h: 5, w: 5, k: 1, s: 2, p: 0)   // downsample
        checkConv(n: 2, c: 2, o: 3, h: 6, w: 7, k: 5, s: 1, p: 2)   // "same" 5x5: one shifted run per plane
        checkConv(n: 2, c: 2, o: 3, h: 6, w: 5, k: 3, s: 1, p: 0)   // stride 1 without padding: row by row
    }

    /// The convolution's chunked GEMMs (`Conv2d.chunks`) against the definitions in Double, element by
    /// element: chunks of several images with a smaller last one, one chunk for the whole batch (each GEMM
    /// split over the cores instead), one image per chunk, and 1x1 convolutions read in place or gathered.
    func testConvolutionChunksMatchTheDefinition() {
        for (n, c, o, h, w, k, s, p) in [(37, 3, 5, 4, 4, 3, 1, 1), (9, 4, 3, 5, 5, 3, 2, 1), (40, 6, 4, 3, 3, 1, 1, 0),
                                         (3, 2, 3, 17, 16, 3, 1, 1), (3, 5, 6, 16, 16, 1, 1, 0), (21, 4, 5, 4, 4, 1, 2, 0)] {
            for product in [DirectConvolution.Product.forward, .inputGradient, .weightGradient] {
                XCTAssertNil(DirectConvolution.kernel(for: product, kernel: k, stride: s, padding: p, width: w, inputChannels: c, outputChannels: o))
            }
            checkAgainstDefinition(n: n, c: c, o: o, h: h, w: w, k: k, s: s, p: p)
        }
    }

    /// The direct 3x3 convolution (`DirectConvolution`) against the definitions in Double, at each vector
    /// level this machine has (AVX2, AVX-512), on shapes chosen for the kernel each product runs on (checked
    /// first: forward, input gradient, weight gradient): one image per chunk, several images with a smaller
    /// last chunk, odd widths, 3 input channels (the stem), 4- and 2-wide planes, planes of one row and of
    /// 3 rows, 128 input channels, output channels that fill 4, 2 or 1 vectors of the by-position kernels and
    /// a short last tile of positions, stride 2 (on odd and even planes, 3 input channels, 6 images: tiles of 4 and
    /// 2 images) down to a 1-pixel input, and products that stay on im2col + GEMM.
    func testDirectConvolutionMatchesTheDefinitionAtEveryLevel() {
        typealias K = DirectConvolution.Kernel
        let saved = DirectConvolution.level
        defer { DirectConvolution.level = saved }
        let L: K = .lanes, P: K = .byPosition
        let cases: [(n: Int, c: Int, o: Int, h: Int, w: Int, s: Int, avx2: [K?], avx512: [K?])] = [
            (2, 4, 8, 32, 32, 1, [L, L, L], [L, L, L]), (101, 4, 4, 8, 8, 1, [L, L, L], [L, L, L]),
            (5, 3, 8, 9, 11, 1, [L, nil, L], [L, nil, L]), (7, 12, 16, 13, 8, 1, [L, L, P], [L, L, P]),
            (3, 24, 20, 8, 9, 1, [L, L, nil], [L, L, nil]), (9, 16, 8, 5, 4, 1, [L, L, P], [L, L, P]),
            (6, 32, 64, 4, 4, 1, [L, L, P], [L, L, P]), (5, 8, 48, 4, 2, 1, [L, L, P], [L, L, P]),
            (3, 128, 128, 4, 4, 1, [nil, nil, P], [L, L, P]), (2, 72, 24, 3, 7, 1, [nil, L, P], [L, L, P]),
            (4, 6, 8, 1, 19, 1, [L, nil, L], [L, nil, L]),
            (4, 8, 16, 9, 11, 2, [nil, nil, P], [L, nil, P]), (3, 16, 64, 8, 8, 2, [nil, nil, P], [L, nil, P]),
            (2, 4, 8, 3, 3, 2, [nil, nil, P], [L, nil, P]), (6, 3, 12, 15, 17, 2, [nil, nil, nil], [L, nil, nil]),
            (1, 72, 16, 18, 18, 2, [nil, nil, P], [P, nil, P]),
        ]
        for level in [Int32(BISSL_LEVEL_AVX2), Int32(BISSL_LEVEL_AVX512)] where level <= DirectConvolution.supportedLevel {
            DirectConvolution.level = level
            for t in cases {
                let kernels = [DirectConvolution.Product.forward, .inputGradient, .weightGradient].map {
                    DirectConvolution.kernel(for: $0, kernel: 3, stride: t.s, padding: 1, width: t.w, inputChannels: t.c, outputChannels: t.o)
                }
                XCTAssertEqual(kernels, level == BISSL_LEVEL_AVX512 ? t.avx512 : t.avx2, "\(t) level \(level)")
                checkAgainstDefinition(n: t.n, c: t.c, o: t.o, h: t.h, w: t.w, k: 3, s: t.s, p: 1, "level \(level)")
            }
            XCTAssertNil(DirectConvolution.kernel(for: .weightGradient, kernel: 3, stride: 1, padding: 1, width: 3,
                                                  inputChannels: 512, outputChannels: 512))
        }
        DirectConvolution.level = Int32(BISSL_LEVEL_BASELINE)
        XCTAssertNil(DirectConvolution.kernel(for: .forward, kernel: 3, stride: 1, padding: 1, width: 8, inputChannels: 8, outputChannels: 8))
    }

    /// The dense path (`DenseConvolution.swift`: planes with fewer pixels than taps, or one pixel) against the
    /// definitions in Double: 3x3 on 1x1, 2x2 and 1x3 planes at stride 1 and 2, the 7x7 stem on a 2x2
    /// image, 1x1 on a 1x1 plane (its matrix is the weight itself); batches of 1 and of several images.
    func testDenseConvolutionMatchesTheDefinition() {
        for (n, c, o, h, w, k, s, p) in [(5, 8, 16, 2, 2, 3, 1, 1), (7, 4, 8, 1, 1, 3, 1, 1), (3, 6, 4, 2, 2, 3, 2, 1),
                                         (1, 5, 3, 1, 3, 3, 1, 1), (4, 3, 8, 2, 2, 7, 2, 3), (6, 5, 7, 1, 1, 1, 1, 0),
                                         (2, 3, 4, 1, 1, 1, 2, 0)] {
            let conv = Conv2d(name: "", inChannels: c, outChannels: o, kernel: k, stride: s, padding: p)
            XCTAssertTrue(conv.isDense(h: h, w: w), "\(h)x\(w) k\(k)")
            checkAgainstDefinition(n: n, c: c, o: o, h: h, w: w, k: k, s: s, p: p, "dense")
        }
        XCTAssertFalse(Conv2d(name: "", inChannels: 1, outChannels: 1, kernel: 3, padding: 1).isDense(h: 3, w: 3))
        XCTAssertFalse(Conv2d(name: "", inChannels: 1, outChannels: 1, kernel: 1).isDense(h: 2, w: 2))
    }

    /// One convolution's forward, input gradient and weight gradient, and its tangent rules (each a sum of
    /// two products), against their sums in Double.
    func checkAgainstDefinition(n: Int, c: Int, o: Int, h: Int, w: Int, k: Int, s: Int, p: Int, _ label: String = "") {
        let conv = Conv2d(name: "", inChannels: c, outChannels: o, kernel: k, stride: s, padding: p)
        conv.weight.value = values(o * c * k * k, seed: 1)
        let x = Tensor4(n: n, c: c, h: h, w: w, data: values(n * c * h * w, seed: 2))
        let y = conv.forward(x)
        let dy = Tensor4(n: y.n, c: y.c, h: y.h, w: y.w, data: values(y.count, seed: 3))
        let dx = Tangents.record { conv.backward(dy)! }
        let dW = conv.weight.grad
        // Tangents: ẏ = conv(ẋ, W) + conv(x, V), R{dx} = conv^T(R{dy}, W) + conv^T(dy, V),
        // R{dW} = corr(R{dy}, x) + corr(dy, ẋ), with V = weight.tangent.
        conv.weight.tangent = values(o * c * k * k, seed: 4)
        let dotX = Tensor4(n: n, c: c, h: h, w: w, data: values(x.count, seed: 5))
        let rdy = Tensor4(n: y.n, c: y.c, h: y.h, w: y.w, data: values(y.count, seed: 6))
        conv.weight.zeroGrad()
        let dotY = conv.tangentForward(dotX)
        let rdx = conv.tangentBackward(rdy)!
        let ho = y.h, wo = y.w
        // Each result by its sum over (n, o, i, j, c, a, b), with the sum of |terms| beside.
        var ry = [Double](repeating: 0, count: y.count), ay = ry, rty = ry, aty = ry
        var rx = [Double](repeating: 0, count: x.count), ax = rx, rtx = rx, atx = rx
        var rw = [Double](repeating: 0, count: conv.weight.count), aw = rw, rtw = rw, atw = rw
        for b in 0..<n { for oc in 0..<o { for i in 0..<ho { for j in 0..<wo {
            let yi = ((b * o + oc) * ho + i) * wo + j
            for ic in 0..<c { for ka in 0..<k { for kb in 0..<k {
                let ih = i * s - p + ka, iw = j * s - p + kb
                guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                let xi = ((b * c + ic) * h + ih) * w + iw, wi = ((oc * c + ic) * k + ka) * k + kb
                let wv = Double(conv.weight.value[wi]), xv = Double(x.data[xi]), gv = Double(dy.data[yi])
                let vv = Double(conv.weight.tangent[wi]), dxv = Double(dotX.data[xi]), rv = Double(rdy.data[yi])
                ry[yi] += wv * xv; ay[yi] += abs(wv * xv)
                rx[xi] += wv * gv; ax[xi] += abs(wv * gv)
                rw[wi] += gv * xv; aw[wi] += abs(gv * xv)
                rty[yi] += wv * dxv + vv * xv; aty[yi] += abs(wv * dxv) + abs(vv * xv)
                rtx[xi] += wv * rv + vv * gv; atx[xi] += abs(wv * rv) + abs(vv * gv)
                rtw[wi] += rv * xv + gv * dxv; atw[wi] += abs(rv * xv) + abs(gv * dxv)
            } } }
        } } } }
        // Whatever the order of its additions (chunks, GEMM blocking, halves, vector lanes, fused or
        // separate multiply-adds), a float32 sum of K products has |error| <= gamma_K * sum|terms|,
        // gamma_K = K u / (1 - K u), u = 2^-24 (Higham, "Accuracy and Stability of Numerical Algorithms",
        // 2nd ed., section 3.1); K counts the roundings any one term goes through: C k^2 for y; for dx
        // O + k^2 on the GEMM path (O terms per unfolded value, then at most k^2 taps) and O k^2 on the
        // direct one (one sum over (o, tap)), so O k^2 bounds both; N Ho Wo for dW (the direct path's
        // dropped grid positions add exact zeros). A tangent rule sums two such products, so twice as
        // many terms (its second GEMM adds into the first's result; the direct path sums them as one).
        // One more u |value| for rounding the Double reference.
        let u = Double(Float.ulpOfOne) / 2
        func check(_ got: [Float], _ ref: [Double], _ abs: [Double], terms: Int, _ what: String) {
            let gamma = Double(terms) * u / (1 - Double(terms) * u)
            let bad = got.indices.filter { Swift.abs(Double(got[$0]) - ref[$0]) > gamma * abs[$0] + u * Swift.abs(ref[$0]) }
            XCTAssertTrue(bad.isEmpty, "conv n\(n) c\(c) o\(o) \(h)x\(w) k\(k) s\(s) p\(p) \(label) \(what): \(bad.count) "
                          + "values off, first at \(bad.first ?? 0): \(bad.first.map { "\(got[$0]) vs \(ref[$0])" } ?? "")")
        }
        check(y.data, ry, ay, terms: c * k * k, "forward")
        check(dx.data, rx, ax, terms: o * k * k, "input gradient")
        check(dW, rw, aw, terms: n * ho * wo, "weight gradient")
        check(dotY.data, rty, aty, terms: 2 * c * k * k, "tangent forward")
        check(rdx.data, rtx, atx, terms: 2 * o * k * k, "tangent input gradient")
        check(conv.weight.grad, rtw, atw, terms: 2 * n * ho * wo, "tangent weight gradient")
    }

    /// `ResNet.infer` (BatchNorm folded into each convolution, ReLU and residual add in its output pass)
    /// against the layer-by-layer `forward(mode: .eval)`, on both block kinds and both GEMM paths, with
    /// BatchNorm parameters and running statistics away from their initial values.
    func testInferenceMatchesEvalForward() throws {
        for (depth, width, stem, size) in [(18, 8, "small", 16), (50, 4, "imagenet", 32)] {
            let model = try ResNet(depth: depth, width: width, stem: stem)
            model.initialize(seed: 3, zeroInitLastBN: false)
            var rng = SeededRNG(seed: 4)
            for bn in model.batchNorms {
                for c in 0..<bn.channels {
                    bn.weight.value[c] = rng.uniform(0.5, 1.5); bn.bias.value[c] = rng.uniform(-0.5, 0.5)
                    bn.runningMean[c] = rng.uniform(-0.5, 0.5); bn.runningVar[c] = rng.uniform(0.5, 2)
                }
            }
            let x = Tensor4(n: 3, c: 3, h: size, w: size, data: values(3 * 3 * size * size, seed: 5))
            let unfused = model.forward(x, mode: .eval)
            let fused = model.infer(x)
            // Both paths round differently: the folded weight fl(w*scale) and the scale applied per term
            // rather than to the sum. Per convolution that is a relative error of about (sqrt(K) + 2) u
            // (u = 2^-24; probabilistic bound of a K-term float32 dot product, Higham, "Accuracy and
            // Stability of Numerical Algorithms", 2nd ed., section 3.1, plus the two extra roundings),
            // K <= 9 * 8 * width here; over the L convolutions in sequence these add up (the BatchNorm
            // scales, gamma / sigma within [0.35, 2.2] here, and the residual sums carry them through).
            // Bound: L (sqrt(K) + 2) u of the largest feature, 520u for the ResNet-18; measured: 5u
            // (1.9e-6 of 6.1 for the ResNet-18, 7.6e-6 of 26.2 for the ResNet-50).
            let convs = model.convolutions
            let kMax = convs.map { $0.inChannels * $0.kernel * $0.kernel }.max()!
            let u = Float.ulpOfOne / 2
            let tolerance = Float(convs.count) * (Float(kMax).squareRoot() + 2) * u
            assertClose(fused.data, unfused.data, tolerance: tolerance, "ResNet-\(depth) infer vs eval forward")
            XCTAssertNotEqual(unfused.data.map(abs).max()!, 0)
            // The folded weights are kept between calls: a weight changed in place (as an optimiser step
            // does) and a running variance changed must both be seen by the next call.
            let conv = model.blocks[0].convs[0], bn = model.blocks[0].bns[0]
            for i in conv.weight.value.indices { conv.weight.value[i] *= -1 }
            bn.runningVar[0] *= 4
            let unfused2 = model.forward(x, mode: .eval)
            XCTAssertGreaterThan(zip(unfused2.data, unfused.data).map { abs($0 - $1) }.max()!, 100 * tolerance)
            assertClose(model.infer(x).data, unfused2.data, tolerance: tolerance, "ResNet-\(depth) infer after the weights changed")
        }
    }

    /// NaN propagates as in PyTorch: `torch.relu(NaN)` is NaN (and max pooling keeps a NaN), so a NaN
    /// weight makes every logit downstream of it NaN, in the train- and eval-mode forward and in the fused
    /// `infer` (BatchNorm folded, ReLU in the convolution's output pass), never a finite number that hides
    /// it. The backward passes no gradient where the output is NaN (`threshold_backward`: `y > 0` is false).
    /// Exact checks: the only arithmetic is NaN in, NaN out.
    func testNaNWeightsGiveNaNLogitsAsPyTorch() throws {
        let relu = ReLU()
        let x: [Float] = [1, -1, .nan, 0, -0.0, 2, .nan, -3, .nan]   // 8 lanes and a scalar tail
        let y = relu.forward(x)
        for (xi, yi) in zip(x, y) {
            if xi.isNaN { XCTAssertTrue(yi.isNaN) } else { XCTAssertEqual(yi, Swift.max(xi, 0)) }
        }
        XCTAssertEqual(relu.backward([Float](repeating: 1, count: x.count)), x.map { $0 > 0 ? 1 : 0 })
        for (depth, width, stem, size) in [(18, 4, "small", 16), (50, 4, "imagenet", 32)] {
            let model = try ResNet(depth: depth, width: width, stem: stem)
            model.initialize(seed: 3, zeroInitLastBN: false)
            model.blocks.last!.convs[0].weight.value[0] = .nan
            let images = Tensor4(n: 2, c: 3, h: size, w: size, data: values(2 * 3 * size * size, seed: 5))
            for (what, out) in [("train forward", model.forward(images, mode: .train)), ("eval forward", model.forward(images, mode: .eval)),
                                ("infer", model.infer(images))] {
                XCTAssertTrue(out.data.allSatisfy(\.isNaN), "ResNet-\(depth) \(what): a NaN weight must reach every feature")
            }
        }
    }

    func testBatchNormTrainUpdatesRunningStatisticsAsPyTorch() {
        // two channels, N=2, H=W=1: channel 0 sees [1, 3] -> mean 2, biased var 1, unbiased var 2
        let bn = BatchNorm2d(name: "bn.", channels: 2)
        let x = Tensor4(n: 2, c: 2, h: 1, w: 1, data: [1, 10, 3, 10])
        let y = bn.forward(x, mode: .train)
        XCTAssertEqual(y.data[0], -1 / (1 + 1e-5 as Float).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(y.data[1], 0, accuracy: 1e-6)
        XCTAssertEqual(bn.runningMean[0], 0.9 * 0 + 0.1 * 2, accuracy: 1e-7)
        XCTAssertEqual(bn.runningVar[0], 0.9 * 1 + 0.1 * 2, accuracy: 1e-7)  // unbiased
        XCTAssertEqual(bn.runningVar[1], 0.9, accuracy: 1e-7)
        XCTAssertEqual(bn.numBatchesTracked, 1)
        _ = bn.forward(x, mode: .trainFrozenStatistics)
        _ = bn.forward(x, mode: .eval)
        XCTAssertEqual(bn.numBatchesTracked, 1)
        XCTAssertEqual(bn.runningMean[0], 0.2, accuracy: 1e-7)
    }

    /// The fused BatchNorm -> ReLU (`BatchNorm2d.forward(_:mode:relu:)`) and the fused residual add +
    /// ReLU (`ReLU.forward(_:adding:)`) against the separate layers, as PyTorch's modules run them:
    /// forward, backward, tangent forward and tangent backward (the parameter gradients and their
    /// tangents too), in train and eval mode, with the mask computed and with it pinned by
    /// `ActivationPatterns`. Tolerance 0: the fused passes do the same float32 operations in the same
    /// order (the ReLU mask recomputed from x with the forward's own scale and shift, the same products
    /// and sums), so a difference in any bit is a wrong rule. 7x6 planes: not a multiple of the 8 lanes.
    func testFusedReLUsEqualTheSeparateLayers() {
        let (n, c, h, w) = (3, 5, 7, 6), count = 3 * 5 * 7 * 6
        func tensor(_ seed: UInt64) -> Tensor4 { Tensor4(n: n, c: c, h: h, w: w, data: values(count, seed: seed)) }
        let x = tensor(21), dy = tensor(22), dotX = tensor(23), rdy = tensor(24)
        func batchNorm() -> BatchNorm2d {
            let bn = BatchNorm2d(name: "bn.", channels: c)
            bn.weight.value = values(c, seed: 25).map { $0 + 1.5 }
            bn.bias.value = values(c, seed: 26)
            bn.runningMean = values(c, seed: 27)
            bn.runningVar = values(c, seed: 28).map { $0 + 1.5 }
            bn.weight.tangent = values(c, seed: 29)
            bn.bias.tangent = values(c, seed: 30)
            return bn
        }
        for mode in [Mode.train, .eval] {
            for pinned in [false, true] {
                let label = "\(mode), \(pinned ? "pinned" : "computed") mask"
                let fused = batchNorm(), separate = batchNorm(), relu = ReLU()
                func run<T>(_ body: () -> T) -> T { pinned ? ActivationPatterns().record(body) : body() }
                let (yf, yr) = run { (fused.forward(x, mode: mode, relu: true), relu.forward(separate.forward(x, mode: mode))) }
                XCTAssertEqual(yf, yr, "forward, \(label)")
                XCTAssertTrue(yf.data.contains(0) && yf.data.contains { $0 > 0 }, "the mask has both values")
                let (df, dr) = Tangents.record { (fused.backward(dy), separate.backward(relu.backward(dy))) }
                XCTAssertEqual(df, dr, "backward, \(label)")
                XCTAssertEqual(fused.weight.grad, separate.weight.grad, "dγ, \(label)")
                XCTAssertEqual(fused.bias.grad, separate.bias.grad, "dβ, \(label)")
                XCTAssertEqual(fused.tangentForward(dotX), relu.tangentForward(separate.tangentForward(dotX)), "tangent forward, \(label)")
                [fused.weight, fused.bias, separate.weight, separate.bias].zeroGrad()
                XCTAssertEqual(fused.tangentBackward(rdy), separate.tangentBackward(relu.tangentBackward(rdy)), "tangent backward, \(label)")
                XCTAssertEqual(fused.weight.grad, separate.weight.grad, "R{dγ}, \(label)")
                XCTAssertEqual(fused.bias.grad, separate.bias.grad, "R{dβ}, \(label)")
            }
        }
        // relu(a + b) in one pass against the sum, then ReLU; its tangent against the sum of the tangents.
        let sum = { (a: Tensor4, b: Tensor4) in Tensor4(n: n, c: c, h: h, w: w, data: zip(a.data, b.data).map(+)) }
        for pinned in [false, true] {
            let fused = ReLU(), separate = ReLU()
            func run<T>(_ body: () -> T) -> T { pinned ? ActivationPatterns().record(body) : body() }
            let (yf, yr) = run { (fused.forward(x, adding: dy), separate.forward(sum(x, dy))) }
            XCTAssertEqual(yf, yr, "relu(a + b), pinned \(pinned)")
            XCTAssertEqual(fused.backward(rdy), separate.backward(rdy), "its backward, pinned \(pinned)")
            XCTAssertEqual(fused.tangentForward(dotX, adding: rdy), separate.tangentForward(sum(dotX, rdy)), "its tangent, pinned \(pinned)")
        }
    }

    /// `MaxPool2d(3, 2, 1)` against its definition on planes with whole windows inside (the unrolled path)
    /// and windows cut by the border, many ties (values from {0, 1, 2, 3}) and a few NaNs, enough planes for
    /// the planes to be split over the cores: each output is the window's maximum at the first position in
    /// row-major order that holds it, or NaN at the window's last NaN when it has one (PyTorch's CPU kernel:
    /// `val > maxval || isnan(val)`); the backward adds each dy at that position.
    func testMaxPoolMatchesItsDefinitionWithTiesAndNaN() {
        for (n, c, h, w) in [(3, 5, 9, 10), (8, 8, 16, 16)] {
            var rng = SeededRNG(seed: 11)
            var data = (0..<(n * c * h * w)).map { _ in Float(rng.next() % 4) }
            for i in stride(from: 7, to: data.count, by: 97) { data[i] = .nan }
            let mp = MaxPool2d()
            let x = Tensor4(n: n, c: c, h: h, w: w, data: data)
            let y = mp.forward(x)
            let ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1
            XCTAssertEqual(y.shape, [n, c, ho, wo])
            let dy = Tensor4(n: n, c: c, h: ho, w: wo, data: values(y.count, seed: 12))
            var dx = [Float](repeating: 0, count: x.count)
            var mismatches = 0
            for plane in 0..<(n * c) { for oh in 0..<ho { for ow in 0..<wo {
                var window: [Int] = []
                for i in (2 * oh - 1)...(2 * oh + 1) where i >= 0 && i < h {
                    for j in (2 * ow - 1)...(2 * ow + 1) where j >= 0 && j < w { window.append(plane * h * w + i * w + j) }
                }
                let at = window.last(where: { data[$0].isNaN }) ?? window.first(where: { data[$0] == window.map { data[$0] }.max()! })!
                let o = (plane * ho + oh) * wo + ow
                if !(y.data[o] == data[at] || (y.data[o].isNaN && data[at].isNaN)) { mismatches += 1 }
                dx[at] += dy.data[o]
            } } }
            XCTAssertEqual(mismatches, 0, "\(n)x\(c)x\(h)x\(w) forward")
            XCTAssertEqual(mp.backward(dy).data, dx, "\(n)x\(c)x\(h)x\(w) backward")
        }
    }

    func testMaxPoolTakesFirstMaximumAndRoutesGradient() {
        let mp = MaxPool2d()
        // 1x1x2x2 with ties: every 3x3/2/1 window covers all four pixels -> the first max wins
        let x = Tensor4(n: 1, c: 1, h: 2, w: 2, data: [5, 5, 1, 5])
        let y = mp.forward(x)
        XCTAssertEqual(y.shape, [1, 1, 1, 1])
        XCTAssertEqual(y.data, [5])
        XCTAssertEqual(mp.backward(Tensor4(n: 1, c: 1, h: 1, w: 1, data: [2])).data, [2, 0, 0, 0])
    }

    func testInitialisationIsSeededAndTorchvisionLike() throws {
        let a = try ResNet(depth: 50, width: 8), b = try ResNet(depth: 50, width: 8), c = try ResNet(depth: 50, width: 8)
        a.initialize(seed: 3); b.initialize(seed: 3); c.initialize(seed: 4)
        XCTAssertEqual(a.stateDict(), b.stateDict())
        XCTAssertNotEqual(a.conv1.weight.value, c.conv1.weight.value)
        // Kaiming normal, fan_out: std sqrt(2 / (O k k)); layer3.0.conv2: 32 x 32 x 3 x 3
        let w = a.blocks[7].convs[1].weight
        XCTAssertEqual(w.name, "layer3.0.conv2.weight")
        let mean = w.value.reduce(0, +) / Float(w.count)
        let std = (w.value.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(w.count)).squareRoot()
        XCTAssertEqual(std, (2.0 / Float(32 * 9)).squareRoot(), accuracy: 0.05 * (2.0 / Float(32 * 9)).squareRoot())
        XCTAssertEqual(abs(mean), 0, accuracy: 0.01)
        for blk in a.blocks { XCTAssertEqual(Set(blk.bns.last!.weight.value), [0]) }
        XCTAssertEqual(Set(a.bn1.weight.value), [1])
        let d = try ResNet(depth: 18, width: 8)
        d.initialize(seed: 1, zeroInitLastBN: false)
        XCTAssertEqual(Set(d.blocks[0].bns.last!.weight.value), [1])
        let head = LinearHead(features: 400, classes: 10)
        head.initialize(seed: 1)
        let bound: Float = 1 / 20
        XCTAssertTrue(head.linear.weight.value.allSatisfy { abs($0) <= bound })
        XCTAssertGreaterThan(head.linear.weight.value.map(abs).max()!, 0.9 * bound)
    }

    func testResNet50Sizes() throws {
        // docs/bissl.md, "Network, heads and state-dict keys": 23 508 032 parameters in 159 tensors, 318 state-dict entries
        let m = try ResNet(depth: 50)
        XCTAssertEqual(m.parameters.count, 159)
        XCTAssertEqual(m.parameters.map(\.count).reduce(0, +), 23_508_032)
        XCTAssertEqual(m.featureCount, 2048)
        let p = try MLPHead(dims: [2048, 256, 256, 256])
        XCTAssertEqual(p.parameters.map(\.count).reduce(0, +), 656_896)
        XCTAssertEqual(Array(p.stateDict().keys.prefix(7)),
                       ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"])
        XCTAssertEqual(p.stateDict().keys.last, "6.weight")
    }

    func testTheImageNetStemTakesImagesDownTo1x1() throws {
        // Padding keeps every layer's output at least 1x1, as in torchvision: ResNet-50's 7x7/2 stem, max
        // pool and stride-2 stages take a 1x1 or 2x2 image (the stem's first taps then read only padding).
        let m = try ResNet(depth: 50, width: 4)
        m.initialize(seed: 3)
        XCTAssertEqual(m.featureMapSide(forInput: 224), 7)
        XCTAssertEqual(m.featureMapSide(forInput: 2), 1)
        XCTAssertNil(m.featureMapSide(forInput: 0))
        XCTAssertEqual(m.smallestInputSide, 1)
        XCTAssertThrowsError(try m.checkInputSize(height: 0, width: 4)) { XCTAssertTrue("\($0)".contains("the smallest it takes is 1x1"), "\($0)") }
        XCTAssertNoThrow(try m.checkInputSize(height: 1, width: 2))
        for side in [1, 2, 3] {
            let x = Tensor4(n: 2, c: 3, h: side, w: side, data: values(2 * 3 * side * side, seed: UInt64(side)))
            let inferred = m.infer(x), forward = m.forward(x, mode: .eval)
            XCTAssertEqual(inferred.shape, [2, m.featureCount])
            XCTAssertTrue(inferred.data.allSatisfy(\.isFinite))
            // The bound of testInferenceMatchesEvalForward: L (sqrt(K) + 2) u of the largest feature.
            let kMax = m.convolutions.map { $0.inChannels * $0.kernel * $0.kernel }.max()!
            let tolerance = Float(m.convolutions.count) * (Float(kMax).squareRoot() + 2) * (Float.ulpOfOne / 2)
            assertClose(inferred.data, forward.data, tolerance: tolerance, "\(side)x\(side) infer vs eval forward")
        }
    }

    func testCosineScheduleMatchesTheMethodReference() {
        var s = CosineSchedule(base: 2, warmup: 4, total: 10)
        let got = (1...11).map { _ in s.step() }
        // warmup s = 1, 2, 3: base * s / W
        XCTAssertEqual(Array(got[0..<3]), [0.5, 1, 1.5])
        // s >= W: base * q + 0.001 * base * (1 - q), q = (1 + cos(pi (s - W) / (T - W))) / 2
        func cosine(_ q: Double) -> Float { Float(2 * q + 0.002 * (1 - q)) }
        XCTAssertEqual(got[3], 2, accuracy: 1e-6)                                        // s = 4, q = 1
        XCTAssertEqual(got[4], cosine((1 + 0.8660254037844387) / 2), accuracy: 1e-6)     // s = 5, cos(pi/6)
        XCTAssertEqual(got[6], cosine(0.5), accuracy: 1e-6)                              // s = 7
        XCTAssertEqual(got[9], 0.002, accuracy: 1e-7)                                    // s = 10, q = 0
        XCTAssertEqual(got[10], 0.002, accuracy: 1e-7)                                   // past the end
    }
}

final class EMATests: XCTestCase {
    func testEMAUpdateAveragesParametersOnly() throws {
        let online = try MLPHead(dims: [2, 2, 1]), target = try MLPHead(dims: [2, 2, 1])
        online.initialize(seed: 1)
        target.initialize(seed: 2)
        online.norms[0].core.runningMean = [5, 5]
        let before = target.parameters.map(\.value)
        emaUpdate(target: target.parameters, online: online.parameters, decay: 0.75)
        for (k, p) in target.parameters.enumerated() {
            for i in p.value.indices {
                XCTAssertEqual(p.value[i], 0.75 * before[k][i] + 0.25 * online.parameters[k].value[i], accuracy: 1e-7)
            }
        }
        XCTAssertEqual(target.norms[0].core.runningMean, [0, 0])
    }
}
