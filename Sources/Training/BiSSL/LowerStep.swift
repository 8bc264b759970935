import Engine

/// One BiSSL lower-level step (docs/bissl.md, "The alternation loop"):
///
///     ℓ = L_P(θ_P, φ_P; x1, x2) + (λ/2) Σ_tensors ||θ_P − θ_D||²      (θ_D a constant)
///     grads over (θ_P, φ_P); clip global L2 norm to `clip` (10); LARS step (docs/bissl.md, "Optimisers and schedule")
///
/// L_P is the `PretextObjective`'s loss (SimCLR NT-Xent or BYOL; BYOL EMA-updates its target before
/// the forward, as the reference implementation does in every lower step). BN runs in train mode: θ_P's and φ_P's running
/// statistics move. The regulariser covers backbone tensors only (not the heads, docs/bissl.md, "Pretext methods") and its
/// gradient λ(θ_P − θ_D) is added analytically; with λ = 0 nothing is added, so the step is exactly a
/// pretext-only step (`bissl align --lambda 0 --no-ij`, the exact control). The caller sets
/// `optimizer.lr` from the schedule.
public final class LowerLevel {
    public let pretext: PretextObjective
    /// θ_D: the downstream backbone, read only here.
    public let downstream: ResNet
    /// λ of the penalty.
    public let lambda: Float
    /// Global gradient-norm bound (docs/bissl.md, "Default settings": 10).
    public let clip: Float
    /// LARS over `pretext.parameters` (θ_P then φ_P).
    public let optimizer: LARS

    public struct Result: Sendable {
        /// L_P on the batch (before the step).
        public var pretextLoss: Float
        /// (λ/2) Σ ||θ_P − θ_D||² (before the step).
        public var regulariser: Float
        /// Global gradient norm before clipping.
        public var gradientNorm: Float
        /// The penalty's share of the backbone gradient, λ·‖θ_P − θ_D‖ / ‖∇_θP L_P‖ (norms over all
        /// backbone tensors, before clipping); nil when the pretext gradient is 0.
        public var penaltyShare: Double?
    }

    /// - Parameters: lr, weightDecay, momentum, eta: LARS (docs/bissl.md, "Default settings": 1.0 scheduled, 1e-6, 0.9, 0.001).
    /// - Precondition: `downstream` has θ_P's architecture (same parameter list).
    public init(pretext: PretextObjective, downstream: ResNet, lambda: Float, clip: Float = 10,
                lr: Float, weightDecay: Float = 1e-6, momentum: Float = 0.9, eta: Float = 0.001) {
        precondition(downstream.parameters.count == pretext.backboneParameters.count,
                     "LowerLevel: θ_D and θ_P have different parameter lists")
        self.pretext = pretext
        self.downstream = downstream
        self.lambda = lambda
        self.clip = clip
        optimizer = LARS(parameters: pretext.parameters, lr: lr, momentum: momentum, weightDecay: weightDecay, eta: eta)
    }

    /// One step on a pretext pair (`[N, 3, H, W]` each, N ≥ 2) at `optimizer.lr`.
    @discardableResult
    public func step(view1: Tensor4, view2: Tensor4) -> Result {
        let params = pretext.parameters
        params.zeroGrad()
        let local = DataParallel.synchronizingBatchNorm { pretext.lossAndGradient(view1: view1, view2: view2, mode: .train, updateEMA: true) }
        // Under mpirun: averaged over the ranks' shards before the (rank-independent) penalty is added.
        let loss = DataParallel.averageGradients(params, count: view1.n, values: [local])[0]
        let pretextNorm = l2Norm(pretext.backboneParameters.map(\.grad))
        var reg: Double = 0
        for (p, d) in zip(pretext.backboneParameters, downstream.parameters) {
            precondition(p.count == d.count, "LowerLevel: \(p.name) differs between θ_P and θ_D")
            reg += p.addProximalGradient(anchor: d.value, lambda: lambda)
        }
        let share = pretextNorm > 0 ? Double(lambda) * reg.squareRoot() / pretextNorm : nil
        let norm = clipGradNorm(params, maxNorm: clip)
        optimizer.step()
        return Result(pretextLoss: loss, regulariser: Float(0.5 * Double(lambda) * reg), gradientNorm: norm, penaltyShare: share)
    }
}
