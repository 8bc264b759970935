import Foundation

/// Hessian-vector products of a loss with respect to a set of parameters (BiSSL: the backbone
/// parameters θ, pretext loss on a fixed batch; docs/bissl.md, "Problem and hypergradient") by finite differences of gradients:
///
/// - forward:  `Hv ≈ (∇L(θ + εv) − ∇L(θ)) / ε`, reusing the cached `∇L(θ)`: one gradient per product;
/// - central:  `Hv ≈ (∇L(θ + εv) − ∇L(θ − εv)) / (2ε)`: two gradients per product, error O(ε²).
///
/// **Step size.** `ε = c · (1 + ‖θ‖) / ‖v‖`, so the parameter step `εv` has norm `c · (1 + ‖θ‖)`, with
/// `c = 1e-5` for both schemes (`relativeStep` overrides it). Why not the textbook `c = sqrt(u) ≈ 3.5e-4`
/// (forward) or `u^(1/3) ≈ 4.9e-3` (central), `u = 2^-23` (Nocedal & Wright, *Numerical Optimization*,
/// 2nd ed., 8.1)? A ResNet's gradient is only piecewise smooth: whenever the step moves a ReLU input (or a
/// max-pool winner) across its kink, the gradient jumps by that unit's whole contribution and the
/// difference quotient is no longer the Hessian that double backward computes. On the narrow parity
/// net (tests: SimCLR loss, ResNet-18 width 6, 8 images of 16x16) the first kink is crossed at
/// `c ≈ 2e-5`-`3e-5` (cosine to the exact product falls to 0.3-0.5); below `c ≈ 5e-6` float32 rounding
/// of the gradients dominates (relative error > 1e-2). `c = 1e-5` sits in that window: PyTorch's own
/// float32 gradients give cosine 0.9999 and relative error 0.017 (forward) / 0.004 (central) there, ours
/// 0.0069 / 0.0043. The window narrows as the number of activations grows, so on large networks and
/// batches the finite-difference product is a kink-smoothed Hessian rather than double backward's.
///
/// **BatchNorm.** Every probe gradient is computed with `Mode.trainFrozenStatistics`: batch statistics
/// normalise (the Hessian of the train-mode loss, as the reference implementation's double backward) but running statistics and
/// `num_batches_tracked` are not touched. Parameters are restored bit-exactly after each product.
public final class HessianVectorProduct {
    public enum Scheme: Sendable { case forward, central }

    /// θ: the parameters the Hessian is taken with respect to.
    public let parameters: [Parameter]
    public let scheme: Scheme
    /// `c` of the step-size rule.
    public let relativeStep: Float
    /// Runs forward and backward of the loss on the fixed batch in the given mode, accumulating into
    /// the `grad` of (at least) `parameters`. The gradients of `parameters` are zeroed before each call
    /// (and hold the last probe's gradient afterwards); other parameters' gradients (a head's) are the
    /// closure's business.
    private let gradient: (Mode) -> Void
    private var cached: [[Float]]?
    /// Gradient evaluations performed so far (the cost unit of the engine benchmark).
    public private(set) var gradientEvaluations = 0

    /// - Parameters:
    ///   - parameters: θ.
    ///   - gradient: forward + backward of the loss on a fixed batch in the given mode (it must pass
    ///     the mode to every BatchNorm and must not step any optimiser).
    public init(parameters: [Parameter], scheme: Scheme = .forward, relativeStep: Float? = nil,
                gradient: @escaping (Mode) -> Void) {
        self.parameters = parameters
        self.scheme = scheme
        self.relativeStep = relativeStep ?? 1e-5
        self.gradient = gradient
    }

    /// `∇L(θ)` at the current parameters, computed once and cached (forward scheme); call
    /// `invalidate()` after θ or the batch changes.
    public func gradientAtCurrentPoint() -> [[Float]] {
        if let g = cached { return g }
        let g = evaluate()
        cached = g
        return g
    }

    /// Forgets the cached gradient.
    public func invalidate() { cached = nil }

    /// `H v` for `v` shaped like `parameters` (one array per parameter, same counts).
    public func apply(_ v: [[Float]]) -> [[Float]] {
        precondition(v.count == parameters.count && zip(v, parameters).allSatisfy { $0.count == $1.count },
                     "HessianVectorProduct: v does not match the parameters")
        let vNorm = l2Norm(v)
        if vNorm == 0 { return v }
        let thetaNorm = l2Norm(parameters.map(\.value))
        let eps = Float(Double(relativeStep) * (1 + thetaNorm) / vNorm)
        let saved = parameters.map(\.value)
        defer { for (p, s) in zip(parameters, saved) { p.value = s } }
        switch scheme {
        case .forward:
            let g0 = gradientAtCurrentPoint()
            shift(saved, v, by: eps)
            let g1 = evaluate()
            return difference(g1, g0, scale: 1 / eps)
        case .central:
            shift(saved, v, by: eps)
            let gPlus = evaluate()
            shift(saved, v, by: -eps)
            let gMinus = evaluate()
            return difference(gPlus, gMinus, scale: 1 / (2 * eps))
        }
    }

    private func evaluate() -> [[Float]] {
        parameters.zeroGrad()
        gradient(.trainFrozenStatistics)
        gradientEvaluations += 1
        return parameters.map(\.grad)
    }

    /// θ = base + eps v.
    private func shift(_ base: [[Float]], _ v: [[Float]], by eps: Float) {
        for (k, p) in parameters.enumerated() {
            p.value = [Float](count: base[k].count) { xp in
                base[k].withUnsafeBufferPointer { bp in
                    v[k].withUnsafeBufferPointer { vp in
                        Parallel.forEachChunk(xp.count) { r in for i in r { xp[i] = bp[i] + eps * vp[i] } }
                    }
                }
            }
        }
    }

    private func difference(_ a: [[Float]], _ b: [[Float]], scale: Float) -> [[Float]] {
        zip(a, b).map { x, y in
            [Float](count: x.count) { out in
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeBufferPointer { yp in
                        Parallel.forEachChunk(xp.count) { r in for i in r { out[i] = (xp[i] - yp[i]) * scale } }
                    }
                }
            }
        }
    }
}
