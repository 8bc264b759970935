import CBLAS

/// 2-D convolution without bias, `torch.nn.Conv2d(C, O, k, stride, padding, bias=False)`
/// (https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html), as a GEMM through `cblas_sgemm`.
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
        let ho = outputSize(x.h), wo = outputSize(x.w)
        var y = Tensor4(n: x.n, c: outChannels, h: ho, w: wo)
        let p = ho * wo, ckk = inChannels * kernel * kernel
        let O = outChannels
        let direct = usesDirectGEMM(planeSize: p)
        weight.value.withUnsafeBufferPointer { wp in
            y.data.withUnsafeMutableBufferPointer { yp in
                if direct {
                    x.data.withUnsafeBufferPointer { xp in
                        for n in 0..<x.n {
                            // Y_n[O, P] = W[O, C] * X_n[C, P]
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(O), Int32(p), Int32(ckk),
                                        1, wp.baseAddress, Int32(ckk), xp.baseAddress! + n * inChannels * p, Int32(p),
                                        0, yp.baseAddress! + n * O * p, Int32(p))
                        }
                    }
                } else {
                    let cols = im2col(x, ho: ho, wo: wo)
                    var tmp = [Float](repeating: 0, count: O * x.n * p)
                    cols.withUnsafeBufferPointer { cp in
                        tmp.withUnsafeMutableBufferPointer { tp in
                            // T[O, N*P] = W[O, CKK] * cols[CKK, N*P]
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(O), Int32(x.n * p), Int32(ckk),
                                        1, wp.baseAddress, Int32(ckk), cp.baseAddress, Int32(x.n * p),
                                        0, tp.baseAddress, Int32(x.n * p))
                            // [O, N, P] -> [N, O, P]
                            for n in 0..<x.n {
                                for o in 0..<O {
                                    (yp.baseAddress! + (n * O + o) * p).update(from: tp.baseAddress! + (o * x.n + n) * p, count: p)
                                }
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// Backward: dy `[N, O, Ho, Wo]` -> dx `[N, C, H, W]` (nil when `inputGradient` is false, e.g. for
    /// the stem, whose input is the image). Accumulates `dL/dW` into `weight.grad`.
    public func backward(_ dy: Tensor4, inputGradient: Bool = true) -> Tensor4? {
        guard let x = input else { preconditionFailure("Conv2d \(weight.name): backward before forward") }
        let ho = dy.h, wo = dy.w, p = ho * wo, ckk = inChannels * kernel * kernel, O = outChannels, N = x.n
        precondition(dy.n == N && dy.c == O && ho == outputSize(x.h) && wo == outputSize(x.w),
                     "Conv2d \(weight.name): gradient shape \(dy.shape) does not match the forward pass")
        var dx: Tensor4? = nil
        if usesDirectGEMM(planeSize: p) {
            if inputGradient { dx = Tensor4(n: N, c: inChannels, h: x.h, w: x.w) }
            weight.value.withUnsafeBufferPointer { wp in
                weight.grad.withUnsafeMutableBufferPointer { gp in
                    x.data.withUnsafeBufferPointer { xp in
                        dy.data.withUnsafeBufferPointer { dyp in
                            for n in 0..<N {
                                // dW[O, C] += dY_n[O, P] * X_n[C, P]^T
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(O), Int32(ckk), Int32(p),
                                            1, dyp.baseAddress! + n * O * p, Int32(p), xp.baseAddress! + n * inChannels * p, Int32(p),
                                            1, gp.baseAddress, Int32(ckk))
                            }
                            if inputGradient {
                                dx!.data.withUnsafeMutableBufferPointer { dxp in
                                    for n in 0..<N {
                                        // dX_n[C, P] = W[O, C]^T * dY_n[O, P]
                                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(ckk), Int32(p), Int32(O),
                                                    1, wp.baseAddress, Int32(ckk), dyp.baseAddress! + n * O * p, Int32(p),
                                                    0, dxp.baseAddress! + n * inChannels * p, Int32(p))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return dx
        }
        // [N, O, P] -> [O, N*P]
        var t = [Float](repeating: 0, count: O * N * p)
        t.withUnsafeMutableBufferPointer { tp in
            dy.data.withUnsafeBufferPointer { dyp in
                for n in 0..<N {
                    for o in 0..<O {
                        (tp.baseAddress! + (o * N + n) * p).update(from: dyp.baseAddress! + (n * O + o) * p, count: p)
                    }
                }
            }
        }
        let cols = im2col(x, ho: ho, wo: wo)
        var dcols = inputGradient ? [Float](repeating: 0, count: ckk * N * p) : []
        weight.value.withUnsafeBufferPointer { wp in
            weight.grad.withUnsafeMutableBufferPointer { gp in
                t.withUnsafeBufferPointer { tp in
                    cols.withUnsafeBufferPointer { cp in
                        // dW[O, CKK] += T[O, N*P] * cols[CKK, N*P]^T
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(O), Int32(ckk), Int32(N * p),
                                    1, tp.baseAddress, Int32(N * p), cp.baseAddress, Int32(N * p),
                                    1, gp.baseAddress, Int32(ckk))
                    }
                    if inputGradient {
                        dcols.withUnsafeMutableBufferPointer { dcp in
                            // dcols[CKK, N*P] = W[O, CKK]^T * T[O, N*P]
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(ckk), Int32(N * p), Int32(O),
                                        1, wp.baseAddress, Int32(ckk), tp.baseAddress, Int32(N * p),
                                        0, dcp.baseAddress, Int32(N * p))
                        }
                    }
                }
            }
        }
        if inputGradient { dx = col2im(dcols, like: x, ho: ho, wo: wo) }
        return dx
    }

    /// Unfolds `x` `[N, C, H, W]` into `[C*k*k, N*Ho*Wo]`: row `(c*k + i)*k + j`, column `n*Ho*Wo + oh*Wo + ow`
    /// holds `x[n, c, oh*s - p + i, ow*s - p + j]` (0 outside the image).
    func im2col(_ x: Tensor4, ho: Int, wo: Int) -> [Float] {
        let k = kernel, s = stride, pad = padding, N = x.n, C = x.c, H = x.h, W = x.w, P = ho * wo
        let width = N * P
        var cols = [Float](repeating: 0, count: C * k * k * width)
        cols.withUnsafeMutableBufferPointer { cp in
            x.data.withUnsafeBufferPointer { xp in
                // Each channel fills its own k*k rows.
                Parallel.forEachChunk(C, workPerIndex: k * k * width) { channels in
                for c in channels {
                    for i in 0..<k {
                        for j in 0..<k {
                            let row = cp.baseAddress! + ((c * k + i) * k + j) * width
                            // valid ow: 0 <= ow*s - pad + j < W
                            let owLo = max(0, (pad - j + s - 1) / s)
                            let owHi = min(wo, floorDiv(W - 1 + pad - j, s) + 1)
                            for n in 0..<N {
                                let plane = xp.baseAddress! + (n * C + c) * H * W
                                for oh in 0..<ho {
                                    let ih = oh * s - pad + i
                                    if ih < 0 || ih >= H || owLo >= owHi { continue }
                                    let dst = row + n * P + oh * wo
                                    let src = plane + ih * W - pad + j
                                    if s == 1 {
                                        (dst + owLo).update(from: src + owLo, count: owHi - owLo)
                                    } else {
                                        for ow in owLo..<owHi { dst[ow] = src[ow * s] }
                                    }
                                }
                            }
                        }
                    }
                }
                }
            }
        }
        return cols
    }

    /// Adjoint of `im2col`: sums `[C*k*k, N*Ho*Wo]` back into a tensor shaped like `x`.
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
                            let row = cp.baseAddress! + ((c * k + i) * k + j) * width
                            let owLo = max(0, (pad - j + s - 1) / s)
                            let owHi = min(wo, floorDiv(W - 1 + pad - j, s) + 1)
                            for n in 0..<N {
                                let plane = op.baseAddress! + (n * C + c) * H * W
                                for oh in 0..<ho {
                                    let ih = oh * s - pad + i
                                    if ih < 0 || ih >= H || owLo >= owHi { continue }
                                    let src = row + n * P + oh * wo
                                    let dst = plane + ih * W - pad + j
                                    for ow in owLo..<owHi { dst[ow * s] += src[ow] }
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

/// Integer division rounding toward negative infinity.
@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int {
    a >= 0 ? a / b : -((-a + b - 1) / b)
}
