/// LARS (You et al., arXiv:1708.03888) as BiSSL's R5 `source/optimizers.py` implements it (method brief 5.5),
/// applied to every parameter (biases and BN included), per parameter `p` with gradient `g`:
///
///     d = g + weightDecay * p
///     if ||p|| > 0 and ||d|| > 0:  d = d * (eta * ||p|| / ||d||)
///     mu = momentum * mu + d          (mu starts at 0)
///     p -= lr * mu
///
/// BiSSL's lower level: lr 1.0 (scheduled), weightDecay 1e-6, momentum 0.9, eta 0.001.
public final class LARS {
    public let parameters: [Parameter]
    public var lr: Float
    public let momentum: Float, weightDecay: Float, eta: Float
    /// `mu`, one per parameter.
    public var buffers: [[Float]]

    public init(parameters: [Parameter], lr: Float, momentum: Float = 0.9, weightDecay: Float = 1e-6, eta: Float = 0.001) {
        self.parameters = parameters; self.lr = lr; self.momentum = momentum
        self.weightDecay = weightDecay; self.eta = eta
        buffers = parameters.map { [Float](repeating: 0, count: $0.count) }
    }

    public func step() {
        for (k, p) in parameters.enumerated() {
            var d = p.grad
            for i in d.indices { d[i] += weightDecay * p.value[i] }
            let pNorm = l2Norm(p.value), dNorm = l2Norm(d)
            if pNorm > 0 && dNorm > 0 {
                let q = Float(Double(eta) * pNorm / dNorm)
                for i in d.indices { d[i] *= q }
            }
            for i in d.indices {
                buffers[k][i] = momentum * buffers[k][i] + d[i]
                p.value[i] -= lr * buffers[k][i]
            }
        }
    }
}

/// Euclidean norm, accumulated in Double.
func l2Norm(_ x: [Float]) -> Double {
    var s: Double = 0
    for v in x { s += Double(v) * Double(v) }
    return s.squareRoot()
}
