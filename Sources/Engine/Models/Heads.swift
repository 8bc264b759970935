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

    /// - Throws: `CheckpointError.invalid` for a missing, extra or mis-shaped tensor; nothing is changed then.
    public func load(_ sd: StateDict) throws {
        try StateDictIO.validate(sd, against: stateDict(), owner: "classifier")
        for p in parameters { try StateDictIO.load(p, from: sd, owner: "classifier") }
    }
}

/// The MLP projector/predictor of docs/bissl.md, "Network, heads and state-dict keys", for dims
/// `[d0, d1, ..., dL]`: for each consecutive pair but the last, `Linear(d_i, d_{i+1})` (with bias) ->
/// `BatchNorm1d` -> ReLU; then a final `Linear(d_{L-1}, dL, bias=False)`. As an `nn.Sequential` its
/// keys are `0.weight`, `0.bias`, `1.{weight,bias,running_mean,running_var,num_batches_tracked}`,
/// `3.*`, `4.*`, ..., `<3(L-1)>.weight`.
public final class MLPHead {
    public let dims: [Int]
    public let linears: [Linear]
    public let norms: [BatchNorm1d]
    private let relus: [ReLU]

    /// - Parameter dims: at least two sizes, e.g. `[2048, 256, 256, 256]`.
    /// - Throws: `CheckpointError.invalid` for fewer than two sizes or a non-positive size.
    public init(dims: [Int]) throws {
        guard dims.count >= 2, dims.allSatisfy({ $0 > 0 }) else {
            throw CheckpointError.invalid("MLP head: needs at least two positive sizes, got \(dims)")
        }
        self.dims = dims
        let hidden = dims.count - 2
        var linears: [Linear] = []
        var norms: [BatchNorm1d] = []
        for i in 0..<hidden {
            linears.append(Linear(name: "\(3 * i).", inFeatures: dims[i], outFeatures: dims[i + 1]))
            norms.append(BatchNorm1d(name: "\(3 * i + 1).", features: dims[i + 1]))
        }
        linears.append(Linear(name: "\(3 * hidden).", inFeatures: dims[hidden], outFeatures: dims[hidden + 1], bias: false))
        self.linears = linears
        self.norms = norms
        relus = (0..<hidden).map { _ in ReLU() }
    }

    /// Parameters in `nn.Sequential` order.
    public var parameters: [Parameter] {
        var ps: [Parameter] = []
        for i in linears.indices {
            ps += linears[i].parameters
            if i < norms.count { ps += [norms[i].weight, norms[i].bias] }
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
            if i < norms.count { out = relus[i].forward(norms[i].forward(out, mode: mode)) }
        }
        return out
    }

    /// dy `[N, dL]` -> dx `[N, d0]`; accumulates every parameter gradient.
    public func backward(_ dy: Matrix) -> Matrix {
        var d = dy
        for i in linears.indices.reversed() {
            if i < norms.count { d = norms[i].backward(relus[i].backward(d)) }
            d = linears[i].backward(d)
        }
        return d
    }

    /// Tangent forward ẋ `[N, d0]` -> ẏ `[N, dL]` at the last primal forward (`Tangents`).
    public func tangentForward(_ dotX: Matrix) -> Matrix {
        var out = dotX
        for i in linears.indices {
            out = linears[i].tangentForward(out)
            if i < norms.count { out = relus[i].tangentForward(norms[i].tangentForward(out)) }
        }
        return out
    }

    /// Tangent backward R{dy} `[N, dL]` -> R{dx} `[N, d0]`; accumulates R{dW} of every parameter.
    public func tangentBackward(_ rdy: Matrix) -> Matrix {
        var d = rdy
        for i in linears.indices.reversed() {
            if i < norms.count { d = norms[i].tangentBackward(relus[i].tangentBackward(d)) }
            d = linears[i].tangentBackward(d)
        }
        return d
    }

    public func stateDict() -> StateDict {
        var sd = StateDict()
        for i in linears.indices {
            for p in linears[i].parameters { StateDictIO.store(p, into: &sd) }
            if i < norms.count { StateDictIO.store(norms[i].core, into: &sd) }
        }
        return sd
    }

    /// - Throws: `CheckpointError.invalid` for a missing, extra or mis-shaped tensor; nothing is changed then.
    public func load(_ sd: StateDict) throws {
        let owner = "MLP head \(dims.map(String.init).joined(separator: "-"))"
        try StateDictIO.validate(sd, against: stateDict(), owner: owner)
        for l in linears { for p in l.parameters { try StateDictIO.load(p, from: sd, owner: owner) } }
        for bn in norms { try StateDictIO.load(bn.core, from: sd, owner: owner) }
    }
}
