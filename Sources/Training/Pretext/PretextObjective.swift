import Checkpoint
import Engine

/// The self-supervised pretext loss of BiSSL's lower level and of pretraining (docs/bissl.md
/// "Pretext methods") over a `Network` whose heads are `projector` (every method) and whatever the
/// method adds (BYOL: `predictor`). The loss itself is the `PretextMethod` named by `method`
/// (`PretextMethods` lists them).
///
/// **One forward per step.** The two views `[N, 3, H, W]` each are stacked into ONE batch of 2N
/// (view 1 rows first) and go through the backbone and heads together, so BatchNorm normalises with
/// statistics over both views and running statistics move once per step. The reference
/// implementation runs the two views separately (per-view BN statistics, two running-statistics
/// updates per step; docs/bissl.md "Deliberate differences"). We keep the joint batch deliberately: one cached
/// forward is what backward and the finite-difference HVP probes need (the Engine HVP test and its
/// double-backward fixture use the joint batch), and it halves the number of backbone calls. Its
/// effect is that each BN layer normalises 2N samples instead of N.
public final class PretextObjective {
    /// A pretext method's name, known to `PretextMethods` (`.simclr`, `.byol`).
    public struct Method: RawRepresentable, Hashable, Codable, Sendable, CaseIterable, CustomStringConvertible {
        public let rawValue: String

        /// nil for a name no registered method has.
        public init?(rawValue: String) {
            guard let type = PretextMethods.named(rawValue) else { return nil }
            self.rawValue = type.name
        }

        init(_ type: any PretextMethod.Type) { rawValue = type.name }

        public var type: any PretextMethod.Type { PretextMethods.named(rawValue)! }
        public static var allCases: [Method] { PretextMethods.all.map { Method($0) } }
        public var description: String { rawValue }
    }

    public let method: Method
    /// The online network (backbone + `projector` + the method's heads); its parameters get the gradients.
    public let network: Network
    public let settings: PretextSettings
    public let projector: MLPHead
    /// The loss.
    public let loss: any PretextMethod

    /// NT-Xent temperature τ (SimCLR).
    public var temperature: Float { settings.temperature }
    /// EMA decay of the target (BYOL).
    public var emaDecay: Float { settings.emaDecay }
    /// BYOL's predictor head (nil for methods without one).
    public var predictor: MLPHead? {
        if case .mlp(let p)? = network.heads["predictor"] { return p }
        return nil
    }

    /// - Parameters:
    ///   - network: the online network; it must have an MLP head `projector` whose input size is the
    ///     backbone's feature count, and the heads the method needs.
    ///   - temperature: τ > 0 of NT-Xent.
    ///   - emaDecay: BYOL's decay in [0, 1].
    /// - Throws: `TrainingError.invalid` (one line) when a head is missing, not an MLP, or sized wrong.
    public init(method: Method, network: Network, temperature: Float = 0.5, emaDecay: Float = 0.9995) throws {
        guard temperature > 0, temperature.isFinite else {
            throw TrainingError.invalid("pretext: temperature must be positive, got \(temperature)")
        }
        guard (0...1).contains(emaDecay) else {
            throw TrainingError.invalid("pretext: EMA decay must be in [0, 1], got \(emaDecay)")
        }
        self.method = method
        self.network = network
        settings = PretextSettings(temperature: temperature, emaDecay: emaDecay)
        guard case .mlp(let projector)? = network.heads["projector"] else {
            throw TrainingError.invalid("pretext \(method.rawValue): the network has no MLP 'projector' head")
        }
        guard projector.dims.first == network.featureCount else {
            throw TrainingError.invalid("pretext: the projector takes \(projector.dims.first!) features, the backbone gives \(network.featureCount)")
        }
        self.projector = projector
        loss = try method.type.init(network: network, projector: projector, settings: settings)
    }

    /// Online backbone parameters then head parameters (projector, then the method's), the order an
    /// optimiser over the whole pretext model uses.
    public var parameters: [Parameter] { backboneParameters + headParameters }

    /// θ: the online backbone's parameters (what BiSSL's HVP and regulariser act on).
    public var backboneParameters: [Parameter] { network.backbone.parameters }

    /// φ: projector parameters, then the method's own (BYOL's predictor).
    public var headParameters: [Parameter] { projector.parameters + loss.extraParameters }

    /// Parameters without gradients (BYOL's target backbone then projector); never part of `parameters`.
    public var targetParameters: [Parameter] { loss.targetParameters }

    /// Sets state copied from the online network (BYOL's target) anew. No-op for SimCLR.
    public func resetTarget() { loss.resetTarget() }

