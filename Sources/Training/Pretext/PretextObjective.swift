import Checkpoint
import Engine

/// The self-supervised pretext loss of BiSSL's lower level and of pretraining (method brief 5.3-5.4):
/// SimCLR's NT-Xent (Chen et al., arXiv:2002.05709) or BYOL (Grill et al., arXiv:2006.07733) over a
/// `Network` whose heads are `projector` (both methods) and `predictor` (BYOL).
///
/// **One forward per step.** The two views `[N, 3, H, W]` each are stacked into ONE batch of 2N
/// (view 1 rows first) and go through the backbone and heads together, so BatchNorm normalises with
/// statistics over both views and running statistics move once per step. R5 does not do this: its
/// `SimCLR.forward` and `BYOL.forward` (`source/models/simclr.py`, `byol.py`) call
/// `head(backbone(x))` and `head(backbone(y))` separately, i.e. per-view BN statistics (over the
/// global batch with SyncBN) and two running-statistics updates per step; BYOL's target runs the same
/// way under `no_grad`. We keep the joint batch deliberately: one cached forward is what backward and
/// the finite-difference HVP probes need (the Engine HVP test and its double-backward fixture use the
/// joint batch), and it halves the number of backbone calls. Its effect is that each BN layer
/// normalises 2N samples instead of N (the losses differ slightly from R5's at equal weights).
///
/// **BYOL target.** Copies of the online backbone and projector (parameters and BN buffers), made at
/// `init` and by `resetTarget()` (R5 `reinit_target_model`). They never receive gradients and are not
/// in `parameters`. When `updateEMA` is true, the target is moved at the START of the forward
/// (R5 `BYOL.forward(update_ema=True)`): `target = decay * target + (1 - decay) * online` for the
/// backbone and projector parameters only, never the BN buffers (brief 5.4). The target forward
/// uses the same `mode` (R5's target is a sub-module in train mode, so its running statistics move
/// in `.train` and stay in `.trainFrozenStatistics`).
public final class PretextObjective {
    public enum Method: String, Sendable, CaseIterable {
        case simclr, byol
    }

    public let method: Method
    /// The online network (backbone + `projector` [+ `predictor`]); its parameters get the gradients.
    public let network: Network
    /// NT-Xent temperature τ (brief 4.1: 0.5). Unused by BYOL.
    public let temperature: Float
    /// BYOL EMA decay (brief 4.1: 0.9995, constant). Unused by SimCLR.
    public let emaDecay: Float
    public let projector: MLPHead
    /// BYOL only.
    public let predictor: MLPHead?
    /// BYOL only: the target backbone and projector (no gradient).
    public private(set) var targetBackbone: ResNet?
    public private(set) var targetProjector: MLPHead?

    /// - Parameters:
    ///   - network: the online network; it must have an MLP head `projector` whose input size is the
    ///     backbone's feature count, and for BYOL an MLP head `predictor` on the projector's output.
    ///   - temperature: τ > 0 of NT-Xent.
    ///   - emaDecay: BYOL's decay in [0, 1].
    /// - Throws: `CheckpointError.invalid` (one line) when a head is missing, not an MLP, or sized wrong.
    public init(method: Method, network: Network, temperature: Float = 0.5, emaDecay: Float = 0.9995) throws {
        guard temperature > 0, temperature.isFinite else {
            throw CheckpointError.invalid("pretext: temperature must be positive, got \(temperature)")
        }
        guard (0...1).contains(emaDecay) else {
            throw CheckpointError.invalid("pretext: EMA decay must be in [0, 1], got \(emaDecay)")
        }
        self.method = method
        self.network = network
        self.temperature = temperature
        self.emaDecay = emaDecay
        guard case .mlp(let projector)? = network.heads["projector"] else {
            throw CheckpointError.invalid("pretext \(method.rawValue): the network has no MLP 'projector' head")
        }
        guard projector.dims.first == network.featureCount else {
            throw CheckpointError.invalid("pretext: the projector takes \(projector.dims.first!) features, the backbone gives \(network.featureCount)")
        }
        self.projector = projector
        if method == .byol {
            guard case .mlp(let predictor)? = network.heads["predictor"] else {
                throw CheckpointError.invalid("pretext byol: the network has no MLP 'predictor' head")
            }
            guard predictor.dims.first == projector.dims.last, predictor.dims.last == projector.dims.last else {
                throw CheckpointError.invalid("pretext byol: the predictor \(predictor.dims) must map the projector's \(projector.dims.last!) outputs to as many")
            }
            self.predictor = predictor
            try makeTarget()
        } else {
            self.predictor = nil
        }
    }

    /// Online backbone parameters then head parameters (projector, then predictor), the order an
    /// optimiser over the whole pretext model uses.
    public var parameters: [Parameter] { backboneParameters + headParameters }

    /// θ: the online backbone's parameters (what BiSSL's HVP and regulariser act on).
    public var backboneParameters: [Parameter] { network.backbone.parameters }

    /// φ: projector (then predictor) parameters.
    public var headParameters: [Parameter] { projector.parameters + (predictor?.parameters ?? []) }

    /// BYOL's target parameters (backbone then projector), empty for SimCLR. Never part of `parameters`.
    public var targetParameters: [Parameter] {
        guard let b = targetBackbone, let p = targetProjector else { return [] }
        return b.parameters + p.parameters
    }

    /// BYOL: sets the target to a copy of the online backbone and projector, BN buffers included
    /// (R5 `reinit_target_model`, called by BiSSL after loading a checkpoint). No-op for SimCLR.
    public func resetTarget() {
        guard method == .byol else { return }
        // Shapes match by construction, so loading cannot fail.
        try! targetBackbone!.load(network.backbone.stateDict())
        try! targetProjector!.load(projector.stateDict())
    }

    private func makeTarget() throws {
        targetBackbone = try ResNet(architecture: network.backbone.architecture)
        targetProjector = try MLPHead(dims: projector.dims)
        resetTarget()
    }

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
        let n = view1.n
        let x = Tensor4(n: 2 * n, c: view1.c, h: view1.h, w: view1.w, data: view1.data + view2.data)
        switch method {
        case .simclr:
            let z = projector.forward(network.backbone.forward(x, mode: mode), mode: mode)
            let (loss, dz) = NTXent.forward(z, temperature: temperature)
            network.backbone.backward(projector.backward(dz))
            return loss
        case .byol:
            let predictor = predictor!, targetBackbone = targetBackbone!, targetProjector = targetProjector!
            if updateEMA {
                emaUpdate(target: targetParameters, online: backboneParameters + projector.parameters, decay: emaDecay)
            }
            let p = predictor.forward(projector.forward(network.backbone.forward(x, mode: mode), mode: mode), mode: mode)
            let t = targetProjector.forward(targetBackbone.forward(x, mode: mode), mode: mode)
            let (loss, dp1, dp2) = BYOLLoss.forward(p1: p.rows(0..<n), p2: p.rows(n..<(2 * n)),
                                                    t1: t.rows(0..<n), t2: t.rows(n..<(2 * n)))
            network.backbone.backward(projector.backward(predictor.backward(Matrix.stacked(dp1, dp2))))
            return loss
        }
    }
}
