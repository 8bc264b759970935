import BisslCore

/// A linear classifier on the backbone features: `nn.Linear(features, classes)` with PyTorch's
/// default initialisation (docs/bissl.md, "Network, heads and state-dict keys"). Keys `<prefix>weight` `[classes, features]`
/// and `<prefix>bias` `[classes]`; the classifier component uses the prefix `fc.` (torchvision).
public final class LinearHead {
    public let linear: Linear

    public init(features: Int, classes: Int, prefix: String = "fc.") {
        linear = Linear(name: prefix, inFeatures: features, outFeatures: classes)
    }

    public var parameters: [Parameter] { linear.parameters }

    /// PyTorch's `nn.Linear` default initialisation from `SeededRNG(seed)`.
    public func initialize(seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        linear.resetParameters(rng: &rng)
    }

    /// x `[N, features]` -> logits `[N, classes]`.
    public func forward(_ x: Matrix) -> Matrix { linear.forward(x) }
    /// dlogits `[N, classes]` -> dx `[N, features]`.
    public func backward(_ dy: Matrix) -> Matrix { linear.backward(dy) }

    public func stateDict() -> StateDict {
        var sd = StateDict()
        for p in parameters { StateDictIO.store(p, into: &sd) }
        return sd
    }

    /// - Throws: `ModelError.invalid` for a missing, extra or mis-shaped tensor; nothing is changed then.
    public func load(_ sd: StateDict) throws {
        try StateDictIO.validate(sd, against: stateDict(), owner: "classifier")
        for p in parameters { try StateDictIO.load(p, from: sd, owner: "classifier") }
    }
}

/// An MLP projector/predictor as an `nn.Sequential` of the layout `MLPLayout` describes: per layer
/// `Linear(d_i, d_{i+1})` (with or without bias), an optional `BatchNorm1d` (affine or not), then ReLU
/// unless it is the last layer. Keys are the Sequential's: `<index>.weight`, `<index>.bias`,
/// `<index>.running_mean`, ... at the module indices of the layout. `init(dims:)` gives bissl's own
/// layout (`MLPLayout.standard`: Linear(b)-BN-ReLU per hidden layer, final Linear without bias, keys
/// `0.*`, `1.*`, `3.*`, ..., `<3(L-1)>.weight`, as in BYOL, arXiv:2006.07733 section 3.3); `init(layout:)` any layout read from a
/// checkpoint (SimCLR, MoCo v2/v3, BYOL, SimSiam code).
public final class MLPHead {
    public let dims: [Int]
    public let layout: MLPLayout
    public let linears: [Linear]
    /// The BatchNorm layers present, in order (for bissl's layout, `norms[i]` follows `linears[i]`).
    public let norms: [BatchNorm1d]
    /// Per layer: the index in `norms` of its BN, if any.
    private let normOfLayer: [Int?]
    private let relus: [ReLU]

    /// bissl's layout for `dims`.
    /// - Parameter dims: at least two sizes, e.g. `[2048, 256, 256, 256]`.
    /// - Throws: `ModelError.invalid` for fewer than two sizes or a non-positive size.
    public convenience init(dims: [Int]) throws {
        try self.init(layout: .standard(dims: dims))
    }

    /// - Throws: `ModelError.invalid` for fewer than two sizes, a non-positive size, or a layout
    ///   whose layer count is not `dims.count - 1`.
    public init(layout: MLPLayout) throws {
        let dims = layout.dims
        guard dims.count >= 2, dims.allSatisfy({ $0 > 0 }) else {
            throw ModelError.invalid("MLP head: needs at least two positive sizes, got \(dims)")
        }
        guard layout.layers.count == dims.count - 1 else {
            throw ModelError.invalid("MLP head: \(layout.layers.count) layers for sizes \(dims)")
        }
        self.dims = dims
        self.layout = layout
        var linears: [Linear] = []
        var norms: [BatchNorm1d] = []
        var normOfLayer: [Int?] = []
        for (i, l) in layout.layers.enumerated() {
            linears.append(Linear(name: "\(l.index).", inFeatures: dims[i], outFeatures: dims[i + 1], bias: l.bias))
            if let n = l.norm {
                normOfLayer.append(norms.count)
                norms.append(BatchNorm1d(name: "\(n.index).", features: dims[i + 1], affine: n.affine))
            } else {
                normOfLayer.append(nil)
            }
        }
        self.linears = linears
        self.norms = norms
        self.normOfLayer = normOfLayer
        relus = (0..<(linears.count - 1)).map { _ in ReLU() }
    }