    /// One forward + backward of the pretext loss on a pair of views.
    ///
    /// - Parameters:
    ///   - view1, view2: `[N, 3, H, W]` float32 each (same shape, N ≥ 2 for BN); joined into one batch of
    ///     2N, view 1 first.
    ///   - mode: `.train` (pretraining, BiSSL lower steps: BN running statistics move), or
    ///     `.trainFrozenStatistics` (HVP probes: batch statistics, running statistics untouched), or `.eval`.
    ///   - updateEMA: BYOL only: EMA-update the target before the forward (lower/pretraining steps true,
    ///     HVP probes false). Ignored for SimCLR.
    /// - Returns: the loss (NT-Xent mean over 2N rows; BYOL mean over N of the two symmetric terms,
    ///   range [0, 8]).
    ///
    /// Gradients are ACCUMULATED (`+=`) into `parameters`' `grad` (the caller zeroes them first);
    /// the BYOL target gets none.
    @discardableResult
    public func lossAndGradient(view1: Tensor4, view2: Tensor4, mode: Mode, updateEMA: Bool) -> Float {
        precondition(view1.shape == view2.shape, "PretextObjective: views \(view1.shape) and \(view2.shape) differ")
        let x = Tensor4(n: 2 * view1.n, c: view1.c, h: view1.h, w: view1.w, data: view1.data + view2.data)
        return loss.lossAndGradient(x, network: network, projector: projector, mode: mode, updateEMA: updateEMA)
    }

    /// The tangent pass of an exact Hessian-vector product (Engine `Tangents`; docs/bissl.md
    /// "Exact Hessian-vector products"): tangent forward of the backbone and heads along the
    /// parameters' `tangent` directions (set on the backbone for BiSSL's H w.r.t. θ_P), the loss's
    /// gradient tangent, and the tangent backward, which ACCUMULATES `H v` into the `grad` of the
    /// parameters (heads included; the caller zeroes them first).
    /// - Precondition: the last `lossAndGradient` ran inside `Tangents.record` (same batch, same weights).
    public func gradientTangent() { loss.gradientTangent(network: network, projector: projector) }

    /// Every BatchNorm a pretext forward moves in `.train` mode, in a fixed order: the online backbone,
    /// the projector, then the method's own (BYOL: predictor, target backbone, target projector).
    public var batchNorms: [BatchNorm2d] {
        network.backbone.batchNorms + projector.norms.map(\.core) + loss.extraBatchNorms
    }

    /// An independent copy (weights, BN buffers, the method's state such as BYOL's target), so that a
    /// Hessian batch's recorded primal pass survives other forwards through this objective's networks.
    /// The network is rebuilt from its own checkpoint, so heads in another module layout (`MLPLayout`)
    /// keep it.
    /// - Throws: only if the network cannot be rebuilt from its own checkpoint (never in practice).
    public func copy() throws -> PretextObjective {
        var state = TrainingState(step: 0)
        capture(into: &state, prefix: "target")
        let twin = try PretextObjective(method: method, network: try Network(checkpoint: network.checkpoint(provenance: Provenance(stage: "pretext"))),
                                        temperature: temperature, emaDecay: emaDecay)
        try twin.restore(from: state, prefix: "target")
        return twin
    }

    /// Makes `twin` (a `copy()` of this objective) equal to this objective again: every online and target
    /// parameter's values and every BatchNorm's buffers. The arrays are shared copy-on-write, so nothing
    /// is copied until one side writes.
    public func synchronize(_ twin: PretextObjective) {
        let mine = parameters + targetParameters, theirs = twin.parameters + twin.targetParameters
        precondition(mine.count == theirs.count && batchNorms.count == twin.batchNorms.count,
                     "PretextObjective.synchronize: not a copy of this objective")
        for (t, p) in zip(theirs, mine) { t.value = p.value }
        for (t, b) in zip(twin.batchNorms, batchNorms) {
            t.runningMean = b.runningMean
            t.runningVar = b.runningVar
            t.numBatchesTracked = b.numBatchesTracked
        }
    }
}

/// The method's own state (BYOL's target, as `<prefix>/backbone/...`, `<prefix>/projector/...`); the
/// network and its optimiser are saved by the caller.
extension PretextObjective: Resumable {
    public static var defaultPrefix: String { "target" }

    public func capture(into state: inout TrainingState, prefix: String) { loss.capture(into: &state, prefix: prefix) }

    public func restore(from state: TrainingState, prefix: String) throws {
        var method = loss
        try method.restore(from: state, prefix: prefix)
    }
}
