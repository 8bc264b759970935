/// LARS (You et al., arXiv:1708.03888) as BiSSL's the reference implementation implements it (docs/bissl.md, "Optimisers and schedule"),
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
        // Hyperparameters as locals so the loops below vectorise.
        let lr = lr, momentum = momentum, weightDecay = weightDecay, eta = Double(eta)
        for (k, p) in parameters.enumerated() {
            var d = p.grad
            let n = d.count
            p.value.withUnsafeMutableBufferPointer { v in
                let v = v   // pointers by value: the loops vectorise
                d.withUnsafeMutableBufferPointer { d in
                    let d = d
                    for i in 0..<n { d[i] += weightDecay * v[i] }
                    let pNorm = l2Norm(UnsafeBufferPointer(v)), dNorm = l2Norm(UnsafeBufferPointer(d))
                    if pNorm > 0 && dNorm > 0 {
                        let q = Float(eta * pNorm / dNorm)
                        for i in 0..<n { d[i] *= q }
                    }
                    buffers[k].withUnsafeMutableBufferPointer { b in
                        let b = b
                        for i in 0..<n {
                            b[i] = momentum * b[i] + d[i]
                            v[i] -= lr * b[i]
                        }
                    }
                }
            }
        }
    }
}
