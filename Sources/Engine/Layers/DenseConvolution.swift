import CKernels

/// The dense path of `Conv2d` for planes with fewer pixels than the kernel has taps (a 3x3 convolution on
/// 1x1 and 2x2 planes: ResNet-50's last two stages at 32x32; or any convolution of a 1x1 plane).
///
/// On such a plane most of im2col's matrix is zero padding (8 of 9 rows on a 1x1 plane, 5 of 9 on a 2x2
/// one), and each image's planes are a few floats, so the im2col, the moves into and out of the GEMM's
/// layout and the per-plane loops cost more than the products. Here the convolution is the linear map of
/// one image it is: the matrix `D` `[O Ho Wo, C H W]` whose entry `(o Po + q, c Pi + r)` is the weight of
/// the tap joining output pixel q to input pixel r (0 where no tap does; `Po = Ho Wo`, `Pi = H W`). With
/// the batch's NCHW images as the rows of `X` `[N, C Pi]` and its outputs as the rows of `Y` `[N, O Po]`:
/// - forward `Y = X D^T`;
/// - input gradient `dX = dY D`;
/// - weight gradient `dD = dY^T X`, each entry added to the weight of its tap (`fold`).
/// Each is one GEMM over the whole batch on the tensors as they are (no copy), with `Pi / k²` of im2col's
/// multiply-adds. A sum of products (the tangent rules) adds each term's GEMM into the first's result.
/// `D` of the weight is kept until the weight changes, and `D` of the last other weights (the tangent of
/// a Hessian-vector product, used by its tangent forward and backward; `infer`'s folded weight) until
/// other weights come.
extension Conv2d {
    /// Whether planes of `h` x `w` take the dense path: fewer pixels than the kernel has taps, or one pixel.
    func isDense(h: Int, w: Int) -> Bool { h * w < kernel * kernel || h * w == 1 }

    /// `Σ_t conv(x_t, w_t)` (see `convolve`), each output value passed through `epilogue` when given.
    func denseConvolve(_ terms: [(x: Tensor4, w: [Float])], epilogue: Epilogue?) -> Tensor4 {
        let x = terms[0].x, ho = outputSize(x.h), wo = outputSize(x.w), O = outChannels
        let K = inChannels * x.h * x.w, M = O * ho * wo
        let matrices = terms.map { denseMatrix(of: $0.w, h: x.h, w: x.w) }
        var y = [Float](count: x.n * M) { yp in
            for (t, (term, d)) in zip(terms, matrices).enumerated() {
                term.x.data.withUnsafeBufferPointer { xp in
                    d.withUnsafeBufferPointer { dp in
                        GEMM.sgemm(transB: true, m: x.n, n: M, k: K, a: xp.baseAddress!, lda: K, b: dp.baseAddress!, ldb: K,
                                   beta: t == 0 ? 0 : 1, c: yp.baseAddress!, ldc: M)
                    }
                }
            }
        }
        if epilogue != nil {
            let p = ho * wo
            y.withUnsafeMutableBufferPointer { yp in
                Conv2d.withOutput(epilogue) { output in
                    // in place: the rows of Y are the NCHW images
                    var out = bissl_output(out: yp.baseAddress!, images: x.n, height: ho, width: wo, channelStride: p,
                                           imageStride: O * p, shift: output.shift, residual: output.residual, relu: output.relu ? 1 : 0)
                    bissl_store_rows(DirectConvolution.level, yp.baseAddress!, O * p, p, O, &out)
                }
            }
        }
        return Tensor4(n: x.n, c: O, h: ho, w: wo, data: y)
    }

    /// `Σ_t conv^T(dy_t, w_t)`, shaped like `x` (see `inputGradient`).
    func denseInputGradient(_ terms: [(dy: Tensor4, w: [Float])], like x: Tensor4) -> Tensor4 {
        let dy = terms[0].dy, K = inChannels * x.h * x.w, M = outChannels * dy.h * dy.w
        let matrices = terms.map { denseMatrix(of: $0.w, h: x.h, w: x.w) }
        let dx = [Float](count: x.count) { dxp in
            for (t, (term, d)) in zip(terms, matrices).enumerated() {
                term.dy.data.withUnsafeBufferPointer { gp in
                    d.withUnsafeBufferPointer { dp in
                        GEMM.sgemm(m: x.n, n: K, k: M, a: gp.baseAddress!, lda: M, b: dp.baseAddress!, ldb: K,
                                   beta: t == 0 ? 0 : 1, c: dxp.baseAddress!, ldc: K)
                    }
                }
            }
        }
        return Tensor4(n: x.n, c: inChannels, h: x.h, w: x.w, data: dx)
    }

