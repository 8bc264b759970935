/// Global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_(parameters, maxNorm)` (norm type 2,
/// https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html):
/// `total = sqrt(sum over tensors of ||g||^2)`; every gradient is multiplied by
/// `min(maxNorm / (total + 1e-6), 1)`.
/// - Returns: the total norm before clipping.
@discardableResult
public func clipGradNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    var sq: Double = 0
    for p in parameters { let n = l2Norm(p.grad); sq += n * n }
    let total = Float(sq.squareRoot())
    let coef = min(maxNorm / (total + 1e-6), 1)
    if coef < 1 {
        for p in parameters { p.grad.withUnsafeMutableBufferPointer { g in for i in g.indices { g[i] *= coef } } }
    }
    return total
}
