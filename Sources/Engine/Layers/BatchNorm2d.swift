/// Batch normalisation over `[N, C, H, W]`, exactly `torch.nn.BatchNorm2d(C, eps=1e-5, momentum=0.1)`
/// (https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html, Ioffe & Szegedy,
/// arXiv:1502.03167).
///
/// - Train: per channel, mean and *biased* variance over `N*H*W` normalise;
///   `running_mean = (1 - momentum) * running_mean + momentum * mean`,
///   `running_var = (1 - momentum) * running_var + momentum * var * M / (M - 1)` (the *unbiased*
///   variance, `M = N*H*W`), `num_batches_tracked += 1`.
/// - Eval: `running_mean` / `running_var` normalise.
/// - SyncBatchNorm (`torch.nn.SyncBatchNorm`, https://pytorch.org/docs/stable/generated/torch.nn.SyncBatchNorm.html):
///   while `crossProcessSum` is set, the batch statistics (and the backward's means) are those of the
///   union of every process's batch, `M` its total count.
/// - `M = 1` in train mode (PyTorch raises "Expected more than 1 value per channel when training"):
///   the output is `bias`, and the running variance is updated with variance 0; callers keep `M > 1`.
/// - Keys: `<prefix>weight`, `bias` (parameters), `running_mean`, `running_var`, `num_batches_tracked` (buffers).
public final class BatchNorm2d {
    public let channels: Int
    public let eps: Float = 1e-5
    public let momentum: Float = 0.1
    /// gamma `[C]`, initialised to 1.
    public let weight: Parameter
    /// beta `[C]`, initialised to 0.
    public let bias: Parameter
    /// `[C]`, initialised to 0.
    public var runningMean: [Float]
    /// `[C]`, initialised to 1.
    public var runningVar: [Float]
    /// Number of train-mode forward passes that updated the running statistics.
    public var numBatchesTracked: Int64 = 0
    /// Key prefix (`layer1.0.bn1.`).
    public let prefix: String

    private var input: Tensor4?
    private var mean: [Float] = []
    private var invStd: [Float] = []
    /// Mean and unbiased variance per channel of the last forward that used batch statistics.
    public private(set) var batchStatistics: (mean: [Float], unbiasedVariance: [Float])?

    /// SyncBatchNorm (`torch.nn.SyncBatchNorm`): while set, every forward with batch statistics and its
    /// backward sum their per-channel float64 sums over the processes of a data-parallel job with this
    /// function (an in-place all-reduce with `MPI_SUM`; every process must make the same calls in the
    /// same order). nil (the default): each process normalises with its own batch, as before.
    /// Statistics are those of the union of the processes' batches (the concatenated batch); the
    /// backward's mean terms are weighted by each process's share of it, so that the count-weighted
    /// average of the processes' gradients (`DataParallel.averageGradients`) is the gradient of the
    /// concatenated batch's mean loss. The tangent rules do not synchronise (they refuse a
    /// synchronised forward).
    nonisolated(unsafe) public static var crossProcessSum: ((inout [Double]) -> Void)?
    /// Values per channel over every process (Σ M_r) when the last forward was synchronised; else nil.
    private var synchronizedCount: Double?

