import CKernels

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
/// - Fused ReLU: `forward(x, mode:, relu: true)` is this layer followed by `torch.nn.ReLU` (the BN -> ReLU
///   pairs of ResNet stems and blocks) in one pass over the values; `backward` and the tangent rules then
///   apply ReLU's mask to their incoming gradient first, recomputed from x and the forward's affine map
///   (or the mask `ActivationPatterns` pinned), so no pre-activation tensor is kept.
/// - The per-channel passes of `forward` and `backward` (statistics, normalisation, the ReLU's gate, the
///   backward's sums and dx) run in the C kernels of Sources/CKernels/include/batchnorm.h at `kernelLevel`:
///   each plane summed in 32 float lanes, the planes added in double, no fused multiply-add, the same
///   operations at every vector level (so the results do not depend on the CPU).
public final class BatchNorm2d {
    /// The vector level of the C kernels (`BISSL_LEVEL_AVX512`, `_AVX2` or `_BASELINE`): the widest this CPU
    /// has (`CPUFeatures`, which checks that the operating system saves the registers) and this build has
    /// kernels for. Every level computes the same values; tests set it to run each level this machine has.
    nonisolated(unsafe) static var kernelLevel: Int32 = {
        let f = CPUFeatures.current
        let cpu = f.avx512f ? BISSL_LEVEL_AVX512 : f.avx2 ? BISSL_LEVEL_AVX2 : BISSL_LEVEL_BASELINE
        return min(Int32(cpu), bissl_kernels_max_level())
    }()

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
    /// Statistics of the last forward (batch or running), per channel: mean, `1/sqrt(var + eps)`, and
    /// the forward as the affine map `y = x * scale + shift` (before a fused ReLU).
    private var mean: [Float] = []
    private var invStd: [Float] = []
    private var scale: [Float] = []
    private var shift: [Float] = []
    /// Whether the last forward applied the fused ReLU, and its mask when `ActivationPatterns` pinned it.
    private var fusedReLU = false
    private var pinnedMask: [Bool]?
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

