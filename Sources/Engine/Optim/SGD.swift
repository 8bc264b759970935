/// Stochastic gradient descent exactly as `torch.optim.SGD` (https://pytorch.org/docs/stable/generated/torch.optim.SGD.html),
/// per parameter `p` with gradient `g`:
///
///     d = g + weightDecay * p
///     if momentum != 0:  buf = d on the first step, else buf = momentum * buf + (1 - dampening) * d
///                        d = nesterov ? d + momentum * buf : buf
///     p -= lr * d
public final class SGD {
    public let parameters: [Parameter]
    /// Learning rate used by the next `step()` (a schedule sets it).
    public var lr: Float
    public let momentum: Float, weightDecay: Float, dampening: Float, nesterov: Bool
    /// Momentum buffers, one per parameter, created on the first step (`momentum_buffer`).
    public var buffers: [[Float]]?

    public init(parameters: [Parameter], lr: Float, momentum: Float = 0, weightDecay: Float = 0,
                dampening: Float = 0, nesterov: Bool = false) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum requires a momentum and zero dampening")
        self.parameters = parameters; self.lr = lr; self.momentum = momentum
        self.weightDecay = weightDecay; self.dampening = dampening; self.nesterov = nesterov
    }

    /// One update of every parameter from its current `grad`: one pass over each tensor (value,
    /// gradient and momentum buffer read once, the buffer and value written once), spread over the cores;
    /// each element's arithmetic is the rule above in its order, so the result does not depend on threads.
    public func step() {
        let first = buffers == nil
        if first && momentum != 0 { buffers = parameters.map { [Float](repeating: 0, count: $0.count) } }
        // Hyperparameters as locals so the loops below vectorise.
        let lr = lr, momentum = momentum, weightDecay = weightDecay, keep = 1 - dampening, nesterov = nesterov
        for (k, p) in parameters.enumerated() where p.count > 0 {
            p.value.withUnsafeMutableBufferPointer { vp in
                p.grad.withUnsafeBufferPointer { gp in
                    let v = vp.baseAddress!, g = gp.baseAddress!
                    if momentum == 0 {
                        Parallel.forEachChunk(vp.count, piecesPerThread: 4) { r in
                            SGD.update(r, v, g, nil, lr: lr, momentum: 0, weightDecay: weightDecay, keep: keep, first: true, nesterov: false)
                        }
                        return
                    }
                    buffers![k].withUnsafeMutableBufferPointer { bp in
                        let b = bp.baseAddress!
                        Parallel.forEachChunk(vp.count, piecesPerThread: 4) { r in
                            // one loop per case, so that each is a straight vector loop
                            switch (first, nesterov) {
                            case (true, false): SGD.update(r, v, g, b, lr: lr, momentum: momentum, weightDecay: weightDecay, keep: keep, first: true, nesterov: false)
                            case (false, false): SGD.update(r, v, g, b, lr: lr, momentum: momentum, weightDecay: weightDecay, keep: keep, first: false, nesterov: false)
                            case (true, true): SGD.update(r, v, g, b, lr: lr, momentum: momentum, weightDecay: weightDecay, keep: keep, first: true, nesterov: true)
                            case (false, true): SGD.update(r, v, g, b, lr: lr, momentum: momentum, weightDecay: weightDecay, keep: keep, first: false, nesterov: true)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The rule of `step` for elements `r`, 8 lanes at a time (each lane the scalar rule's operations in its
    /// order, no fused multiply-adds, so the same values as element by element); `b` nil: no momentum.
    @inline(__always)
    private static func update(_ r: Range<Int>, _ v: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>,
                               _ b: UnsafeMutablePointer<Float>?, lr: Float, momentum: Float, weightDecay: Float, keep: Float,
                               first: Bool, nesterov: Bool) {
        let vr = UnsafeMutableRawPointer(v), gr = UnsafeRawPointer(g)
        let (l8, m8, w8, k8) = (SIMD8<Float>(repeating: lr), SIMD8<Float>(repeating: momentum), SIMD8<Float>(repeating: weightDecay),
                                SIMD8<Float>(repeating: keep))
        var i = r.lowerBound
        while i + 8 <= r.upperBound {
            let x = vr.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            let d = gr.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) + w8 * x
            var step = d
            if let b {
                let br = UnsafeMutableRawPointer(b)
                let m = first ? d : m8 * br.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) + k8 * d
                br.storeBytes(of: m, toByteOffset: 4 * i, as: SIMD8<Float>.self)
                step = nesterov ? d + m8 * m : m
            }
            vr.storeBytes(of: x - l8 * step, toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < r.upperBound {
            let d = g[i] + weightDecay * v[i]
            var step = d
            if let b {
                let m = first ? d : momentum * b[i] + keep * d
                b[i] = m
                step = nesterov ? d + momentum * m : m
            }
            v[i] -= lr * step
            i += 1
        }
    }
}
