import Checkpoint
import Engine

/// SimCLR (Chen et al., arXiv:2002.05709): NT-Xent with temperature τ over the 2N projections of the
/// joint batch (`NTXent.forward`; docs/bissl.md "Pretext methods").
public final class SimCLR: PretextMethod {
    public static let name = "simclr"
    public let temperature: Float

    public init(network: Network, projector: MLPHead, settings: PretextSettings) throws {
        temperature = settings.temperature
    }

    public func lossAndGradient(_ x: Tensor4, network: Network, projector: MLPHead, mode: Mode, updateEMA: Bool) -> Float {
        let z = projector.forward(network.backbone.forward(x, mode: mode), mode: mode)
        recordedProjections = Tangents.recording ? z : nil
        let (loss, dz) = NTXent.forward(z, temperature: temperature)
        network.backbone.backward(projector.backward(dz))
        return loss
    }

    /// The projections z of the last `lossAndGradient` run inside `Tangents.record`.
    private var recordedProjections: Matrix?

    public func gradientTangent(network: Network, projector: MLPHead) {
        guard let z = recordedProjections else {
            preconditionFailure("SimCLR: gradientTangent needs a lossAndGradient inside Tangents.record")
        }
        let dz = projector.tangentForward(network.backbone.tangentForward())
        network.backbone.tangentBackward(projector.tangentBackward(NTXent.gradientTangent(z, dz, temperature: temperature)))
    }
}

extension PretextObjective.Method {
    public static let simclr = Self(SimCLR.self)
}