    /// `weight.grad += Σ_t corr(dy_t, x_t)` (see `accumulateWeightGradient`): `dD = Σ_t dY_t^T X_t`, then
    /// each entry added to its tap's weight.
    func denseAccumulateWeightGradient(_ pairs: [(dy: Tensor4, x: Tensor4)]) {
        let x = pairs[0].x, dy = pairs[0].dy, K = inChannels * x.h * x.w, M = outChannels * dy.h * dy.w
        let dd = [Float](count: M * K) { ddp in
            for (t, pair) in pairs.enumerated() {
                pair.dy.data.withUnsafeBufferPointer { gp in
                    pair.x.data.withUnsafeBufferPointer { xp in
                        GEMM.sgemm(transA: true, m: M, n: K, k: x.n, a: gp.baseAddress!, lda: M, b: xp.baseAddress!, ldb: K,
                                   beta: t == 0 ? 0 : 1, c: ddp.baseAddress!, ldc: K)
                    }
                }
            }
        }
        let links = denseLinks(h: x.h, w: x.w), (po, pi, C, kk) = (dy.h * dy.w, x.h * x.w, inChannels, kernel * kernel)
        weight.grad.withUnsafeMutableBufferPointer { gp in
            dd.withUnsafeBufferPointer { dp in
                links.withUnsafeBufferPointer { lp in
                    let (g, d, l, count) = (gp.baseAddress!, dp.baseAddress!, lp.baseAddress!, lp.count)
                    // each output channel's weights by one thread, its entries added in (c, q, r) order
                    Parallel.forEachChunk(outChannels, workPerIndex: C * po * pi) { channels in
                        for o in channels {
                            let rows = d + o * po * K
                            for c in 0..<C {
                                let w = g + (o * C + c) * kk, from = rows + c * pi
                                for e in 0..<count { w[l[e].tap] += from[l[e].entry] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The taps of `denseTaps` as a list in (q, r) order, without the pairs no tap joins: `entry = q K + r`
    /// (K = C H W: the offset of `D`'s entry `(o Po + q, c Pi + r)` from `(o Po, c Pi)`) and the tap `i k + j`.
    func denseLinks(h: Int, w: Int) -> [(entry: Int, tap: Int)] {
        let taps = denseTaps(h: h, w: w), pi = h * w, K = inChannels * pi
        return taps.indices.compactMap { e in taps[e] >= 0 ? ((e / pi) * K + e % pi, taps[e]) : nil }
    }

    /// For output pixel q and input pixel r of planes of `h` x `w`: the tap `i k + j` joining them
    /// (input row `oh s - p + i`, column `ow s - p + j`), or -1. Row-major `[Po, Pi]`.
    func denseTaps(h: Int, w: Int) -> [Int] {
        let wo = outputSize(w), po = outputSize(h) * wo
        return (0..<po).flatMap { q in
            (0..<(h * w)).map { r in
                let i = r / w - (q / wo) * stride + padding, j = r % w - (q % wo) * stride + padding
                return i >= 0 && i < kernel && j >= 0 && j < kernel ? i * kernel + j : -1
            }
        }
    }

    /// `D` of weights `w` `[O, C, k, k]` for planes of `h` x `w` (see the extension's documentation); for
    /// a 1x1 convolution without padding on a 1x1 plane that is `w` itself. Kept between calls: `D` of
    /// the weight while `weight.version` is unchanged, `D` of the last other array while it is the same.
    func denseMatrix(of w: [Float], h: Int, w width: Int) -> [Float] {
        if kernel == 1 && padding == 0 && h * width == 1 { return w }
        let plane = [h, width]
        if w == weight.value {   // immediate when it is the weight's own array
            if let cached = denseOfWeight, cached.version == weight.version, cached.plane == plane { return cached.matrix }
        } else if let cached = denseOfOther, cached.plane == plane, cached.source == w {
            return cached.matrix
        }
        let links = denseLinks(h: h, w: width), po = outputSize(h) * outputSize(width), pi = h * width
        let C = inChannels, kk = kernel * kernel, K = C * pi
        var d = [Float](repeating: 0, count: outChannels * po * K)
        d.withUnsafeMutableBufferPointer { dp in
            w.withUnsafeBufferPointer { wp in
                links.withUnsafeBufferPointer { lp in
                    let (out, src, l, count) = (dp.baseAddress!, wp.baseAddress!, lp.baseAddress!, lp.count)
                    Parallel.forEachChunk(outChannels, workPerIndex: po * K) { channels in
                        for o in channels {
                            let rows = out + o * po * K
                            for c in 0..<C {
                                let to = rows + c * pi, wc = src + (o * C + c) * kk
                                for e in 0..<count { to[l[e].entry] = wc[l[e].tap] }
                            }
                        }
                    }
                }
            }
        }
        if w == weight.value { denseOfWeight = (weight.version, plane, d) } else { denseOfOther = (w, plane, d) }
        return d
    }
}
