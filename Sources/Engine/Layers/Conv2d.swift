/// 2-D convolution without bias, `torch.nn.Conv2d(C, O, k, stride, padding, bias=False)`
/// (https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html), as a GEMM (`GEMM.sgemm`, OpenBLAS).
///
/// - Weight `[O, C, k, k]` (OIHW), key `<prefix>weight`.
/// - Output size `Ho = (H + 2p - k) / s + 1` (floor), same for `Wo`.
/// - 1x1 convolutions with stride 1 and no padding on planes of at least 64 pixels multiply the weight
///   by each image directly; every other convolution unfolds the batch with im2col into
///   `[C*k*k, N*Ho*Wo]` and makes one GEMM.
public final class Conv2d {
    public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    /// `[O, C, k, k]`.
    public let weight: Parameter
    /// Input of the last forward pass, kept for the backward pass.
    private var input: Tensor4?

    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0) {
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding
        self.weight = Parameter(name: name + "weight", shape: [outChannels, inChannels, kernel, kernel])
    }

    /// Spatial output size for an input side of `size`.
    public func outputSize(_ size: Int) -> Int { (size + 2 * padding - kernel) / stride + 1 }

    /// 1x1 stride-1 convolutions multiply the weight by each image directly when the plane is large
    /// enough (`Ho*Wo >= 64`); on small planes (ResNet's last stages at low resolution) one batched GEMM
    /// over the unfolded `[C, N*Ho*Wo]` is faster than `N` thin ones.
    private func usesDirectGEMM(planeSize: Int) -> Bool {
        kernel == 1 && stride == 1 && padding == 0 && planeSize >= 64
    }

    /// Forward: x `[N, C, H, W]` -> y `[N, O, Ho, Wo]`. Keeps `x` for `backward`.
    public func forward(_ x: Tensor4) -> Tensor4 {
        precondition(x.c == inChannels, "Conv2d \(weight.name): input has \(x.c) channels, expected \(inChannels)")
        input = x
        return convolve(x, weight.value)
    }

    /// Inference with a BatchNorm folded in (nothing is kept for a backward pass):
    /// `y = conv(x, W * scale[o]) + shift[o] (+ residual)`, then `max(y, 0)` when `relu` is set; with
    /// `BatchNorm2d.evalAffine()`'s `scale`, `shift` it is `relu(bn(conv(x)) + residual)` of eval mode
    /// in one pass over the output (the weight scaled per output channel instead of the output: the
    /// results differ from the unfused layers by float32 rounding only).
    /// - Parameters: x `[N, C, H, W]`; scale, shift `[O]`; residual `[N, O, Ho, Wo]` or nil. Returns `[N, O, Ho, Wo]`.
    public func infer(_ x: Tensor4, scale: [Float], shift: [Float], adding residual: Tensor4? = nil, relu: Bool) -> Tensor4 {
        precondition(x.c == inChannels, "Conv2d \(weight.name): input has \(x.c) channels, expected \(inChannels)")
        precondition(scale.count == outChannels && shift.count == outChannels, "Conv2d \(weight.name): scale/shift of another size")
        precondition(residual.map { $0.shape == [x.n, outChannels, outputSize(x.h), outputSize(x.w)] } ?? true,
                     "Conv2d \(weight.name): residual of another shape")
        let ckk = inChannels * kernel * kernel
        let folded = [Float](count: weight.value.count) { fp in
            for o in 0..<outChannels {
                for i in 0..<ckk { fp[o * ckk + i] = weight.value[o * ckk + i] * scale[o] }
            }
        }
        return convolve(x, folded, epilogue: Epilogue(shift: shift, residual: residual?.data, relu: relu))
    }

    /// Backward: dy `[N, O, Ho, Wo]` -> dx `[N, C, H, W]` (nil when `inputGradient` is false, e.g. for
    /// the stem, whose input is the image). Accumulates `dL/dW` into `weight.grad`. Inside
    /// `Tangents.record` it keeps `dy` for `tangentBackward`.
    public func backward(_ dy: Tensor4, inputGradient: Bool = true) -> Tensor4? {
        guard let x = input else { preconditionFailure("Conv2d \(weight.name): backward before forward") }
        precondition(dy.n == x.n && dy.c == outChannels && dy.h == outputSize(x.h) && dy.w == outputSize(x.w),
                     "Conv2d \(weight.name): gradient shape \(dy.shape) does not match the forward pass")
        if Tangents.recording { outputGradient = dy }
        let t = gemmLayout(dy)
        accumulateWeightGradient(dy, x, t)
        return inputGradient ? self.inputGradient(dy, weight.value, like: x, t) : nil
    }

    // Tangent rules (forward-over-reverse, docs/bissl.md "Exact Hessian-vector products"). The layer is
    // bilinear in (x, W), so with the parameter direction V = `weight.tangent`:
    //   ẏ = conv(ẋ, W) + conv(x, V)
    //   R{dx} = conv^T(R{dy}, W) + conv^T(dy, V)
    //   R{dW} = corr(R{dy}, x) + corr(dy, ẋ)      (accumulated into `weight.grad`)

    /// Tangent forward: ẋ `[N, C, H, W]` (nil: the input does not depend on θ, e.g. images) -> ẏ
    /// `[N, O, Ho, Wo]`, using the input of the primal forward. Keeps ẋ for `tangentBackward`.
    public func tangentForward(_ dotX: Tensor4?) -> Tensor4 {
        guard let x = input else { preconditionFailure("Conv2d \(weight.name): tangent before forward") }
        tangentInput = dotX
        var y: Tensor4? = dotX.map { convolve($0, weight.value) }
        if !weight.tangent.isEmpty {
            let t = convolve(x, weight.tangent)
            if y == nil { y = t } else { ResidualAdd.accumulate(&y!, t) }
        }
        return y ?? Tensor4(n: x.n, c: outChannels, h: outputSize(x.h), w: outputSize(x.w))
    }

    /// Tangent backward: R{dy} (shape of the output) -> R{dx} (nil when `inputGradient` is false);
    /// accumulates R{dW} (the Hessian-vector product's share of this weight) into `weight.grad`.
    /// Needs the primal backward's dy (run inside `Tangents.record`) and the last `tangentForward`.
    public func tangentBackward(_ rdy: Tensor4, inputGradient: Bool = true) -> Tensor4? {
        guard let x = input, let dy = outputGradient else {
            preconditionFailure("Conv2d \(weight.name): tangent backward without a recorded primal backward")
        }
        let needsDy = tangentInput != nil || (inputGradient && !weight.tangent.isEmpty)
        let tr = gemmLayout(rdy), td = needsDy ? gemmLayout(dy) : nil
        accumulateWeightGradient(rdy, x, tr)
        if let dotX = tangentInput { accumulateWeightGradient(dy, dotX, td) }
        guard inputGradient else { return nil }
        var dx = self.inputGradient(rdy, weight.value, like: x, tr)
        if !weight.tangent.isEmpty { ResidualAdd.accumulate(&dx, self.inputGradient(dy, weight.tangent, like: x, td)) }
        return dx
    }

    /// dy `[N, O, P]` in the `[O, N*P]` layout of the im2col GEMMs (nil for the direct-GEMM path).
    private func gemmLayout(_ dy: Tensor4) -> [Float]? {
        usesDirectGEMM(planeSize: dy.h * dy.w) ? nil : Conv2d.swapLeadingAxes(dy.data, dy.n, outChannels, dy.h * dy.w)
    }

    /// dy of the primal backward (kept inside `Tangents.record`) and ẋ of the last tangent forward.
    private var outputGradient: Tensor4?
    private var tangentInput: Tensor4?

    /// `conv(x, w)` for weights `w` `[O, C, k, k]`, each output value passed through `epilogue` when given.
    private func convolve(_ x: Tensor4, _ w: [Float], epilogue: Epilogue? = nil) -> Tensor4 {
        let ho = outputSize(x.h), wo = outputSize(x.w), N = x.n, O = outChannels
        let p = ho * wo, ckk = inChannels * kernel * kernel
        let y: [Float]
        if usesDirectGEMM(planeSize: p) {
            y = [Float](count: N * O * p) { yp in
                w.withUnsafeBufferPointer { wp in
                    x.data.withUnsafeBufferPointer { xp in
                        // Images are independent products: spread over the cores.
                        Parallel.forEachChunk(N, workPerIndex: O * p * ckk) { images in
                            for n in images {
                                // Y_n[O, P] = W[O, C] * X_n[C, P]
                                let yn = yp.baseAddress! + n * O * p
                                GEMM.sgemm(m: O, n: p, k: ckk, a: wp.baseAddress!, lda: ckk, b: xp.baseAddress! + n * inChannels * p,
                                           ldb: p, c: yn, ldc: p, parallel: false)
                                // while the image's output is in cache
                                for o in 0..<O { epilogue?.apply(yn + o * p, from: yn + o * p, channel: o, at: (n * O + o) * p, count: p) }
                            }
                        }
                    }
                }
            }
        } else {
            let cols = im2col(x, ho: ho, wo: wo)
            // T[O, N*P] = W[O, CKK] * cols[CKK, N*P]
            let t = [Float](count: O * N * p) { tp in
                w.withUnsafeBufferPointer { wp in
                    cols.withUnsafeBufferPointer { cp in
                        GEMM.sgemm(m: O, n: N * p, k: ckk, a: wp.baseAddress!, lda: ckk,
                                   b: cp.baseAddress!, ldb: N * p, c: tp.baseAddress!, ldc: N * p)
                    }
                }
            }
            y = Conv2d.swapLeadingAxes(t, O, N, p, epilogue: epilogue)   // [O, N, P] -> [N, O, P]
        }
        return Tensor4(n: N, c: O, h: ho, w: wo, data: y)
    }

    /// `weight.grad += corr(dy, x)` (dL/dW of an output gradient dy for input x; `t` = `gemmLayout(dy)`).
    private func accumulateWeightGradient(_ dy: Tensor4, _ x: Tensor4, _ t: [Float]?) {
        let p = dy.h * dy.w, ckk = inChannels * kernel * kernel, O = outChannels, N = x.n
        if usesDirectGEMM(planeSize: p) {
            // dW[O, C] += Σ_n dY_n[O, P] * X_n[C, P]^T: the images in two fixed halves, one per core, the
            // second half summed into `upper` and added last (the same additions on any number of cores).
            var upper = [Float](repeating: 0, count: O * ckk)
            weight.grad.withUnsafeMutableBufferPointer { gp in
                upper.withUnsafeMutableBufferPointer { up in
                    x.data.withUnsafeBufferPointer { xp in
                        dy.data.withUnsafeBufferPointer { dyp in
                            Parallel.forEachPiece(2) { half in
                                let c = half == 0 ? gp.baseAddress! : up.baseAddress!
                                for n in (half == 0 ? 0..<(N / 2) : (N / 2)..<N) {
                                    GEMM.sgemm(transB: true, m: O, n: ckk, k: p, a: dyp.baseAddress! + n * O * p, lda: p,
                                               b: xp.baseAddress! + n * inChannels * p, ldb: p, beta: 1, c: c, ldc: ckk,
                                               parallel: false)
                                }
                            }
                        }
                    }
                    for i in 0..<(O * ckk) { gp[i] += up[i] }
                }
            }
            return
        }
        let t = t!   // [O, N*P]
        let cols = im2col(x, ho: dy.h, wo: dy.w)
        weight.grad.withUnsafeMutableBufferPointer { gp in
            t.withUnsafeBufferPointer { tp in
                cols.withUnsafeBufferPointer { cp in
                    // dW[O, CKK] += T[O, N*P] * cols[CKK, N*P]^T
                    GEMM.sgemm(transB: true, m: O, n: ckk, k: N * p, a: tp.baseAddress!, lda: N * p,
                               b: cp.baseAddress!, ldb: N * p, beta: 1, c: gp.baseAddress!, ldc: ckk)
                }
            }
        }
    }

    /// `conv^T(dy, w)`: the input gradient for weights `w`, shaped like `x` (`t` = `gemmLayout(dy)`).
    private func inputGradient(_ dy: Tensor4, _ w: [Float], like x: Tensor4, _ t: [Float]?) -> Tensor4 {
        let p = dy.h * dy.w, ckk = inChannels * kernel * kernel, O = outChannels, N = x.n
        if usesDirectGEMM(planeSize: p) {
            let dx = [Float](count: x.count) { dxp in
                w.withUnsafeBufferPointer { wp in
                    dy.data.withUnsafeBufferPointer { dyp in
                        Parallel.forEachChunk(N, workPerIndex: O * p * ckk) { images in
                            for n in images {
                                // dX_n[C, P] = W[O, C]^T * dY_n[O, P]
                                GEMM.sgemm(transA: true, m: ckk, n: p, k: O, a: wp.baseAddress!, lda: ckk,
                                           b: dyp.baseAddress! + n * O * p, ldb: p, c: dxp.baseAddress! + n * inChannels * p,
                                           ldc: p, parallel: false)
                            }
                        }
                    }
                }
            }
            return Tensor4(n: N, c: inChannels, h: x.h, w: x.w, data: dx)
        }
        let t = t!   // [O, N*P]
        // dcols[CKK, N*P] = W[O, CKK]^T * T[O, N*P]
        let dcols = [Float](count: ckk * N * p) { dcp in
            w.withUnsafeBufferPointer { wp in
                t.withUnsafeBufferPointer { tp in
                    GEMM.sgemm(transA: true, m: ckk, n: N * p, k: O, a: wp.baseAddress!, lda: ckk,
                               b: tp.baseAddress!, ldb: N * p, c: dcp.baseAddress!, ldc: N * p)
                }
            }
        }
        return col2im(dcols, like: x, ho: dy.h, wo: dy.w)
    }

    /// `[A, B, P]` -> `[B, A, P]`: moves blocks of `P` contiguous values (the batch <-> channel swap
    /// between NCHW tensors and the `[O, N*P]` GEMM layout). With an `epilogue` (A = channels), each
    /// block is passed through it on the way.
    static func swapLeadingAxes(_ src: [Float], _ a: Int, _ b: Int, _ p: Int, epilogue: Epilogue? = nil) -> [Float] {
        [Float](count: a * b * p) { dst in
            src.withUnsafeBufferPointer { sp in
                Parallel.forEachChunk(b, workPerIndex: a * p) { range in
                    for j in range {
                        for i in 0..<a {
                            let to = (j * a + i) * p, from = sp.baseAddress! + (i * b + j) * p
                            if let epilogue {
                                epilogue.apply(dst.baseAddress! + to, from: from, channel: i, at: to, count: p)
                            } else {
                                (dst.baseAddress! + to).initialize(from: from, count: p)
                            }
                        }
                    }
                }
            }
        }
    }

    /// What `infer` applies to each output value of channel `o` at flat NCHW index `i`:
    /// `v + shift[o] (+ residual[i])`, then `ReLU`'s rule (`v > 0 ? v : 0`) when `relu` is set.
    struct Epilogue {
        let shift: [Float]
        let residual: [Float]?
        let relu: Bool

        /// `dst[i] = f(src[i])` for `count` values of `channel` starting at NCHW index `at` (`dst` may be `src`).
        @inline(__always)
        func apply(_ dst: UnsafeMutablePointer<Float>, from src: UnsafePointer<Float>, channel: Int, at: Int, count: Int) {
            let b = SIMD8<Float>(repeating: shift[channel])
            let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
            let relu = self.relu
            func run(_ r: UnsafeRawPointer?) {
                var i = 0
                while i + 8 <= count {
                    var v = s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) + b
                    if let r { v += r.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) }
                    if relu { v = SIMD8<Float>.zero.replacing(with: v, where: v .> 0) }   // ReLU's rule: NaN -> 0
                    d.storeBytes(of: v, toByteOffset: 4 * i, as: SIMD8<Float>.self)
                    i += 8
                }
                while i < count {
                    var v = src[i] + b[0]
                    if let r { v += r.load(fromByteOffset: 4 * i, as: Float.self) }
                    dst[i] = relu ? (v > 0 ? v : 0) : v
                    i += 1
                }
            }
            if let residual {
                residual.withUnsafeBufferPointer { run(UnsafeRawPointer($0.baseAddress! + at)) }
            } else {
                run(nil)
            }
        }
    }

    /// Unfolds `x` `[N, C, H, W]` into `[C*k*k, N*Ho*Wo]`: row `(c*k + i)*k + j`, column `n*Ho*Wo + oh*Wo + ow`
    /// holds `x[n, c, oh*s - p + i, ow*s - p + j]` (0 outside the image).
    ///
    /// Every value is written once (no zero-fill first). For "same" convolutions (stride 1, `Wo == W`: the
    /// 3x3/1 pad-1 convs of every ResNet block) the valid window of one (row, image) pair is the input
    /// plane shifted by `(i - p)*W + (j - p)`, so it is one contiguous copy whose wrapped edge columns
    /// are then zeroed; otherwise each output row is copied (stride 1) or gathered (stride 2).
    func im2col(_ x: Tensor4, ho: Int, wo: Int) -> [Float] {
        let k = kernel, N = x.n, C = x.c, P = ho * wo
        let width = N * P
        return [Float](count: C * k * k * width) { cp in
            x.data.withUnsafeBufferPointer { xp in
                // Each channel fills its own k*k rows.
                Parallel.forEachChunk(C, workPerIndex: k * k * width) { channels in
                    for c in channels {
                        for i in 0..<k {
                            for j in 0..<k {
                                let w = window(i, j, x, ho: ho, wo: wo)
                                let row = cp.baseAddress! + ((c * k + i) * k + j) * width
                                for n in 0..<N {
                                    unfold(xp.baseAddress! + (n * C + c) * x.h * x.w, into: row + n * P, tap: i, j, w, x, ho: ho, wo: wo)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The valid outputs of kernel tap `(i, j)`: rows `oh` in `rows` and columns `ow` in `cols` read
    /// inside the image (`0 <= oh*s - p + i < H`, same for columns); the rest read the zero padding.
    private func window(_ i: Int, _ j: Int, _ x: Tensor4, ho: Int, wo: Int) -> (rows: Range<Int>, cols: Range<Int>) {
        let s = stride, pad = padding
        let rows = max(0, (pad - i + s - 1) / s)..<min(ho, floorDiv(x.h - 1 + pad - i, s) + 1)
        let cols = max(0, (pad - j + s - 1) / s)..<min(wo, floorDiv(x.w - 1 + pad - j, s) + 1)
        return (rows.isEmpty || cols.isEmpty) ? (0..<0, 0..<0) : (rows, cols)
    }

    /// Writes the `[Ho, Wo]` plane of tap `(i, j)` (valid outputs `w`, from `window`) for one input plane of
    /// `x` into `dst`.
    @inline(__always)
    private func unfold(_ plane: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, tap i: Int, _ j: Int,
                        _ w: (rows: Range<Int>, cols: Range<Int>), _ x: Tensor4, ho: Int, wo: Int) {
        let s = stride, pad = padding, W = x.w
        let (rows, cols) = w
        guard !rows.isEmpty else { dst.update(repeating: 0, count: ho * wo); return }
        // rows that read above or below the image
        dst.update(repeating: 0, count: rows.lowerBound * wo)
        (dst + rows.upperBound * wo).update(repeating: 0, count: (ho - rows.upperBound) * wo)
        if s == 1 && wo == W {
            // Output (oh, ow) reads input index oh*W + ow + shift: one run from the first valid value to the last.
            let shift = (i - pad) * W + (j - pad)
            let first = rows.lowerBound * wo + cols.lowerBound, last = (rows.upperBound - 1) * wo + cols.upperBound
            (dst + first).update(from: plane + first + shift, count: last - first)
            // The columns outside `cols` picked up the neighbouring rows' edge values: zero them.
            if cols.count < wo {
                for oh in rows {
                    let r = dst + oh * wo
                    for ow in 0..<cols.lowerBound { r[ow] = 0 }
                    for ow in cols.upperBound..<wo { r[ow] = 0 }
                }
            }
            return
        }
        for oh in rows {
            let r = dst + oh * wo
            let src = plane + (oh * s - pad + i) * W + j - pad   // src[ow * s] = x[ih, ow*s - p + j]
            for ow in 0..<cols.lowerBound { r[ow] = 0 }
            for ow in cols.upperBound..<wo { r[ow] = 0 }
            if s == 1 {
                (r + cols.lowerBound).update(from: src + cols.lowerBound, count: cols.count)
            } else {
                for ow in cols { r[ow] = src[ow * s] }
            }
        }
    }

    /// Adjoint of `im2col`: sums `[C*k*k, N*Ho*Wo]` back into a tensor shaped like `x` (the values of
    /// padding positions are dropped). Each input value receives its taps in `(i, j)` order.
    func col2im(_ cols: [Float], like x: Tensor4, ho: Int, wo: Int) -> Tensor4 {
        let k = kernel, s = stride, pad = padding, N = x.n, C = x.c, H = x.h, W = x.w, P = ho * wo
        let width = N * P
        var out = Tensor4(n: N, c: C, h: H, w: W)
        out.data.withUnsafeMutableBufferPointer { op in
            cols.withUnsafeBufferPointer { cp in
                // Each channel sums into its own planes (same order of additions as one thread).
                Parallel.forEachChunk(C, workPerIndex: k * k * width) { channels in
                    for c in channels {
                        for i in 0..<k {
                            for j in 0..<k {
                                let (rows, valid) = window(i, j, x, ho: ho, wo: wo)
                                let row = cp.baseAddress! + ((c * k + i) * k + j) * width
                                for n in 0..<N {
                                    let plane = op.baseAddress! + (n * C + c) * H * W
                                    for oh in rows {
                                        let src = row + n * P + oh * wo
                                        let dst = plane + (oh * s - pad + i) * W + j - pad
                                        if s == 1 {
                                            addFloats(dst + valid.lowerBound, src + valid.lowerBound, valid.count)
                                        } else {
                                            for ow in valid { dst[ow * s] += src[ow] }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// `dst[i] += src[i]` for `count` floats, 8 lanes at a time.
@inline(__always) private func addFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
    var i = 0
    while i + 8 <= count {
        let v = d.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) + s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
        d.storeBytes(of: v, toByteOffset: 4 * i, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { dst[i] += src[i]; i += 1 }
}

/// Integer division rounding toward negative infinity.
@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int {
    a >= 0 ? a / b : -((-a + b - 1) / b)
}
