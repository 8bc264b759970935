import Engine

/// Settings of BiSSL's implicit-Jacobian solve (docs/bissl.md, "Problem and hypergradient").
public struct ImplicitGradientOptions: Sendable, Equatable {
    public enum Solver: String, Sendable, CaseIterable {
        /// Per-tensor α/β (the reference implementation, `layerwise_solve=True`, what the authors run).
        case layerwise
        /// Textbook CG with one α/β over the whole vector (an option of the reference implementation).
        case global
    }

    /// λ (`cg_lam`, 0.001): the lower-level penalty weight, also used in the solve.
    public var lambda: Float
    /// δ (`cg_lam_dampening`, 10) added to λ inside the solve.
    public var damping: Float
    /// K (`cg_iter_num`, 5): CG iterations, one Hessian-vector product each.
    public var iterations: Int
    public var solver: Solver
    /// Finite-difference scheme of the Hessian-vector product (see `ImplicitGradient`). Default
    /// central (2 gradients per product): with the forward scheme (1 gradient) the layer-wise solve
    /// on the parity network was off by 50% (docs/bissl.md).
    public var hvp: HessianVectorProduct.Scheme
    /// `c` of the probe size `ε = c (1 + ||θ||) / ||v||`; nil: `defaultRelativeStep(hvp)`.
    public var relativeStep: Float?
    /// `false` is `--no-ij`: u = g (the implicit Jacobian replaced by the identity, the δ → ∞ limit;
    /// docs/bissl.md, "Problem and hypergradient", ablation of the IJ term). No Hessian-vector product is computed then.
    public var enabled: Bool

    public init(lambda: Float = 0.001, damping: Float = 10, iterations: Int = 5, solver: Solver = .layerwise,
                hvp: HessianVectorProduct.Scheme = .central, relativeStep: Float? = nil, enabled: Bool = true) {
        self.lambda = lambda; self.damping = damping; self.iterations = iterations
        self.solver = solver; self.hvp = hvp; self.relativeStep = relativeStep; self.enabled = enabled
    }

    /// Probe size `c` with pinned activation patterns, measured on the parity network (BiSSLStepTests;
    /// relative error of H g against double backward): forward 1e-5 (2.7e-3; 1.4e-2 at 3e-6 where
    /// float32 rounding dominates, 1.4e-2 at 1e-4 where the third derivative does), central 1e-4
    /// (3.3e-4; 2.0e-3 at 1e-5, 1.5e-3 at 3e-4).
    public static func defaultRelativeStep(_ scheme: HessianVectorProduct.Scheme) -> Float {
        switch scheme {
        case .forward: return 1e-5
        case .central: return 1e-4
        }
    }
}

/// The implicit-gradient part of BiSSL's upper step (docs/bissl.md, "Problem and hypergradient"): given
/// `g = ∇_θP L_D(θ_P, φ_D)`, returns `u ≈ (I + H/(λ+δ))^-1 g` by K conjugate-gradient iterations,
/// where H is the Hessian of the pretext loss with respect to the pretext BACKBONE parameters θ_P only,
/// at the current (θ_P, φ_P), on one pretext batch B_H (both views) that stays fixed for a whole upper
/// phase. The operator is `v ↦ v + Hv/(λ+δ)`; the result goes through `nan_to_num` (inside the Engine
/// solvers).
///
/// **Deviations from the authors' code (documented with measured effects in docs/bissl.md):**
/// - *HVP by finite differences of gradients* (Engine `HessianVectorProduct`, forward or central)
///   instead of PyTorch's double backward, with every ReLU mask and max-pool winner PINNED to those
///   of θ_P (Engine `ActivationPatterns`: recorded in the gradient at θ_P, replayed in every probe).
///   Double backward differentiates with the masks of θ_P held fixed too (ReLU'' = 0), so the pinned
///   difference quotient converges to the same product; unpinned probes cross ReLU kinks and were off
///   by factors 0.4-130 on the parity network. With the forward scheme the gradient ∇L_P(θ_P; B_H) is
///   computed once per upper PHASE (θ_P and B_H do not change during it) and reused by every product
///   of every upper step, so one product costs one gradient.
/// - *BatchNorm running statistics are not moved by the probes* (`Mode.trainFrozenStatistics`): the reference implementation's
///   HVP forwards run in train mode and move θ_P's and φ_P's running statistics with pretext data K
///   times per upper step. Batch statistics normalise in both, so H, u and every parameter are the
///   same; only the saved running buffers of θ_P differ (they do not affect fine-tuning, which trains
///   with batch statistics, docs/bissl.md, "The alternation loop").
/// - *BYOL*: the probes run with `updateEMA: false` and the target network in the frozen-statistics
///   mode, as the reference implementation's HVP closure (`update_ema=False`, target under no-grad); no side effect remains.
///   Head (φ_P) gradients accumulated by the probes are discarded (H is taken w.r.t. θ_P only).
public final class ImplicitGradient {
    public let pretext: PretextObjective
    public let options: ImplicitGradientOptions
    private var product: HessianVectorProduct?
    /// `||H g|| / ((λ+δ) ||g||)` of the last `solve` (read off the first CG operator call, where the
    /// search direction is g itself): how far the operator is from the identity. nil for `--no-ij`.
    public private(set) var lastRelativeHessianTerm: Double?
    /// Pretext-gradient evaluations spent on HVPs since `init` (cost accounting).
    public private(set) var gradientEvaluations = 0