    /// `out[c] = f(channel c's first plane, c)` for each channel of `x` (a `bissl_bn_*` sum over its
    /// N planes, stride `C·H·W`); channels in parallel, each by one thread (so the result does not depend
    /// on threads).
    private func perChannel(_ x: Tensor4, into out: inout [Double], _ f: (UnsafePointer<Float>, Int) -> Double) {
        let C = x.c, HW = x.h * x.w, N = x.n
        x.data.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                Parallel.forEachChunk(C, workPerIndex: N * HW, piecesPerThread: 4) { channels in
                    for c in channels { op[c] = f(xp.baseAddress! + c * HW, c) }
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

    /// Forward: x `[N, C, H, W]` -> y `[N, C, H, W]`; with `relu`, `max(y, 0)` (ReLU's rule, NaN stays NaN:
    /// `BatchNorm2d` then `torch.nn.ReLU` in one pass). Keeps `x` and the statistics used for `backward`.
    ///
    /// With `residual` (`[N, C, H, W]`, `relu` false, outside `ActivationPatterns`): `relu(y + residual)`, a
    /// ResNet block's last BatchNorm, residual add and output ReLU in one pass, the values of this forward
    /// without `residual` followed by `ReLU.forward(_:adding:)` (`bissl_bn_scale_shift_add_relu`). That ReLU is
    /// the caller's (`ReLU.record(output:)`): this layer's `backward` and tangent rules stay the BatchNorm's alone.
    public func forward(_ x: Tensor4, mode: Mode, relu: Bool = false, adding residual: Tensor4? = nil) -> Tensor4 {
        precondition(x.c == channels, "BatchNorm2d \(prefix): input has \(x.c) channels, expected \(channels)")
        precondition(residual.map { $0.shape == x.shape && !relu && ActivationPatterns.current == nil } ?? true,
                     "BatchNorm2d \(prefix): a residual of another shape, with the fused ReLU, or under activation patterns")
        input = x
        let C = channels, HW = x.h * x.w, N = x.n, M = N * HW
        let batch = mode.usesBatchStatistics
        let synchronize = batch ? Self.crossProcessSum : nil
        // Per channel: mean, 1/sqrt(var + eps), scale, shift (one buffer), and the biased variance in float64.
        var stats = [Float](repeating: 0, count: 4 * C)
        var variance = [Double](repeating: 0, count: C)
        var total = Double(M)
        let level = Self.kernelLevel, stride = C * HW
        if let synchronize {
            // SyncBatchNorm: Σx (pass 1) summed over the processes with their value counts before the
            // mean is taken, then Σ(x − μ)² about that mean (pass 2) likewise.
            var sums = [Double](repeating: 0, count: C + 1)
            sums[C] = Double(M)
            perChannel(x, into: &sums) { p, _ in bissl_bn_sum(level, p, N, stride, HW) }
            synchronize(&sums)
            total = sums[C]
            let mu = (0..<C).map { Float(sums[$0] / total) }
            perChannel(x, into: &variance) { p, c in bissl_bn_squared_deviation(level, p, N, stride, HW, mu[c]) }
            synchronize(&variance)
            for c in 0..<C { stats[c] = mu[c]; variance[c] /= total }
        } else if !batch {
            let (mu, inv) = runningNormalisation()
            for c in 0..<C { stats[c] = mu[c]; stats[C + c] = inv[c] }
        }
        // With the patterns of `ActivationPatterns` the mask is the recorded one, applied below.
        let patterns = relu ? ActivationPatterns.current : nil
        let rectify = relu && patterns == nil
        let gamma = weight.value, beta = bias.value, values = total
        let r = residual?.data ?? []
        var y = [Float](count: x.count) { yp in
            x.data.withUnsafeBufferPointer { xp in
                r.withUnsafeBufferPointer { rp in
                    stats.withUnsafeMutableBufferPointer { sp in
                        variance.withUnsafeMutableBufferPointer { vp in
                            let (xs, ys, st, va) = (xp.baseAddress!, yp.baseAddress!, sp.baseAddress!, vp.baseAddress!)
                            // Channel by channel (each written by one thread): without synchronisation its batch
                            // statistics, Σx then Σ(x − μ)² (float lanes per plane, the planes in float64 in
                            // order), and its output in one visit, while its N planes are in cache.
                            Parallel.forEachChunk(C, workPerIndex: 3 * N * HW, piecesPerThread: 4) { channels in
                                for c in channels {
                                    let plane0 = xs + c * HW
                                    if batch && synchronize == nil {
                                        let mu = Float(bissl_bn_sum(level, plane0, N, stride, HW) / values)
                                        st[c] = mu
                                        va[c] = bissl_bn_squared_deviation(level, plane0, N, stride, HW, mu) / values
                                    }
                                    if batch { st[C + c] = Float(1 / (va[c] + Double(eps)).squareRoot()) }
                                    let a = gamma[c] * st[C + c], b = beta[c] - st[c] * a
                                    st[2 * C + c] = a
                                    st[3 * C + c] = b
                                    if let rs = rp.baseAddress, residual != nil {
                                        bissl_bn_scale_shift_add_relu(level, plane0, N, stride, HW, a, b, rs + c * HW, ys + c * HW)
                                    } else {
                                        bissl_bn_scale_shift(level, plane0, N, stride, HW, a, b, rectify ? 1 : 0, ys + c * HW)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if let patterns {
            let mask = patterns.reluMask(y)
            pinnedMask = mask
            y.withUnsafeMutableBufferPointer { yp in
                mask.withUnsafeBufferPointer { mp in
                    reluGate(yp.baseAddress!, yp.baseAddress!, mp.baseAddress!, yp.count, 0, 0, into: yp.baseAddress!)
                }
            }
        } else {
            pinnedMask = nil
        }
        mean = Array(stats[0..<C])
        invStd = Array(stats[C..<(2 * C)])
        scale = Array(stats[(2 * C)..<(3 * C)])
        shift = Array(stats[(3 * C)...])
        if batch {
            synchronizedCount = synchronize == nil ? nil : total
            let unbiased = (0..<C).map { Float(total > 1 ? variance[$0] * total / (total - 1) : variance[$0]) }
            batchStatistics = (mean, unbiased)
            if mode == .train { updateRunningStatistics(mean: mean, unbiasedVariance: unbiased) }
        } else {
            synchronizedCount = nil
        }
        fusedReLU = relu
        lastMode = mode
        return Tensor4(n: N, c: C, h: x.h, w: x.w, data: y)
    }

    private var lastMode: Mode = .eval

    /// The eval-mode normalisation: `running_mean` and `1/sqrt(running_var + eps)` per channel.
    private func runningNormalisation() -> (mean: [Float], invStd: [Float]) {
        (runningMean, runningVar.map { 1 / ($0 + eps).squareRoot() })
    }

    /// The eval-mode forward as `y = x * scale + shift` per channel (`[C]` each; the same values the
    /// eval-mode `forward` applies), for folding this BatchNorm into the convolution before it
    /// (`Conv2d.infer`). Reads only the parameters and running statistics.
    public func evalAffine() -> (scale: [Float], shift: [Float]) {
        let (mean, invStd) = runningNormalisation()
        let scale = (0..<channels).map { weight.value[$0] * invStd[$0] }
        return (scale, (0..<channels).map { bias.value[$0] - mean[$0] * scale[$0] })
    }

    /// The planes of channel `c` of `t` (dy, or its tangent R{dy}) as this layer's rules see them:
    /// through the fused ReLU's mask (copied into `scratch`, `N·H·W` floats) when the forward had one,
    /// else `t`'s own planes.
    @inline(__always)
    private func gated(_ t: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ mask: UnsafePointer<Bool>?,
                       _ a: Float, _ b: Float, channel c: Int, n N: Int, plane HW: Int,
                       scratch: UnsafeMutablePointer<Float>) -> ChannelPlanes {
        guard fusedReLU else { return ChannelPlanes(t, channel: c, channels: channels, plane: HW) }
        for n in 0..<N {
            let off = (n * channels + c) * HW
            reluGate(t + off, x + off, mask.map { $0 + off }, HW, a, b, into: scratch + n * HW)
        }
        return ChannelPlanes(scratch, plane: HW)
    }

    /// Backward: dy `[N, C, H, W]` -> dx. Accumulates `dL/dgamma`, `dL/dbeta`. In train mode the
    /// gradient flows through the batch statistics:
    /// `dx = gamma * invstd * (dy - a - xhat * b)`, `a = mean(dy)`, `b = mean(dy * xhat)`; in eval mode
    /// `dx = gamma * invstd * dy`. After a forward with the fused ReLU, dy is first masked as ReLU's
    /// backward does. After a synchronised forward (`crossProcessSum`) process r's means are
    /// `a = Σ_r' M_r' Σdy_r' / (M_r Σ_r' M_r')` (b likewise; M_r: its values per channel): the gradient
    /// of the concatenated batch's loss `Σ_r (M_r/ΣM) L_r` with respect to its input, divided by its
    /// weight M_r/ΣM (PyTorch's SyncBatchNorm backward with equal shards, where the weights cancel).
    public func backward(_ dy: Tensor4) -> Tensor4 {
        guard let x = input else { preconditionFailure("BatchNorm2d \(prefix): backward before forward") }
        precondition(dy.shape == x.shape, "BatchNorm2d \(prefix): gradient shape \(dy.shape) vs \(x.shape)")
        let (C, M) = (channels, Float(x.n * x.h * x.w))
        let batchStatistics = lastMode.usesBatchStatistics
        // sums[2c] = Σ dy·xhat, sums[2c+1] = Σ dy over the channel's values.
        var sums = [Double](repeating: 0, count: 2 * C)
        var dx = [Float](count: x.count) { _ in }
        if batchStatistics, let total = synchronizedCount {
            guard let synchronize = Self.crossProcessSum else {
                preconditionFailure("BatchNorm2d \(prefix): backward of a synchronised forward outside the synchronisation")
            }
            // The sums of every process before any dx: two visits per channel.
            sums.withUnsafeMutableBufferPointer { sp in backwardVisit(dy, x, sums: sp.baseAddress!, means: nil, dx: nil) }
            var weighted = sums.map { $0 * Double(M) }
            synchronize(&weighted)
            let means = weighted.map { Float($0 / (Double(M) * total)) }
            sums.withUnsafeMutableBufferPointer { sp in
                means.withUnsafeBufferPointer { mp in
                    dx.withUnsafeMutableBufferPointer { backwardVisit(dy, x, sums: sp.baseAddress!, means: mp.baseAddress!, dx: $0.baseAddress!) }
                }
            }
        } else {
            sums.withUnsafeMutableBufferPointer { sp in
                dx.withUnsafeMutableBufferPointer { backwardVisit(dy, x, sums: sp.baseAddress!, means: nil, dx: $0.baseAddress!) }
            }
        }
        accumulateGradients(sums)
        if Tangents.recording {
            outputGradient = dy
            outputGradientSums = sums
        }
        return Tensor4(n: x.n, c: C, h: x.h, w: x.w, data: dx)
    }

    /// One visit per channel of `backward` (each channel by one thread), g = dy through the fused ReLU:
    /// without `dx`, stores `(Σ g·x̂, Σ g)` into `sums[2c]`, `sums[2c+1]`; with `dx` and `means`
    /// (`[b_0, a_0, b_1, a_1, ...]`, synchronised), writes `dx = γs(g − a − x̂b)`; with `dx` alone, both,
    /// the means from the channel's own sums (batch statistics) or 0 (eval mode).
    private func backwardVisit(_ dy: Tensor4, _ x: Tensor4, sums: UnsafeMutablePointer<Double>, means: UnsafePointer<Float>?,
                               dx: UnsafeMutablePointer<Float>?) {
        let (C, HW, N, M) = (channels, x.h * x.w, x.n, Float(x.n * x.h * x.w))
        let mean = self.mean, invStd = self.invStd, gamma = weight.value, scale = self.scale, shift = self.shift
        let batchStatistics = lastMode.usesBatchStatistics
        let level = Self.kernelLevel, stride = C * HW
        x.data.withUnsafeBufferPointer { xp in
            dy.data.withUnsafeBufferPointer { gp in
                withMask { mask in
                    // The fused ReLU's gate without a pinned mask is applied inside the kernels, recomputed from
                    // x in each pass (nothing stored); a pinned mask gates dy into `scratch` first.
                    let gateInKernels = fusedReLU && mask == nil
                    Parallel.forEachChunk(C, workPerIndex: 2 * N * HW, piecesPerThread: 4) { channels in
                        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: fusedReLU && !gateInKernels ? N * HW : 0)
                        defer { scratch.deallocate() }
                        for c in channels {
                            let mu = mean[c], inv = invStd[c], a = scale[c], b = shift[c]
                            let x0 = xp.baseAddress! + c * HW
                            let g = gateInKernels ? ChannelPlanes(gp.baseAddress!, channel: c, channels: C, plane: HW)
                                : gated(gp.baseAddress!, xp.baseAddress!, mask, a, b, channel: c, n: N, plane: HW, scratch: scratch)
                            let gate: Int32 = gateInKernels ? 1 : 0
                            if means == nil {
                                bissl_bn_gate_sums(level, g.base, g.stride, x0, stride, N, HW, gate, a, b, mu, inv, sums + 2 * c)
                            }
                            guard let dx else { continue }
                            let meanDyXhat = means?[2 * c] ?? (batchStatistics ? Float(sums[2 * c]) / M : 0)
                            let meanDy = means?[2 * c + 1] ?? (batchStatistics ? Float(sums[2 * c + 1]) / M : 0)
                            bissl_bn_input_gradient(level, g.base, g.stride, x0, stride, N, HW, gate, a, b, mu, inv, gamma[c] * inv,
                                                    meanDy, meanDyXhat, batchStatistics ? 1 : 0, dx + c * HW)
                        }
                    }
                }
            }
        }
    }

    /// `body` with the pinned mask of the last forward (nil without one).
    private func withMask<T>(_ body: (UnsafePointer<Bool>?) -> T) -> T {
        guard let pinnedMask else { return body(nil) }
        return pinnedMask.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    // Tangent rules (docs/bissl.md, "Exact Hessian-vector products"), per channel, with x̂ = (x − μ)s,
    // s = (σ² + ε)^-1/2, directions γ̇ = `weight.tangent`, β̇ = `bias.tangent` (empty: 0), means over
    // the M = N·H·W values of the channel. Train mode (batch statistics):
    //   μ̇ = mean(ẋ),  m = mean(x̂ ẋ),  ṡ = −s² m,  x̂̇ = s (ẋ − μ̇ − x̂ m),  ẏ = γ̇ x̂ + γ x̂̇ + β̇
    //   backward dx = γ s (dy − a − x̂ b), a = mean(dy), b = mean(dy x̂), dγ = Σ dy x̂, dβ = Σ dy
    //   R{dx} = (γ̇ s + γ ṡ)(dy − a − x̂ b) + γ s (R{dy} − ȧ − x̂̇ b − x̂ ḃ),
    //   ȧ = mean(R{dy}), ḃ = mean(R{dy} x̂ + dy x̂̇),  R{dγ} = Σ (R{dy} x̂ + dy x̂̇),  R{dβ} = Σ R{dy}.
    // Eval mode (running statistics, constants): x̂̇ = s ẋ, ṡ = 0 and a = b = ȧ = ḃ = 0 in R{dx}.
    // With the fused ReLU (a fixed 0/1 mask, ReLU'' = 0): ẏ is masked, and dy and R{dy} are masked
    // before the rules above, as the separate layers would do.

    /// dy of the primal backward (kept inside `Tangents.record`) with its per-channel sums
    /// `[Σ dy x̂, Σ dy]` (dy through the fused ReLU); ẋ of the last tangent forward with its per-channel
    /// `[μ̇, m]` (x̂̇ = s(ẋ − μ̇ − x̂m) is recomputed from them, not stored) and ṡ.
    private var outputGradient: Tensor4?
    private var outputGradientSums: [Double] = []
    private var tangentInput: Tensor4?
    private var tangentMeans: [Float] = []
    private var tangentInvStd: [Float] = []

    /// Tangent forward: ẋ -> ẏ (shape `[N, C, H, W]`), at the primal forward's input and statistics.
    public func tangentForward(_ dotX: Tensor4) -> Tensor4 {
        guard let x = input else { preconditionFailure("BatchNorm2d \(prefix): tangent before forward") }
        precondition(synchronizedCount == nil, "BatchNorm2d \(prefix): no tangent rule for a synchronised forward (SyncBatchNorm)")
        precondition(dotX.shape == x.shape, "BatchNorm2d \(prefix): tangent shape \(dotX.shape) vs \(x.shape)")
        let (C, HW, N, M) = (channels, x.h * x.w, x.n, Float(x.n * x.h * x.w))
        let mean = self.mean, invStd = self.invStd, gamma = weight.value, batch = lastMode.usesBatchStatistics
        let scale = self.scale, shift = self.shift, fused = fusedReLU
        let dGamma = weight.tangentOrZeros, dBeta = bias.tangentOrZeros
        // Per channel: μ̇, m (0 in eval mode) and ṡ.
        var dMeans = [Float](repeating: 0, count: 2 * C)
        var dInv = [Float](repeating: 0, count: C)
        var dy = [Float](count: x.count) { _ in }
        x.data.withUnsafeBufferPointer { xp in
            dotX.data.withUnsafeBufferPointer { tp in
                dy.withUnsafeMutableBufferPointer { yp in
                    dMeans.withUnsafeMutableBufferPointer { mp in
                        dInv.withUnsafeMutableBufferPointer { ip in
                            withMask { mask in
                                Parallel.forEachChunk(C, workPerIndex: 3 * N * HW, piecesPerThread: 4) { channels in
                                    for c in channels {
                                        let mu = mean[c], s = invStd[c]
                                        var dmu: Float = 0, m: Float = 0
                                        if batch {
                                            let (a, b) = channelSums(ChannelPlanes(tp.baseAddress!, channel: c, channels: C, plane: HW),
                                                                     ChannelPlanes(xp.baseAddress!, channel: c, channels: C, plane: HW),
                                                                     N, HW, mu, s)
                                            dmu = Float(a) / M; m = Float(b) / M
                                            ip[c] = -s * s * m
                                            mp[2 * c] = dmu
                                            mp[2 * c + 1] = m
                                        }
                                        let g = gamma[c], dg = dGamma[c], db = dBeta[c]
                                        for n in 0..<N {
                                            let off = (n * C + c) * HW
                                            let xs = xp.baseAddress! + off, ts = tp.baseAddress! + off, ys = yp.baseAddress! + off
                                            for i in 0..<HW {
                                                let xhat = (xs[i] - mu) * s
                                                let h = s * (ts[i] - dmu - xhat * m)
                                                ys[i] = dg * xhat + g * h + db
                                            }
                                            if fused { reluGate(ys, xs, mask.map { $0 + off }, HW, scale[c], shift[c], into: ys) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        tangentInput = dotX
        tangentMeans = dMeans
        tangentInvStd = dInv
        return Tensor4(n: N, c: C, h: x.h, w: x.w, data: dy)
    }

    /// Tangent backward: R{dy} -> R{dx}; accumulates R{dγ}, R{dβ} into `weight.grad`, `bias.grad`.
    /// Needs the primal backward's dy (inside `Tangents.record`) and the last `tangentForward`.
    public func tangentBackward(_ rdy: Tensor4) -> Tensor4 {
        guard let x = input, let dy = outputGradient, let dotX = tangentInput else {
            preconditionFailure("BatchNorm2d \(prefix): tangent backward without a recorded primal backward and a tangent forward")
        }
        precondition(rdy.shape == x.shape && dotX.shape == x.shape, "BatchNorm2d \(prefix): tangent backward out of order")
        let (C, HW, N, M) = (channels, x.h * x.w, x.n, Float(x.n * x.h * x.w))
        let mean = self.mean, invStd = self.invStd, gamma = weight.value, batch = lastMode.usesBatchStatistics
        let scale = self.scale, shift = self.shift, primalSums = outputGradientSums, dMeans = tangentMeans
        let dGamma = weight.tangentOrZeros, dInv = tangentInvStd
        var sums = [Double](repeating: 0, count: 2 * C)
        var rdx = [Float](count: x.count) { _ in }
        x.data.withUnsafeBufferPointer { xp in
            dy.data.withUnsafeBufferPointer { gp in
                rdy.data.withUnsafeBufferPointer { rp in
                    dotX.data.withUnsafeBufferPointer { tp in
                        rdx.withUnsafeMutableBufferPointer { op in
                            sums.withUnsafeMutableBufferPointer { sp in
                                withMask { mask in
                                    Parallel.forEachChunk(C, workPerIndex: 5 * N * HW, piecesPerThread: 4) { channels in
                                        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: fusedReLU ? 2 * N * HW : 0)
                                        defer { scratch.deallocate() }
                                        for c in channels {
                                            let mu = mean[c], s = invStd[c], dmu = dMeans[2 * c], m = dMeans[2 * c + 1]
                                            let xs = ChannelPlanes(xp.baseAddress!, channel: c, channels: C, plane: HW)
                                            let ts = ChannelPlanes(tp.baseAddress!, channel: c, channels: C, plane: HW)
                                            let gs = gated(gp.baseAddress!, xp.baseAddress!, mask, scale[c], shift[c], channel: c, n: N,
                                                           plane: HW, scratch: scratch)
                                            let rs = gated(rp.baseAddress!, xp.baseAddress!, mask, scale[c], shift[c], channel: c, n: N,
                                                           plane: HW, scratch: scratch + N * HW)
                                            let (sdyx, sdy) = (primalSums[2 * c], primalSums[2 * c + 1])
                                            let (sr, srx) = channelSums(rs, xs, N, HW, mu, s)
                                            var sdyh: Double = 0
                                            for n in 0..<N { sdyh += Double(sumTimesXhatTangent(gs[n], xs[n], ts[n], HW, mu, s, dmu, m)) }
                                            sp[2 * c] = srx + sdyh
                                            sp[2 * c + 1] = sr
                                            let a = batch ? Float(sdy) / M : 0, b = batch ? Float(sdyx) / M : 0
                                            let ra = batch ? Float(sr) / M : 0, rb = batch ? Float(srx + sdyh) / M : 0
                                            let outer = dGamma[c] * s + gamma[c] * dInv[c], inner = gamma[c] * s
                                            for n in 0..<N {
                                                let xn = xs[n], gn = gs[n], rn = rs[n], tn = ts[n]
                                                let os = op.baseAddress! + (n * C + c) * HW
                                                for i in 0..<HW {
                                                    let xhat = (xn[i] - mu) * s
                                                    let h = s * (tn[i] - dmu - xhat * m)
                                                    os[i] = outer * (gn[i] - a - xhat * b) + inner * (rn[i] - ra - h * b - xhat * rb)
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

/// The N planes `[H, W]` of one channel: plane n at `base + n * stride` (stride `C·H·W` in an NCHW
/// buffer, `H·W` in a contiguous copy of the channel).
struct ChannelPlanes {
    let base: UnsafePointer<Float>, stride: Int

    /// Channel `c` of an NCHW buffer with `channels` channels of `plane = H·W` values.
    @inline(__always) init(_ data: UnsafePointer<Float>, channel c: Int, channels: Int, plane: Int) {
        base = data + c * plane
        stride = channels * plane
    }

    /// N planes of `plane` values one after the other.
    @inline(__always) init(_ data: UnsafeMutablePointer<Float>, plane: Int) {
        base = UnsafePointer(data)
        stride = plane
    }

    @inline(__always) subscript(n: Int) -> UnsafePointer<Float> { base + n * stride }
}

/// `(Σ t, Σ t x̂)` of one channel's `n` planes of `plane` values, `x̂ = (x − mean)·invStd`
/// (`bissl_bn_gate_sums` without the gate: each plane summed in float lanes, the planes added in double).
@inline(__always) func channelSums(_ t: ChannelPlanes, _ x: ChannelPlanes, _ n: Int, _ plane: Int,
                                   _ mean: Float, _ invStd: Float) -> (Double, Double) {
    var sums: (Double, Double) = (0, 0)
    withUnsafeMutableBytes(of: &sums) {
        bissl_bn_gate_sums(BatchNorm2d.kernelLevel, t.base, t.stride, x.base, x.stride, n, plane, 0, 0, 0, mean, invStd,
                           $0.baseAddress!.assumingMemoryBound(to: Double.self))
    }
    return (sums.1, sums.0)
}

/// ReLU's backward rule for `count` values of a fused BatchNorm -> ReLU: `out[i] = keep ? t[i] : 0`
/// with `keep = mask[i]` when a mask was pinned, else `x[i] * a + b > 0`, the forward's pre-activation
/// recomputed with the same operations (`bissl_bn_scale_shift`), so the same decision. `out` may be `t`.
@inline(__always) func reluGate(_ t: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ mask: UnsafePointer<Bool>?, _ count: Int,
                                _ a: Float, _ b: Float, into out: UnsafeMutablePointer<Float>) {
    if let mask {
        for i in 0..<count { let v = t[i]; out[i] = mask[i] ? v : 0 }   // load first: a select, not a branch
        return
    }
    let ts = UnsafeRawPointer(t), xs = UnsafeRawPointer(x), o = UnsafeMutableRawPointer(out)
    let va = SIMD8<Float>(repeating: a), vb = SIMD8<Float>(repeating: b)
    var i = 0
    while i + 8 <= count {
        let pre = xs.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) * va + vb
        let v = ts.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
        o.storeBytes(of: SIMD8<Float>.zero.replacing(with: v, where: pre .> 0), toByteOffset: 4 * i, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { out[i] = x[i] * a + b > 0 ? t[i] : 0; i += 1 }
}

/// `Σ g[i]·x̂̇[i]` over `count` floats, 8 lanes, with the tangent of the normalised input recomputed
/// as the tangent forward computes it: `x̂̇ = s(ẋ − μ̇ − x̂m)`, `x̂ = (x − mean)s`.
@inline(__always) func sumTimesXhatTangent(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dotX: UnsafePointer<Float>,
                                           _ count: Int, _ mean: Float, _ s: Float, _ dmu: Float, _ m: Float) -> Float {
    let (vm, vs, vd, vmm) = (SIMD8<Float>(repeating: mean), SIMD8<Float>(repeating: s), SIMD8<Float>(repeating: dmu),
                             SIMD8<Float>(repeating: m))
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        let xhat = (UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - vm) * vs
        let h = vs * (UnsafeRawPointer(dotX + i).loadUnaligned(as: SIMD8<Float>.self) - vd - xhat * vmm)
        acc += UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self) * h
        i += 8
    }
    var sum = acc.sum()
    while i < count {
        let xhat = (x[i] - mean) * s
        sum += g[i] * (s * (dotX[i] - dmu - xhat * m))
        i += 1
    }
    return sum
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
