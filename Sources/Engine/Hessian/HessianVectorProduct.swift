import Foundation

/// Hessian-vector products of a loss with respect to a set of parameters (BiSSL: the backbone
/// parameters θ, pretext loss on a fixed batch; docs/bissl.md, "Problem and hypergradient"), by one of three schemes:
///
/// - exact (default): forward-over-reverse differentiation (`Tangents`; Pearlmutter 1994): one primal
///   forward + backward at θ inside `Tangents.record`, then per product one tangent forward and one
///   tangent backward along v: `Hv` as double backward computes it (ReLU masks and max-pool winners of
///   θ held fixed), up to float32 rounding, about two gradients per product.
/// - forward:  `Hv ≈ (∇L(θ + εv) − ∇L(θ)) / ε`, reusing the cached `∇L(θ)`: one gradient per product;
/// - central:  `Hv ≈ (∇L(θ + εv) − ∇L(θ − εv)) / (2ε)`: two gradients per product, error O(ε²).
///
/// The finite-difference schemes divide a difference of two float32 gradients by ε, so the GEMM
/// kernel's rounding of each gradient (which differs between OpenBLAS kernels) is amplified by
/// 1/ε; docs/bissl.md measures that per kernel.
///
/// **Step size (finite differences).** `ε = c · (1 + ‖θ‖) / ‖v‖`, so the parameter step `εv` has norm `c · (1 + ‖θ‖)`, with
/// `c = 1e-5` for both schemes (`relativeStep` overrides it). Why not the textbook `c = sqrt(u) ≈ 3.5e-4`
/// (forward) or `u^(1/3) ≈ 4.9e-3` (central), `u = 2^-23` (Nocedal & Wright, *Numerical Optimization*,
/// 2nd ed., 8.1)? A ResNet's gradient is only piecewise smooth: whenever the step moves a ReLU input (or a
/// max-pool winner) across its kink, the gradient jumps by that unit's whole contribution and the
/// difference quotient is no longer the Hessian that double backward computes (`ActivationPatterns`
/// pins them for the probes).
///
/// **BatchNorm.** Every gradient is computed with `Mode.trainFrozenStatistics`: batch statistics
/// normalise (the Hessian of the train-mode loss, as the reference implementation's double backward) but running statistics and
/// `num_batches_tracked` are not touched. Parameters are restored bit-exactly after each product.
public final class HessianVectorProduct {
    public enum Scheme: String, Sendable, CaseIterable { case exact, forward, central }

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
    /// Exact scheme: the tangent forward + backward of the loss along the parameters' `tangent`,
    /// accumulating into `grad` (of at least `parameters`; zeroed before each call).
    private let tangent: (() -> Void)?
    private var cached: [[Float]]?
    /// Gradient evaluations performed so far (the exact scheme's primal pass counts as one).
    public private(set) var gradientEvaluations = 0
    /// Tangent passes (exact products) performed so far.
    public private(set) var tangentEvaluations = 0

    /// - Parameters:
    ///   - parameters: θ.
    ///   - gradient: forward + backward of the loss on a fixed batch in the given mode (it must pass
    ///     the mode to every BatchNorm and must not step any optimiser).
    ///   - tangent: required for `.exact`: the tangent forward + backward of the same loss along the
    ///     parameters' `tangent` directions (e.g. `ResNet.tangentForward`, the loss's gradient tangent,
    ///     `ResNet.tangentBackward`), after the primal pass this object runs inside `Tangents.record`.
    public init(parameters: [Parameter], scheme: Scheme = .exact, relativeStep: Float? = nil,
                gradient: @escaping (Mode) -> Void, tangent: (() -> Void)? = nil) {
        precondition(scheme != .exact || tangent != nil, "HessianVectorProduct: the exact scheme needs the tangent pass")
        self.parameters = parameters
        self.scheme = scheme
        self.relativeStep = relativeStep ?? 1e-5
        self.gradient = gradient
        self.tangent = tangent
    }

    /// `∇L(θ)` at the current parameters, computed once and cached (the forward scheme's base point,
    /// the exact scheme's primal pass, recorded for the tangent rules); call `invalidate()` after θ or
    /// the batch changes.
    public func gradientAtCurrentPoint() -> [[Float]] {
        if let g = cached { return g }
        let g = scheme == .exact ? Tangents.record { evaluate() } : evaluate()
        cached = g
        return g
    }

    /// Forgets the cached gradient.
    public func invalidate() { cached = nil }

    /// `H v` for `v` shaped like `parameters` (one array per parameter, same counts).
    public func apply(_ v: [[Float]]) -> [[Float]] {
        precondition(v.count == parameters.count && zip(v, parameters).allSatisfy { $0.count == $1.count },
                     "HessianVectorProduct: v does not match the parameters")
        if scheme == .exact { return exact(v) }
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
        case .exact:
            preconditionFailure("unreachable")
        }
    }

    /// One tangent forward + backward along v at the recorded primal pass.
    private func exact(_ v: [[Float]]) -> [[Float]] {
        _ = gradientAtCurrentPoint()
        for (p, d) in zip(parameters, v) { p.tangent = d }
        defer { for p in parameters { p.tangent = [] } }
        parameters.zeroGrad()
        tangent!()
        tangentEvaluations += 1
        return parameters.map(\.grad)
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