    /// `out[c] = Σ_n f(plane (n, c), c)`: `f` of each `[H, W]` plane of `x`, accumulated in float64 over
    /// n in order; channels in parallel, each by one thread (so the result does not depend on threads).
    private func planeSums(_ x: Tensor4, into out: inout [Double], _ f: (UnsafePointer<Float>, Int) -> Double) {
        let C = x.c, HW = x.h * x.w, N = x.n
        x.data.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                Parallel.forEachChunk(C, workPerIndex: N * HW) { channels in
                    for c in channels {
                        var s: Double = 0
                        for n in 0..<N { s += f(xp.baseAddress! + (n * C + c) * HW, c) }
                        op[c] = s
                    }
                }
            }
        }
    }

    /// One momentum update of the running statistics, as a `.train` forward with these batch
    /// statistics makes it (`num_batches_tracked += 1`). BiSSL replays the update of its Hessian
    /// batch's forward once per Hessian-vector product, as the reference's train-mode HVP forwards do.
    public func updateRunningStatistics(mean: [Float], unbiasedVariance: [Float]) {
        precondition(mean.count == channels && unbiasedVariance.count == channels, "BatchNorm2d \(prefix): statistics of another size")
        for c in 0..<channels {
            runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean[c]
            runningVar[c] = (1 - momentum) * runningVar[c] + momentum * unbiasedVariance[c]
        }
        numBatchesTracked += 1
    }

    public init(name: String, channels: Int) {
        self.prefix = name
        self.channels = channels
        weight = Parameter(name: name + "weight", shape: [channels], value: [Float](repeating: 1, count: channels))
        bias = Parameter(name: name + "bias", shape: [channels])
        runningMean = [Float](repeating: 0, count: channels)
        runningVar = [Float](repeating: 1, count: channels)
    }

    /// Forward: x `[N, C, H, W]` -> y `[N, C, H, W]`. Keeps `x` and the statistics used for `backward`.
    public func forward(_ x: Tensor4, mode: Mode) -> Tensor4 {
        precondition(x.c == channels, "BatchNorm2d \(prefix): input has \(x.c) channels, expected \(channels)")
        input = x
        let C = channels, HW = x.h * x.w, N = x.n, M = N * HW
        var mean = [Float](repeating: 0, count: C)
        var invStd = [Float](repeating: 0, count: C)
        if mode.usesBatchStatistics {
            let synchronize = Self.crossProcessSum
            // Per channel: Σx (pass 1), then Σ(x − μ)² about the mean of the whole batch (pass 2), each
            // accumulated in float64 over the planes; under `crossProcessSum` each is summed over the
            // processes, with the processes' value counts (SyncBatchNorm's global batch statistics).
            var sums = [Double](repeating: 0, count: C + 1)
            sums[C] = Double(M)
            planeSums(x, into: &sums) { p, _ in Double(sumFloat(p, HW)) }
            synchronize?(&sums)
            let total = sums[C]
            for c in 0..<C { mean[c] = Float(sums[c] / total) }
            var variance = [Double](repeating: 0, count: C)
            let mu = mean
            planeSums(x, into: &variance) { p, c in Double(sumSquaredDeviation(p, HW, mu[c])) }
            synchronize?(&variance)
            for c in 0..<C {
                variance[c] /= total
                invStd[c] = Float(1 / (variance[c] + Double(eps)).squareRoot())
            }
            synchronizedCount = synchronize == nil ? nil : total
            let unbiased = (0..<C).map { Float(total > 1 ? variance[$0] * total / (total - 1) : variance[$0]) }
            batchStatistics = (mean, unbiased)
            if mode == .train { updateRunningStatistics(mean: mean, unbiasedVariance: unbiased) }
        } else {
            synchronizedCount = nil
            (mean, invStd) = runningNormalisation()
        }
        self.mean = mean
        self.invStd = invStd
        let (scale, shift) = affine(mean: mean, invStd: invStd)
        let y = [Float](count: x.count) { yp in
            x.data.withUnsafeBufferPointer { xp in
                // Planes (n, c) are independent.
                Parallel.forEachChunk(N * C, workPerIndex: HW) { planes in
                    for plane in planes {
                        let c = plane % C, a = scale[c], b = shift[c]
                        let src = xp.baseAddress! + plane * HW, dst = yp.baseAddress! + plane * HW
                        for i in 0..<HW { dst[i] = src[i] * a + b }
                    }
                }
            }
        }
        lastMode = mode
        return Tensor4(n: N, c: C, h: x.h, w: x.w, data: y)
    }

    private var lastMode: Mode = .eval

    /// The eval-mode normalisation: `running_mean` and `1/sqrt(running_var + eps)` per channel.
    private func runningNormalisation() -> (mean: [Float], invStd: [Float]) {
        (runningMean, runningVar.map { 1 / ($0 + eps).squareRoot() })
    }

    /// The forward pass as a per-channel affine map `y = x * scale + shift`, for the statistics
    /// `mean`, `invStd`: `scale = gamma * invStd`, `shift = beta - mean * scale`.
    private func affine(mean: [Float], invStd: [Float]) -> (scale: [Float], shift: [Float]) {
        let scale = (0..<channels).map { weight.value[$0] * invStd[$0] }
        return (scale, (0..<channels).map { bias.value[$0] - mean[$0] * scale[$0] })
    }

    /// The eval-mode forward as `y = x * scale + shift` per channel (`[C]` each; the same values the
    /// eval-mode `forward` applies), for folding this BatchNorm into the convolution before it
    /// (`Conv2d.infer`). Reads only the parameters and running statistics.
    public func evalAffine() -> (scale: [Float], shift: [Float]) {
        let (mean, invStd) = runningNormalisation()
        return affine(mean: mean, invStd: invStd)
    }

    /// Backward: dy `[N, C, H, W]` -> dx. Accumulates `dL/dgamma`, `dL/dbeta`. In train mode the
    /// gradient flows through the batch statistics:
    /// `dx = gamma * invstd * (dy - a - xhat * b)`, `a = mean(dy)`, `b = mean(dy * xhat)`; in eval mode
    /// `dx = gamma * invstd * dy`. After a synchronised forward (`crossProcessSum`) process r's means are
    /// `a = Σ_r' M_r' Σdy_r' / (M_r Σ_r' M_r')` (b likewise; M_r: its values per channel): the gradient
    /// of the concatenated batch's loss `Σ_r (M_r/ΣM) L_r` with respect to its input, divided by its
    /// weight M_r/ΣM (PyTorch's SyncBatchNorm backward with equal shards, where the weights cancel).
    public func backward(_ dy: Tensor4) -> Tensor4 {
        guard let x = input else { preconditionFailure("BatchNorm2d \(prefix): backward before forward") }
        let (C, HW, N, M) = (channels, x.h * x.w, x.n, Float(x.n * x.h * x.w))
        let mean = self.mean, invStd = self.invStd, gamma = weight.value, batchStatistics = lastMode.usesBatchStatistics
        // sums[2c] = Σ dy·xhat, sums[2c+1] = Σ dy over the channel's values.
        var sums = [Double](repeating: 0, count: 2 * C)
        x.data.withUnsafeBufferPointer { xp in
            dy.data.withUnsafeBufferPointer { gp in
                sums.withUnsafeMutableBufferPointer { sp in
                    Parallel.forEachChunk(C, workPerIndex: 2 * N * HW) { channels in
                        for c in channels {
                            let (sumDy, sumDyXhat) = channelSums(gp.baseAddress!, xp.baseAddress!, c, N, C, HW, mean[c], invStd[c])
                            sp[2 * c] = sumDyXhat
                            sp[2 * c + 1] = sumDy
                        }
                    }
                }
            }
        }
        // The means b (meanDyXhat) and a (meanDy) of the rule above, per channel.
        var means = [Float](repeating: 0, count: 2 * C)
        if batchStatistics, let total = synchronizedCount {
            guard let synchronize = Self.crossProcessSum else {
                preconditionFailure("BatchNorm2d \(prefix): backward of a synchronised forward outside the synchronisation")
            }
            var weighted = sums.map { $0 * Double(M) }
            synchronize(&weighted)
            for i in 0..<(2 * C) { means[i] = Float(weighted[i] / (Double(M) * total)) }
        } else if batchStatistics {
            for i in 0..<(2 * C) { means[i] = Float(sums[i]) / M }
        }
        var dx = [Float](unsafeUninitializedCapacity: x.count) { _, initialized in initialized = x.count }
        x.data.withUnsafeBufferPointer { xp in
            dy.data.withUnsafeBufferPointer { gp in
                dx.withUnsafeMutableBufferPointer { dxp in
                    // Each channel is written by one thread.
                    Parallel.forEachChunk(C, workPerIndex: N * HW) { channels in
                        for c in channels {
                            let mu = mean[c], inv = invStd[c], g = gamma[c] * inv
                            let meanDyXhat = means[2 * c], meanDy = means[2 * c + 1]
                            for n in 0..<N {
                                let off = (n * C + c) * HW
                                let src = gp.baseAddress! + off, xs = xp.baseAddress! + off, dst = dxp.baseAddress! + off
                                if batchStatistics {
                                    for i in 0..<HW {
                                        let xhat = (xs[i] - mu) * inv
                                        dst[i] = g * (src[i] - meanDy - xhat * meanDyXhat)
                                    }
                                } else {
                                    for i in 0..<HW { dst[i] = g * src[i] }
                                }
                            }
                        }
                    }
                }
            }
        }
        accumulateGradients(sums)
        if Tangents.recording { outputGradient = dy }
        return Tensor4(n: N, c: C, h: x.h, w: x.w, data: dx)
    }

    // Tangent rules (docs/bissl.md, "Exact Hessian-vector products"), per channel, with x̂ = (x − μ)s,
    // s = (σ² + ε)^-1/2, directions γ̇ = `weight.tangent`, β̇ = `bias.tangent` (empty: 0), means over
    // the M = N·H·W values of the channel. Train mode (batch statistics):
    //   μ̇ = mean(ẋ),  m = mean(x̂ ẋ),  ṡ = −s² m,  x̂̇ = s (ẋ − μ̇ − x̂ m),  ẏ = γ̇ x̂ + γ x̂̇ + β̇
    //   backward dx = γ s (dy − a − x̂ b), a = mean(dy), b = mean(dy x̂), dγ = Σ dy x̂, dβ = Σ dy
    //   R{dx} = (γ̇ s + γ ṡ)(dy − a − x̂ b) + γ s (R{dy} − ȧ − x̂̇ b − x̂ ḃ),
    //   ȧ = mean(R{dy}), ḃ = mean(R{dy} x̂ + dy x̂̇),  R{dγ} = Σ (R{dy} x̂ + dy x̂̇),  R{dβ} = Σ R{dy}.
    // Eval mode (running statistics, constants): x̂̇ = s ẋ, ṡ = 0 and a = b = ȧ = ḃ = 0 in R{dx}.

    /// dy of the primal backward (kept inside `Tangents.record`); x̂̇ and ṡ of the last tangent forward.
    private var outputGradient: Tensor4?
    private var tangentXhat: [Float] = []
    private var tangentInvStd: [Float] = []

    /// Tangent forward: ẋ -> ẏ (shape `[N, C, H, W]`), at the primal forward's input and statistics.
    public func tangentForward(_ dotX: Tensor4) -> Tensor4 {
        guard let x = input else { preconditionFailure("BatchNorm2d \(prefix): tangent before forward") }
        precondition(synchronizedCount == nil, "BatchNorm2d \(prefix): no tangent rule for a synchronised forward (SyncBatchNorm)")
        precondition(dotX.shape == x.shape, "BatchNorm2d \(prefix): tangent shape \(dotX.shape) vs \(x.shape)")
        let (C, HW, N, M) = (channels, x.h * x.w, x.n, Float(x.n * x.h * x.w))
        let mean = self.mean, invStd = self.invStd, gamma = weight.value, batch = lastMode.usesBatchStatistics
        let dGamma = weight.tangentOrZeros, dBeta = bias.tangentOrZeros
        var dInv = [Float](repeating: 0, count: C)
        var dXhat = [Float](count: x.count) { _ in }
        var dy = [Float](count: x.count) { _ in }
        x.data.withUnsafeBufferPointer { xp in
            dotX.data.withUnsafeBufferPointer { tp in
                dXhat.withUnsafeMutableBufferPointer { hp in
                    dy.withUnsafeMutableBufferPointer { yp in
                        dInv.withUnsafeMutableBufferPointer { ip in
                            Parallel.forEachChunk(C, workPerIndex: 3 * N * HW) { channels in
                                for c in channels {
                                    let mu = mean[c], s = invStd[c]
                                    var dmu: Float = 0, m: Float = 0
                                    if batch {
                                        let (a, b) = channelSums(tp.baseAddress!, xp.baseAddress!, c, N, C, HW, mu, s)
                                        dmu = Float(a) / M; m = Float(b) / M
                                        ip[c] = -s * s * m
                                    }
                                    let g = gamma[c], dg = dGamma[c], db = dBeta[c]
                                    for n in 0..<N {
                                        let off = (n * C + c) * HW
                                        let xs = xp.baseAddress! + off, ts = tp.baseAddress! + off
                                        let hs = hp.baseAddress! + off, ys = yp.baseAddress! + off
                                        for i in 0..<HW {
                                            let xhat = (xs[i] - mu) * s
                                            let h = s * (ts[i] - dmu - xhat * m)
                                            hs[i] = h
                                            ys[i] = dg * xhat + g * h + db
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        tangentXhat = dXhat
        tangentInvStd = dInv
        return Tensor4(n: N, c: C, h: x.h, w: x.w, data: dy)
    }

    /// Tangent backward: R{dy} -> R{dx}; accumulates R{dγ}, R{dβ} into `weight.grad`, `bias.grad`.
    /// Needs the primal backward's dy (inside `Tangents.record`) and the last `tangentForward`.
    public func tangentBackward(_ rdy: Tensor4) -> Tensor4 {
        guard let x = input, let dy = outputGradient else {
            preconditionFailure("BatchNorm2d \(prefix): tangent backward without a recorded primal backward")
        }
        precondition(rdy.shape == x.shape && tangentXhat.count == x.count, "BatchNorm2d \(prefix): tangent backward out of order")
        let (C, HW, N, M) = (channels, x.h * x.w, x.n, Float(x.n * x.h * x.w))
        let mean = self.mean, invStd = self.invStd, gamma = weight.value, batch = lastMode.usesBatchStatistics
        let dGamma = weight.tangentOrZeros, dInv = tangentInvStd
        var sums = [Double](repeating: 0, count: 2 * C)
        var rdx = [Float](count: x.count) { _ in }
        x.data.withUnsafeBufferPointer { xp in
            dy.data.withUnsafeBufferPointer { gp in
                rdy.data.withUnsafeBufferPointer { rp in
                    tangentXhat.withUnsafeBufferPointer { hp in
                        rdx.withUnsafeMutableBufferPointer { op in
                            sums.withUnsafeMutableBufferPointer { sp in
                                Parallel.forEachChunk(C, workPerIndex: 5 * N * HW) { channels in
                                    for c in channels {
                                        let mu = mean[c], s = invStd[c]
                                        let (sdy, sdyx) = channelSums(gp.baseAddress!, xp.baseAddress!, c, N, C, HW, mu, s)
                                        let (sr, srx) = channelSums(rp.baseAddress!, xp.baseAddress!, c, N, C, HW, mu, s)
                                        var sdyh: Double = 0
                                        for n in 0..<N {
                                            let off = (n * C + c) * HW
                                            sdyh += Double(dotFloat(gp.baseAddress! + off, hp.baseAddress! + off, HW))
                                        }
                                        sp[2 * c] = srx + sdyh
                                        sp[2 * c + 1] = sr
                                        let a = batch ? Float(sdy) / M : 0, b = batch ? Float(sdyx) / M : 0
                                        let ra = batch ? Float(sr) / M : 0, rb = batch ? Float(srx + sdyh) / M : 0
                                        let outer = dGamma[c] * s + gamma[c] * dInv[c], inner = gamma[c] * s
                                        for n in 0..<N {
                                            let off = (n * C + c) * HW
                                            let xs = xp.baseAddress! + off, gs = gp.baseAddress! + off, rs = rp.baseAddress! + off
                                            let hs = hp.baseAddress! + off, os = op.baseAddress! + off
                                            for i in 0..<HW {
                                                let xhat = (xs[i] - mu) * s
                                                os[i] = outer * (gs[i] - a - xhat * b) + inner * (rs[i] - ra - hs[i] * b - xhat * rb)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        accumulateGradients(sums)
        return Tensor4(n: N, c: C, h: x.h, w: x.w, data: rdx)
    }

    /// Adds per-channel sums `[dγ_0, dβ_0, dγ_1, dβ_1, ...]` to `weight.grad` and `bias.grad`.
    private func accumulateGradients(_ sums: [Double]) {
        for c in 0..<channels {
            weight.grad[c] += Float(sums[2 * c])
            bias.grad[c] += Float(sums[2 * c + 1])
        }
    }
}

/// `(Σ dy, Σ dy x̂)` of channel `c` over the `n` samples of an `[n, channels, H, W]` pair of buffers
/// with `plane = H·W`, `x̂ = (x − mean)·invStd`: each sample's plane summed in float lanes
/// (`sumsForBackward`), the samples added in Double.
@inline(__always) func channelSums(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ c: Int, _ n: Int, _ channels: Int,
                                   _ plane: Int, _ mean: Float, _ invStd: Float) -> (Double, Double) {
    var a: Double = 0, b: Double = 0
    for sample in 0..<n {
        let off = (sample * channels + c) * plane
        let (sa, sb) = sumsForBackward(dy + off, x + off, plane, mean, invStd)
        a += Double(sa); b += Double(sb)
    }
    return (a, b)
}

/// `sum(a[i] * b[i])` over `count` floats, 8 lanes.
@inline(__always) func dotFloat(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        acc += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var s = acc.sum()
    while i < count { s += a[i] * b[i]; i += 1 }
    return s
}

/// Sum of `count` floats, accumulated in 8 float lanes (vectorisable) then added up.
@inline(__always) func sumFloat(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        acc += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var s = acc.sum()
    while i < count { s += p[i]; i += 1 }
    return s
}

/// Sum of `(p[i] - mean)^2`, 8 lanes.
@inline(__always) func sumSquaredDeviation(_ p: UnsafePointer<Float>, _ count: Int, _ mean: Float) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mean)
    var i = 0
    while i + 8 <= count {
        let d = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self) - m
        acc += d * d
        i += 8
    }
    var s = acc.sum()
    while i < count { let d = p[i] - mean; s += d * d; i += 1 }
    return s
}

/// `(sum(dy), sum(dy * (x - mean) * invStd))` over `count` elements, 8 lanes.
@inline(__always) func sumsForBackward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ count: Int,
                                       _ mean: Float, _ invStd: Float) -> (Float, Float) {
    var a = SIMD8<Float>(repeating: 0), b = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mean)
    var i = 0
    while i + 8 <= count {
        let g = UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD8<Float>.self)
        let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
        a += g
        b += g * (xv - m)
        i += 8
    }
    var sa = a.sum(), sb = b.sum()
    while i < count { sa += dy[i]; sb += dy[i] * (x[i] - mean); i += 1 }
    return (sa, sb * invStd)
}
