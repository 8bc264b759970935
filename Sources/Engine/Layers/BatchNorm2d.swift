/// Batch normalisation over `[N, C, H, W]`, exactly `torch.nn.BatchNorm2d(C, eps=1e-5, momentum=0.1)`
/// (https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html, Ioffe & Szegedy,
/// arXiv:1502.03167).
///
/// - Train: per channel, mean and *biased* variance over `N*H*W` normalise;
///   `running_mean = (1 - momentum) * running_mean + momentum * mean`,
///   `running_var = (1 - momentum) * running_var + momentum * var * M / (M - 1)` (the *unbiased*
///   variance, `M = N*H*W`), `num_batches_tracked += 1`.
/// - Eval: `running_mean` / `running_var` normalise.
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
            var variance = [Double](repeating: 0, count: C)
            let eps = Double(self.eps)
            x.data.withUnsafeBufferPointer { xp in
                mean.withUnsafeMutableBufferPointer { meanp in
                    invStd.withUnsafeMutableBufferPointer { invp in
                        variance.withUnsafeMutableBufferPointer { varp in
                            // Each channel's statistics come from one thread, in a fixed order.
                            Parallel.forEachChunk(C, workPerIndex: 2 * M) { channels in
                                for c in channels {
                                    var s: Double = 0
                                    for n in 0..<N { s += Double(sumFloat(xp.baseAddress! + (n * C + c) * HW, HW)) }
                                    let mu = s / Double(M)
                                    var v: Double = 0
                                    for n in 0..<N { v += Double(sumSquaredDeviation(xp.baseAddress! + (n * C + c) * HW, HW, Float(mu))) }
                                    meanp[c] = Float(mu)
                                    varp[c] = v / Double(M)
                                    invp[c] = Float(1 / (varp[c] + eps).squareRoot())
                                }
                            }
                        }
                    }
                }
            }
            if mode == .train {
                for c in 0..<C {
                    let unbiased = M > 1 ? variance[c] * Double(M) / Double(M - 1) : variance[c]
                    runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean[c]
                    runningVar[c] = (1 - momentum) * runningVar[c] + momentum * Float(unbiased)
                }
                numBatchesTracked += 1
            }
        } else {
            for c in 0..<C {
                mean[c] = runningMean[c]
                invStd[c] = 1 / (runningVar[c] + eps).squareRoot()
            }
        }
        self.mean = mean
        self.invStd = invStd
        let scale = (0..<C).map { weight.value[$0] * invStd[$0] }
        let shift = (0..<C).map { bias.value[$0] - mean[$0] * scale[$0] }
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

    /// Backward: dy `[N, C, H, W]` -> dx. Accumulates `dL/dgamma`, `dL/dbeta`. In train mode the
    /// gradient flows through the batch statistics:
    /// `dx = gamma * invstd / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))`; in eval mode `dx = gamma * invstd * dy`.
    public func backward(_ dy: Tensor4) -> Tensor4 {
        guard let x = input else { preconditionFailure("BatchNorm2d \(prefix): backward before forward") }
        let C = channels, HW = x.h * x.w, N = x.n, M = Float(N * HW)
        var dx = [Float](unsafeUninitializedCapacity: x.count) { _, initialized in initialized = x.count }
        let mean = self.mean, invStd = self.invStd, gamma = weight.value, batchStatistics = lastMode.usesBatchStatistics
        var sums = [Double](repeating: 0, count: 2 * C)
        x.data.withUnsafeBufferPointer { xp in
            dy.data.withUnsafeBufferPointer { gp in
                dx.withUnsafeMutableBufferPointer { dxp in
                  sums.withUnsafeMutableBufferPointer { sp in
                    // Each channel is reduced and written by one thread.
                    Parallel.forEachChunk(C, workPerIndex: 3 * N * HW) { channels in
                    for c in channels {
                        let mu = mean[c], inv = invStd[c]
                        var sumDy: Double = 0, sumDyXhat: Double = 0
                        for n in 0..<N {
                            let off = (n * C + c) * HW
                            let (a, b) = sumsForBackward(gp.baseAddress! + off, xp.baseAddress! + off, HW, mu, inv)
                            sumDy += Double(a); sumDyXhat += Double(b)
                        }
                        sp[2 * c] = sumDyXhat
                        sp[2 * c + 1] = sumDy
                        let g = gamma[c] * inv
                        if batchStatistics {
                            let meanDy = Float(sumDy) / M, meanDyXhat = Float(sumDyXhat) / M
                            for n in 0..<N {
                                let off = (n * C + c) * HW
                                let src = gp.baseAddress! + off, xs = xp.baseAddress! + off, dst = dxp.baseAddress! + off
                                for i in 0..<HW {
                                    let xhat = (xs[i] - mu) * inv
                                    dst[i] = g * (src[i] - meanDy - xhat * meanDyXhat)
                                }
                            }
                        } else {
                            for n in 0..<N {
                                let off = (n * C + c) * HW
                                let src = gp.baseAddress! + off, dst = dxp.baseAddress! + off
                                for i in 0..<HW { dst[i] = g * src[i] }
                            }
                        }
                    }
                    }
                  }
                }
            }
        }
        for c in 0..<C {
            weight.grad[c] += Float(sums[2 * c])
            bias.grad[c] += Float(sums[2 * c + 1])
        }
        return Tensor4(n: N, c: C, h: x.h, w: x.w, data: dx)
    }
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
