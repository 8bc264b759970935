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
                        Parallel.forEachChunk(vp.count) { r in for i in r { v[i] -= lr * (g[i] + weightDecay * v[i]) } }
                        return
                    }
                    buffers![k].withUnsafeMutableBufferPointer { bp in
                        let b = bp.baseAddress!
                        Parallel.forEachChunk(vp.count) { r in
                            for i in r {
                                let d = g[i] + weightDecay * v[i]
                                let m = first ? d : momentum * b[i] + keep * d
                                b[i] = m
                                v[i] -= lr * (nesterov ? d + momentum * m : m)
                            }
                        }
                    }
                }
            }
        }
    }
}