    /// Parameters in `nn.Sequential` order.
    public var parameters: [Parameter] {
        var ps: [Parameter] = []
        for i in linears.indices {
            ps += linears[i].parameters
            if let n = normOfLayer[i] { ps += norms[n].parameters }
        }
        return ps
    }

    /// PyTorch defaults from `SeededRNG(seed)`: each Linear `U(-1/sqrt(in), 1/sqrt(in))`; BN weight 1, bias 0.
    public func initialize(seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        for l in linears { l.resetParameters(rng: &rng) }
        for bn in norms {
            for c in 0..<bn.core.channels {
                bn.core.weight.value[c] = 1; bn.core.bias.value[c] = 0
                bn.core.runningMean[c] = 0; bn.core.runningVar[c] = 1
            }
            bn.core.numBatchesTracked = 0
        }
    }

    /// x `[N, d0]` -> `[N, dL]`.
    public func forward(_ x: Matrix, mode: Mode) -> Matrix {
        var out = x
        for i in linears.indices {
            out = linears[i].forward(out)
            if let n = normOfLayer[i] { out = norms[n].forward(out, mode: mode) }
            if i < relus.count { out = relus[i].forward(out) }
        }
        return out
    }

    /// dy `[N, dL]` -> dx `[N, d0]`; accumulates every parameter gradient.
    public func backward(_ dy: Matrix) -> Matrix {
        var d = dy
        for i in linears.indices.reversed() {
            if i < relus.count { d = relus[i].backward(d) }
            if let n = normOfLayer[i] { d = norms[n].backward(d) }
            d = linears[i].backward(d)
        }
        return d
    }

    /// Tangent forward ẋ `[N, d0]` -> ẏ `[N, dL]` at the last primal forward (`Tangents`), layer by
    /// layer as `forward` (any `MLPLayout`).
    public func tangentForward(_ dotX: Matrix) -> Matrix {
        var out = dotX
        for i in linears.indices {
            out = linears[i].tangentForward(out)
            if let n = normOfLayer[i] { out = norms[n].tangentForward(out) }
            if i < relus.count { out = relus[i].tangentForward(out) }
        }
        return out
    }

    /// Tangent backward R{dy} `[N, dL]` -> R{dx} `[N, d0]`; accumulates R{dW} of every parameter.
    public func tangentBackward(_ rdy: Matrix) -> Matrix {
        var d = rdy
        for i in linears.indices.reversed() {
            if i < relus.count { d = relus[i].tangentBackward(d) }
            if let n = normOfLayer[i] { d = norms[n].tangentBackward(d) }
            d = linears[i].tangentBackward(d)
        }
        return d
    }

    public func stateDict() -> StateDict {
        var sd = StateDict()
        for i in linears.indices {
            for p in linears[i].parameters { StateDictIO.store(p, into: &sd) }
            if let n = normOfLayer[i] { StateDictIO.store(norms[n], into: &sd) }
        }
        return sd
    }

    /// - Throws: `ModelError.invalid` for a missing, extra or mis-shaped tensor; nothing is changed then.
    public func load(_ sd: StateDict) throws {
        let owner = "MLP head \(dims.map(String.init).joined(separator: "-"))"
        try StateDictIO.validate(sd, against: stateDict(), owner: owner)
        for l in linears { for p in l.parameters { try StateDictIO.load(p, from: sd, owner: owner) } }
        for bn in norms { try StateDictIO.load(bn.core, from: sd, owner: owner, affine: bn.affine) }
    }
}
