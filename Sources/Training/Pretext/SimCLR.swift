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
        let (loss, dz) = NTXent.forward(z, temperature: temperature)
        network.backbone.backward(projector.backward(dz))
        return loss
    }
}

extension PretextObjective.Method {
    public static let simclr = Self(SimCLR.self)
}
