import Checkpoint
import Engine

/// One BiSSL upper-level step (docs/bissl.md, "Problem and hypergradient" and "The alternation loop", upper phase), γ = 1, on one downstream batch (x, y):
///
///     ℓ1 = CE(φ_D(θ_P(x)), y)      g = ∇_θP ℓ1, gφ1 = ∇_φD ℓ1      (train-mode BN: θ_P's running stats move, as the reference implementation)
///     u  = CG(v ↦ v + H v/(λ+δ), g, K)                               (`ImplicitGradient`, B_H fixed per phase)
///     ℓ2 = CE(φ_D(θ_D(x)), y)      h = ∇_θD ℓ2, gφ2 = ∇_φD ℓ2      (train-mode BN)
///     grad θ_D = u + h ;  grad φ_D = gφ1 + gφ2 ;  clip global norm of (θ_D, φ_D) to `clip` ;  SGD step
///
/// Both forwards use the same batch and the same φ_D. The caller sets `optimizer.lr` from the schedule.
public final class UpperLevel {
    /// θ_P, φ_P (read; only θ_P's BN running statistics change here).
    public let pretext: PretextObjective
    /// θ_D with the `classifier` head φ_D (`LinearHead`).
    public let downstream: Network
    public let classifier: LinearHead
    public let implicit: ImplicitGradient
    public let clip: Float
    /// torch.optim.SGD over θ_D's parameters then φ_D's (docs/bissl.md, "Default settings": momentum 0.9, wd on all parameters).
    public let optimizer: SGD

    public struct Result: Sendable {
        /// ℓ1: CE through θ_P (the "IJ-path" loss the reference implementation logs).
        public var lowerPathLoss: Float
        /// ℓ2: CE through θ_D (the "direct-path" loss).
        public var directLoss: Float
        /// Global norm of the assembled (θ_D, φ_D) gradient before clipping.
        public var gradientNorm: Float
        /// `||H g|| / ((λ+δ) ||g||)` of this step's solve (nil with `--no-ij`).
        public var relativeHessianTerm: Double?
    }

    /// - Throws: `TrainingError.invalid` when `downstream` has no linear `classifier` head.
    public init(pretext: PretextObjective, downstream: Network, implicit: ImplicitGradient, clip: Float = 10,
                lr: Float, weightDecay: Float, momentum: Float = 0.9) throws {
        guard case .linear(let head)? = downstream.heads["classifier"] else {
            throw TrainingError.invalid("BiSSL upper level: the downstream network has no linear 'classifier' head")
        }
        precondition(downstream.backbone.parameters.count == pretext.backboneParameters.count,
                     "UpperLevel: θ_D and θ_P have different parameter lists")
        self.pretext = pretext
        self.downstream = downstream
        classifier = head
        self.implicit = implicit
        self.clip = clip
        optimizer = SGD(parameters: downstream.backbone.parameters + head.parameters, lr: lr, momentum: momentum,
                        weightDecay: weightDecay)
    }

    /// One step on images `[N, 3, H, W]` with class labels (N ≥ 2 for train-mode BN).
    /// - Precondition: `implicit.setHessianBatch` was called after θ_P last changed (unless `--no-ij`).
    @discardableResult
    public func step(images x: Tensor4, labels: [Int]) -> Result {
        let thetaP = pretext.network.backbone, thetaD = downstream.backbone
        let head = classifier.parameters
        // ℓ1 through θ_P
        thetaP.parameters.zeroGrad()
        head.zeroGrad()
        let ce1 = DataParallel.synchronizingBatchNorm {
            let ce = CrossEntropy.forward(logits: classifier.forward(thetaP.forward(x, mode: .train)), labels: labels)
            thetaP.backward(classifier.backward(ce.gradient))
            return ce
        }
        // Under mpirun: g, gφ1 and ℓ1 averaged over the ranks' shards (docs/distributed.md).
        let loss1 = DataParallel.averageGradients(thetaP.parameters + head, count: x.n, values: [ce1.loss])[0]
        let g = thetaP.parameters.map(\.grad)
        let gphi1 = head.map(\.grad)
        // u = (I + H/(λ+δ))^-1 g
        let u = DataParallel.synchronizingBatchNorm { implicit.solve(g) }
        // ℓ2 through θ_D
        thetaD.parameters.zeroGrad()
        head.zeroGrad()
        let ce2 = DataParallel.synchronizingBatchNorm {
            let ce = CrossEntropy.forward(logits: classifier.forward(thetaD.forward(x, mode: .train)), labels: labels)
            thetaD.backward(classifier.backward(ce.gradient))
            return ce
        }
        let loss2 = DataParallel.averageGradients(thetaD.parameters + head, count: x.n, values: [ce2.loss])[0]
        for (p, uk) in zip(thetaD.parameters, u) { p.accumulateGrad(uk) }
        for (p, gk) in zip(head, gphi1) { p.accumulateGrad(gk) }
        let norm = clipGradNorm(optimizer.parameters, maxNorm: clip)
        optimizer.step()
        return Result(lowerPathLoss: loss1, directLoss: loss2, gradientNorm: norm,
                      relativeHessianTerm: implicit.lastRelativeHessianTerm)
    }
}
