import Checkpoint
import Engine

/// BiSSL's head-only linear warmup (docs/bissl.md, "The alternation loop"):
/// θ_D receives no gradient, but the network runs in TRAIN mode, so θ_D's BatchNorm running
/// statistics keep moving with downstream batches (as in the reference implementation); the loss is CE(φ_D(θ_D(x)), y) and
/// φ_D takes torch.optim.SGD steps at a constant LR (`d_lr`, `d_wd`, momentum 0.9, no schedule).
public final class LinearWarmup {
    public let downstream: Network
    public let classifier: LinearHead
    /// SGD over φ_D only.
    public let optimizer: SGD

    /// - Throws: `TrainingError.invalid` when `downstream` has no linear `classifier` head.
    public init(downstream: Network, lr: Float, weightDecay: Float, momentum: Float = 0.9) throws {
        guard case .linear(let head)? = downstream.heads["classifier"] else {
            throw TrainingError.invalid("BiSSL warmup: the downstream network has no linear 'classifier' head")
        }
        self.downstream = downstream
        classifier = head
        optimizer = SGD(parameters: head.parameters, lr: lr, momentum: momentum, weightDecay: weightDecay)
    }

    /// One step on images `[N, 3, H, W]` (N ≥ 2) with class labels; returns the CE loss before the step.
    @discardableResult
    public func step(images x: Tensor4, labels: [Int]) -> Float {
        classifier.parameters.zeroGrad()
        let features = DataParallel.synchronizingBatchNorm { downstream.backbone.forward(x, mode: .train) }
        let ce = CrossEntropy.forward(logits: classifier.forward(features), labels: labels)
        _ = classifier.backward(ce.gradient)
        let loss = DataParallel.averageGradients(classifier.parameters, count: x.n, values: [ce.loss])[0]
        optimizer.step()
        return loss
    }
}
