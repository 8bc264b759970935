import Checkpoint
import Engine

/// One self-supervised loss (SimCLR, BYOL, ...) on a `Network` whose backbone feeds an MLP
/// `projector` head. A new method is a type conforming to this protocol in this folder plus one line
/// in `PretextMethods.all`; pretraining, BiSSL's lower level, the run configs and the CLI (`--method`,
/// `--pretext`) find it there by `name`. The method's state that is not a parameter with a gradient
/// (BYOL's target network) is saved and restored through `Resumable`.
public protocol PretextMethod: AnyObject, Resumable {
    /// Name on the command line, in run configs and in provenance (`simclr`, `byol`).
    static var name: String { get }

    /// Heads the method needs beside `projector`, for a projector ending in `d` outputs (BYOL's
    /// `predictor` `[d, d, d, d]`); none for SimCLR.
    static func extraHeads(projectorOutput d: Int) -> [String: Architecture.Head]

    /// - Parameters:
    ///   - network: backbone and heads (`projector` already checked to fit the backbone).
    ///   - settings: the method's hyperparameters.
    /// - Throws: `TrainingError.invalid` (one line) for a missing or mis-sized head of its own.
    init(network: Network, projector: MLPHead, settings: PretextSettings) throws

    /// Parameters with gradients beyond the backbone and the projector (BYOL's predictor), in the
    /// order an optimiser over the whole pretext model uses after them.
    var extraParameters: [Parameter] { get }

    /// Parameters that never receive gradients (BYOL's target), empty when there are none.
    var targetParameters: [Parameter] { get }

    /// Forward and backward of the loss on the joint batch `x` `[2N, 3, H, W]` (view 1 rows first):
    /// gradients ACCUMULATED into the backbone, projector and `extraParameters`.
    /// - Parameters:
    ///   - mode: `.train`, `.trainFrozenStatistics` (HVP probes) or `.eval`.
    ///   - updateEMA: move a target network before the forward (lower and pretraining steps), not
    ///     during HVP probes; ignored by methods without one.
    /// - Returns: the loss.
    func lossAndGradient(_ x: Tensor4, network: Network, projector: MLPHead, mode: Mode, updateEMA: Bool) -> Float

    /// Re-derives state that copies the online network (BYOL's target) after its weights were loaded.
    func resetTarget()

    /// The tangent pass of an exact Hessian-vector product: tangent forward of `network.backbone`,
    /// `projector` and the method's heads, the tangent of the loss's output gradient (the method's own
    /// rule, e.g. `NTXent.gradientTangent`), and the tangent backward, which ACCUMULATES `H v` into the
    /// parameters' `grad`. Constants of the loss (BYOL's target) contribute no tangent.
    /// - Precondition: the last `lossAndGradient` ran inside `Tangents.record` and recorded what
    ///   this rule needs (same batch, same weights).
    func gradientTangent(network: Network, projector: MLPHead)

    /// BatchNorms of the method's own networks that a `.train` forward moves, beyond the backbone and
    /// the projector (BYOL: predictor, target backbone, target projector), in a fixed order.
    var extraBatchNorms: [BatchNorm2d] { get }
}

/// The hyperparameters of the pretext methods (each method reads its own).
public struct PretextSettings: Equatable, Sendable {
    /// NT-Xent temperature τ > 0 (SimCLR; docs/bissl.md "Pretext methods": 0.5).
    public var temperature: Float
    /// EMA decay of a target network in [0, 1] (BYOL; docs/bissl.md: 0.9995, constant).
    public var emaDecay: Float

    public init(temperature: Float = 0.5, emaDecay: Float = 0.9995) {
        self.temperature = temperature
        self.emaDecay = emaDecay
    }
}

/// The registry of pretext methods: one line per method.
public enum PretextMethods {
    public static var all: [any PretextMethod.Type] { [
        SimCLR.self,
        BYOL.self,
    ] }

    /// The method called `name` (case-insensitive); nil when none is.
    public static func named(_ name: String) -> (any PretextMethod.Type)? {
        all.first { $0.name == name.lowercased() }
    }

    /// `simclr, byol`: the names, for messages and help.
    public static var names: String { all.map { $0.name }.joined(separator: ", ") }
}

extension PretextMethod {
    public static var defaultPrefix: String { "target" }
    public func resetTarget() {}
    public var targetParameters: [Parameter] { [] }
    public var extraParameters: [Parameter] { [] }
    public var extraBatchNorms: [BatchNorm2d] { [] }
    public static func extraHeads(projectorOutput d: Int) -> [String: Architecture.Head] { [:] }
    public func capture(into state: inout TrainingState, prefix: String) {}
    public func restore(from state: TrainingState, prefix: String) throws {}
}