    public init(pretext: PretextObjective, options: ImplicitGradientOptions) {
        self.pretext = pretext
        self.options = options
    }

    /// Fixes the Hessian batch B_H (two views `[N, 3, H, W]`) at the CURRENT θ_P, φ_P. Call again
    /// whenever θ_P, φ_P or the batch change (every alternation, after the lower phase).
    public func setHessianBatch(view1: Tensor4, view2: Tensor4) {
        flushCount()
        counted = 0
        let pretext = self.pretext
        let patterns = ActivationPatterns()
        let product = HessianVectorProduct(parameters: pretext.backboneParameters, scheme: options.hvp,
                                           relativeStep: options.relativeStep ?? ImplicitGradientOptions.defaultRelativeStep(options.hvp)) { mode in
            let gradient = {
                pretext.headParameters.zeroGrad()
                pretext.lossAndGradient(view1: view1, view2: view2, mode: mode, updateEMA: false)
            }
            if ActivationPatterns.current === patterns { gradient() } else { patterns.replay(gradient) }
        }
        // ∇L_P(θ_P; B_H) at θ_P, recording every ReLU mask and max-pool winner; the probes replay them
        patterns.record { _ = product.gradientAtCurrentPoint() }
        self.product = product
    }

    /// `H v` on B_H (v shaped like θ_P's parameter list). Leaves θ_P, φ_P and every BN buffer as they
    /// were; overwrites the `grad` of θ_P and φ_P.
    /// - Precondition: `setHessianBatch` was called.
    public func hessianVectorProduct(_ v: [[Float]]) -> [[Float]] {
        guard let product else { preconditionFailure("ImplicitGradient: no Hessian batch set") }
        return product.apply(v)
    }

    /// u for the right-hand side g (one array per θ_P parameter, `parameters` order).
    public func solve(_ g: [[Float]]) -> [[Float]] {
        guard options.enabled else {
            lastRelativeHessianTerm = nil
            return g
        }
        let scale = 1 / (options.lambda + options.damping)
        var first = true
        var ratio: Double?
        let gNorm = l2Norm(g)
        let op: ([[Float]]) -> [[Float]] = { d in
            let hd = self.hessianVectorProduct(d)
            if first {
                first = false
                ratio = gNorm > 0 ? l2Norm(hd) * Double(scale) / gNorm : 0
            }
            // (I + H/(λ+δ)) d
            return zip(d, hd).map { a, b in
                [Float](unsafeUninitializedCapacity: a.count) { out, count in
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            let o = out.baseAddress!
                            for i in 0..<ap.count { o[i] = ap[i] + scale * bp[i] }
                        }
                    }
                    count = a.count
                }
            }
        }
        let u: [[Float]]
        switch options.solver {
        case .layerwise: u = ConjugateGradient.solveLayerwise(op, b: g, iterations: options.iterations)
        case .global: u = ConjugateGradient.solveGlobal(op, b: g, iterations: options.iterations)
        }
        lastRelativeHessianTerm = ratio
        flushCount()
        return u
    }

    /// Evaluations of the current product already added to `gradientEvaluations`.
    private var counted = 0
    private func flushCount() {
        guard let product else { return }
        gradientEvaluations += product.gradientEvaluations - counted
        counted = product.gradientEvaluations
    }
}
