import Checkpoint
import Engine

/// BYOL (Grill et al., arXiv:2006.07733): the online backbone, projector and `predictor` head
/// regress the target's projections of the other view (`BYOLLoss.forward`, the two symmetric terms).
///
/// **Target.** Copies of the online backbone and projector (parameters and BN buffers), made at
/// `init` and by `resetTarget()`. They never receive gradients. With `updateEMA` the target moves at
/// the START of the forward: `target = decay * target + (1 - decay) * online` for the backbone and
/// projector parameters only, never the BN buffers. The target forward uses the same `mode`, so its
/// running statistics move in `.train` and stay in `.trainFrozenStatistics` (docs/bissl.md
/// "Pretext methods"). Its state is saved as `<prefix>/backbone/...` and `<prefix>/projector/...`.
public final class BYOL: PretextMethod {
    public static let name = "byol"
    public let emaDecay: Float
    public let predictor: MLPHead
    public let targetBackbone: ResNet
    public let targetProjector: MLPHead
    private let online: (ResNet, MLPHead)

    public static func extraHeads(projectorOutput d: Int) -> [String: Architecture.Head] {
        ["predictor": .init(kind: "mlp", dims: [d, d, d, d])]
    }

    public init(network: Network, projector: MLPHead, settings: PretextSettings) throws {
        guard case .mlp(let predictor)? = network.heads["predictor"] else {
            throw TrainingError.invalid("pretext byol: the network has no MLP 'predictor' head")
        }
        guard predictor.dims.first == projector.dims.last, predictor.dims.last == projector.dims.last else {
            throw TrainingError.invalid("pretext byol: the predictor \(predictor.dims) must map the projector's \(projector.dims.last!) outputs to as many")
        }
        emaDecay = settings.emaDecay
        self.predictor = predictor
        online = (network.backbone, projector)
        targetBackbone = try ResNet(architecture: network.backbone.architecture)
        targetProjector = try MLPHead(layout: projector.layout)
        resetTarget()
    }

    public var extraParameters: [Parameter] { predictor.parameters }

    /// Target backbone then target projector.
    public var targetParameters: [Parameter] { targetBackbone.parameters + targetProjector.parameters }

    /// Sets the target to a copy of the online backbone and projector, BN buffers included (called
    /// by BiSSL after loading a checkpoint).
    public func resetTarget() {
        // Shapes match by construction, so loading cannot fail.
        try! targetBackbone.load(online.0.stateDict())
        try! targetProjector.load(online.1.stateDict())
    }

    public func lossAndGradient(_ x: Tensor4, network: Network, projector: MLPHead, mode: Mode, updateEMA: Bool) -> Float {
        let n = x.n / 2
        if updateEMA {
            emaUpdate(target: targetParameters, online: network.backbone.parameters + projector.parameters, decay: emaDecay)
        }
        let p = predictor.forward(projector.forward(network.backbone.forward(x, mode: mode), mode: mode), mode: mode)
        let t = targetProjector.forward(targetBackbone.forward(x, mode: mode), mode: mode)
        recorded = Tangents.recording ? (p, t) : nil
        let (loss, dp1, dp2) = BYOLLoss.forward(p1: p.rows(0..<n), p2: p.rows(n..<(2 * n)), t1: t.rows(0..<n), t2: t.rows(n..<(2 * n)))
        network.backbone.backward(projector.backward(predictor.backward(Matrix.stacked(dp1, dp2))))
        return loss
    }

    /// Online predictions p and target projections t of the last `lossAndGradient` run inside
    /// `Tangents.record`.
    private var recorded: (p: Matrix, t: Matrix)?

    /// The target is a constant of the product (the reference implementation runs it under no-grad),
    /// so only the online path carries a tangent.
    public func gradientTangent(network: Network, projector: MLPHead) {
        guard let r = recorded else {
            preconditionFailure("BYOL: gradientTangent needs a lossAndGradient inside Tangents.record")
        }
        let (p, t) = r
        let n = p.rows / 2
        let dp = predictor.tangentForward(projector.tangentForward(network.backbone.tangentForward()))
        let (r1, r2) = BYOLLoss.gradientTangent(p1: p.rows(0..<n), p2: p.rows(n..<(2 * n)), t1: t.rows(0..<n), t2: t.rows(n..<(2 * n)),
                                                dotP1: dp.rows(0..<n), dotP2: dp.rows(n..<(2 * n)))
        network.backbone.tangentBackward(projector.tangentBackward(predictor.tangentBackward(Matrix.stacked(r1, r2))))
    }

    /// Predictor, then target backbone, then target projector.
    public var extraBatchNorms: [BatchNorm2d] {
        predictor.norms.map(\.core) + targetBackbone.batchNorms + targetProjector.norms.map(\.core)
    }

    public func capture(into state: inout TrainingState, prefix: String) {
        state.capture(targetBackbone, prefix: prefix + "/backbone")
        state.capture(targetProjector, prefix: prefix + "/projector")
    }

    public func restore(from state: TrainingState, prefix: String) throws {
        try state.restore(targetBackbone, prefix: prefix + "/backbone")
        try state.restore(targetProjector, prefix: prefix + "/projector")
    }
}

extension PretextObjective.Method {
    public static let byol = Self(BYOL.self)
}

extension PretextObjective {
    /// BYOL's target backbone and projector (nil for other methods).
    public var targetBackbone: ResNet? { (loss as? BYOL)?.targetBackbone }
    public var targetProjector: MLPHead? { (loss as? BYOL)?.targetProjector }
}
