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
    /// Scheme of the Hessian-vector product (see `ImplicitGradient`): `exact` (default; forward-over-
    /// reverse, about 2 gradients per product, as double backward up to float32 rounding), or the
    /// finite-difference `central` (2 gradients) / `forward` (1 gradient) with pinned ReLU/max-pool
    /// patterns, whose error depends on the GEMM kernel's rounding (docs/bissl.md).
    public var hvp: HessianVectorProduct.Scheme
    /// `c` of the probe size `ε = c (1 + ||θ||) / ||v||`; nil: `defaultRelativeStep(hvp)`.
    public var relativeStep: Float?
    /// What the products do to the BatchNorm running statistics (see `HVPBatchNorm`).
    public var batchNorm: HVPBatchNorm
    /// `false` is `--no-ij`: u = g (the implicit Jacobian replaced by the identity, the δ → ∞ limit;
    /// docs/bissl.md, "Problem and hypergradient", ablation of the IJ term). No Hessian-vector product is computed then.
    public var enabled: Bool

    /// BatchNorm running statistics during the solve.
    public enum HVPBatchNorm: String, Sendable, CaseIterable {
        /// As the reference implementation, whose every HVP forward runs in train mode: each product applies one momentum update
        /// with B_H's batch statistics to every BN of θ_P and φ_P (and of BYOL's target), i.e. K
        /// updates per upper step, NU·K per upper phase.
        case train
        /// Running statistics untouched by the products (only the upper step's ℓ1 forward moves θ_P's).
        case frozen
    }

    public init(lambda: Float = 0.001, damping: Float = 10, iterations: Int = 5, solver: Solver = .layerwise,
                hvp: HessianVectorProduct.Scheme = .exact, relativeStep: Float? = nil, batchNorm: HVPBatchNorm = .train,
                enabled: Bool = true) {
        self.lambda = lambda; self.damping = damping; self.iterations = iterations
        self.solver = solver; self.hvp = hvp; self.relativeStep = relativeStep; self.batchNorm = batchNorm
        self.enabled = enabled
    }

    /// Probe size `c` with pinned activation patterns, measured on the parity network (BiSSLStepTests;
    /// relative error of H g against double backward): forward 1e-5 (2.7e-3; 1.4e-2 at 3e-6 where
    /// float32 rounding dominates, 1.4e-2 at 1e-4 where the third derivative does), central 1e-4
    /// (3.3e-4; 2.0e-3 at 1e-5, 1.5e-3 at 3e-4). Unused by the exact scheme.
    public static func defaultRelativeStep(_ scheme: HessianVectorProduct.Scheme) -> Float {
        switch scheme {
        case .forward, .exact: return 1e-5
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
/// **Hessian-vector products.** By default exact (Engine `Tangents`, forward-over-reverse): at
/// `setHessianBatch` an independent copy of (θ_P, φ_P) (and BYOL's target; made at the first call, its
/// weights set anew at each) runs one primal forward +
/// backward on B_H in `Mode.trainFrozenStatistics` (train-mode batch statistics) inside
/// `Tangents.record`; each product is then one tangent forward + backward on that copy, so the
/// recorded pass survives the upper step's own forwards through θ_P and costs about 2 gradients.
/// Double backward holds the ReLU masks and max-pool winners of θ_P fixed too (ReLU'' = 0), and so do
/// the tangent rules. `--hvp central|forward` select finite differences of gradients with the
/// patterns pinned (Engine `ActivationPatterns`), the port's earlier scheme (docs/bissl.md measures
/// both). Head (φ_P) gradients accumulated by the products are discarded (H is w.r.t. θ_P only).
///
/// **BatchNorm running statistics** (`ImplicitGradientOptions.batchNorm`): with `.train` (default,
/// as the reference implementation) each product moves θ_P's, φ_P's (and BYOL target's) running statistics by one momentum update
/// with B_H's batch statistics, as the reference implementation's K train-mode HVP forwards per upper step do; `.frozen`
/// leaves them. Losses, gradients and u never read running statistics (train-mode BN), so only the
/// saved buffers differ.
///
/// **BYOL**: the target is a constant of the products (the reference implementation: `update_ema=False`, target under no-grad);
/// its EMA never moves here.
public final class ImplicitGradient {
    public let pretext: PretextObjective
    public let options: ImplicitGradientOptions
    private var product: HessianVectorProduct?
    /// `||H g|| / ((λ+δ) ||g||)` of the last `solve` (read off the first CG operator call, where the
    /// search direction is g itself): how far the operator is from the identity. nil for `--no-ij`.
    public private(set) var lastRelativeHessianTerm: Double?
    /// Pretext-gradient evaluations spent on HVPs since `init` (cost accounting; the exact scheme's
    /// recorded primal pass counts as one gradient, its products are `tangentEvaluations`).
    public private(set) var gradientEvaluations = 0
    /// Exact products (tangent forward + backward passes) since `init`.
    public private(set) var tangentEvaluations = 0

    public init(pretext: PretextObjective, options: ImplicitGradientOptions) {
        self.pretext = pretext
        self.options = options
    }

    /// Fixes the Hessian batch B_H (two views `[N, 3, H, W]`) at the CURRENT θ_P, φ_P. Call again
    /// whenever θ_P, φ_P or the batch change (every alternation, after the lower phase).
    public func setHessianBatch(view1: Tensor4, view2: Tensor4) {
        hessianBatchCount = view1.n
        flushCount()
        counted = (0, 0)
        let product: HessianVectorProduct
        switch options.hvp {
        case .exact:
            // Made once (shapes match by construction: copying cannot fail), then brought to the current weights.
            let twin = self.twin ?? (try! pretext.copy())
            if self.twin != nil { pretext.synchronize(twin) }
            self.twin = twin
            product = HessianVectorProduct(parameters: twin.backboneParameters, scheme: .exact, gradient: { mode in
                twin.headParameters.zeroGrad()
                twin.lossAndGradient(view1: view1, view2: view2, mode: mode, updateEMA: false)
            }, tangent: {
                twin.headParameters.zeroGrad()
                twin.gradientTangent()
            })
            _ = DataParallel.synchronizingBatchNorm { product.gradientAtCurrentPoint() }   // the recorded primal pass
            statistics = zip(pretext.batchNorms, twin.batchNorms).map { ($0, $1.batchStatistics!) }
        case .forward, .central:
            let pretext = self.pretext
            let patterns = ActivationPatterns()
            product = HessianVectorProduct(parameters: pretext.backboneParameters, scheme: options.hvp,
                                           relativeStep: options.relativeStep ?? ImplicitGradientOptions.defaultRelativeStep(options.hvp),
                                           gradient: { mode in
                let gradient = {
                    pretext.headParameters.zeroGrad()
                    pretext.lossAndGradient(view1: view1, view2: view2, mode: mode, updateEMA: false)
                }
                if ActivationPatterns.current === patterns { gradient() } else { patterns.replay(gradient) }
            })
            // ∇L_P(θ_P; B_H) at θ_P, recording every ReLU mask and max-pool winner; the probes replay them
            DataParallel.synchronizingBatchNorm { patterns.record { _ = product.gradientAtCurrentPoint() } }
            statistics = pretext.batchNorms.map { ($0, $0.batchStatistics!) }
        }
        self.product = product
        flushCount()
    }

    /// Images of B_H this rank holds (its shard under `mpirun`).
    private var hessianBatchCount = 0

    /// The exact scheme's copy of (θ_P, φ_P) and BYOL's target, reused from one Hessian batch to the next.
    private var twin: PretextObjective?

    /// Each BN the products move (`.train`) with B_H's batch statistics at θ_P.
    private var statistics: [(BatchNorm2d, (mean: [Float], unbiasedVariance: [Float]))] = []

    /// `H v` on B_H (v shaped like θ_P's parameter list). Leaves θ_P and φ_P as they were; with
    /// `batchNorm == .train` applies one running-statistics update per BN (the reference implementation's HVP forward).
    /// - Precondition: `setHessianBatch` was called.
    public func hessianVectorProduct(_ v: [[Float]]) -> [[Float]] {
        guard let product else { preconditionFailure("ImplicitGradient: no Hessian batch set") }
        // Under mpirun: each rank's product on its shard of B_H, averaged (docs/distributed.md).
        let hv = DataParallel.average(product.apply(v), count: hessianBatchCount)
        flushCount()
        if options.batchNorm == .train {
            for (bn, s) in statistics { bn.updateRunningStatistics(mean: s.mean, unbiasedVariance: s.unbiasedVariance) }
        }
        return hv
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
            return ConjugateGradient.identityPlus(scale, times: hd, at: d)   // (I + H/(λ+δ)) d
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
    private var counted = (gradients: 0, tangents: 0)
    private func flushCount() {
        guard let product else { return }
        gradientEvaluations += product.gradientEvaluations - counted.gradients
        tangentEvaluations += product.tangentEvaluations - counted.tangents
        counted = (product.gradientEvaluations, product.tangentEvaluations)
    }
}
