/// Where the modules of an MLP head sit in its `nn.Sequential`, read from the state-dict keys.
///
/// The projectors and predictors of common self-supervised code are all chains of `nn.Linear`
/// layers (each with or without a bias), each optionally followed by `nn.BatchNorm1d` (affine or
/// `affine=False`), with a parameter-free `nn.ReLU` between consecutive layers:
/// - SimCLR (Chen et al., arXiv:2002.05709) and MoCo v2 (arXiv:2003.04297) code:
///   `Linear(b) ReLU Linear(b)` (keys `0.*`, `2.*`);
/// - BYOL (arXiv:2006.07733) code and bissl's own heads (`standard`):
///   `Linear(b) BN ReLU Linear` (keys `0.*`, `1.*`, `3.*`), the last Linear with or without bias;
/// - MoCo v3 (arXiv:2104.02057): `Linear(no b) BN ReLU ... Linear(no b) BN(affine=False)`;
/// - SimSiam (arXiv:2011.10566): `Linear(no b) BN ReLU Linear(no b) BN ReLU Linear(b) BN(affine=False)`
///   and predictor `Linear(no b) BN ReLU Linear(b)`.
/// A layer's output goes through its BN (when present), then a ReLU unless it is the last layer.
/// The ReLU has no tensors, so its presence is read from the gap it leaves in the module indices;
/// a Linear that directly follows the previous layer (no gap) is refused, since the network it
/// describes has no activation there.
public struct MLPLayout: Equatable, Sendable {
    /// A BatchNorm1d after a Linear: its module index and whether it has `weight`/`bias`.
    public struct Norm: Equatable, Sendable {
        public var index: Int
        public var affine: Bool
        public init(index: Int, affine: Bool) { self.index = index; self.affine = affine }
    }

    /// One Linear (module `index`, `bias` or not) with its optional BN.
    public struct Layer: Equatable, Sendable {
        public var index: Int
        public var bias: Bool
        public var norm: Norm?
        public init(index: Int, bias: Bool, norm: Norm?) { self.index = index; self.bias = bias; self.norm = norm }
    }

    /// Feature sizes from input to output, `[d0, ..., dL]` (L = `layers.count`).
    public var dims: [Int]
    public var layers: [Layer]

    public init(dims: [Int], layers: [Layer]) {
        self.dims = dims
        self.layers = layers
    }

    /// The layout bissl creates for a fresh head (BYOL's, arXiv:2006.07733 section 3.3, with a bias-free output):
    /// `Linear(b) BN ReLU` per hidden layer, then `Linear(no bias)`; keys `0.*`, `1.*`, `3.*`, ...
    public static func standard(dims: [Int]) -> MLPLayout {
        let hidden = max(dims.count - 2, 0)
        var layers = (0..<hidden).map { Layer(index: 3 * $0, bias: true, norm: Norm(index: 3 * $0 + 1, affine: true)) }
        layers.append(Layer(index: 3 * hidden, bias: false, norm: nil))
        return MLPLayout(dims: dims, layers: layers)
    }

    /// Reads the layout of an `nn.Sequential` head from its own state dict (keys `<index>.<name>`).
    /// - Parameter name: used in error messages (`projector`, `encoder.fc`).
    /// - Throws: `CheckpointError.invalid` naming the offending key: a key that is not `<index>.<name>`,
    ///   a module that is neither a Linear (`weight [out, in]`, optional `bias [out]`) nor a BatchNorm1d
    ///   (`running_mean`, `running_var` `[C]`, `weight`/`bias` together or not at all, optional scalar
    ///   `num_batches_tracked`), a BN that does not follow a Linear of its size, a Linear that does not
    ///   take the previous output or directly follows the previous layer, or no Linear at all.
    public static func infer(_ dict: StateDict, name: String) throws -> MLPLayout {
        var modules: [Int: [String: Tensor]] = [:]
        for (key, tensor) in dict {
            let parts = key.split(separator: ".", maxSplits: 1)
            guard parts.count == 2, let i = Int(parts[0]), i >= 0, String(i) == parts[0] else {
                throw CheckpointError.invalid("\(name).\(key) is neither a linear head key (weight, bias) nor an nn.Sequential key (<index>.<name>)")
            }
            modules[i, default: [:]][String(parts[1])] = tensor
        }
        var dims: [Int] = []
        var layers: [Layer] = []
        var lastIndex = -2
        for i in modules.keys.sorted() {
            let m = modules[i]!
            let names = Set(m.keys)
            if names.isSubset(of: ["weight", "bias"]), let w = m["weight"], w.shape.count == 2 {
                if let previous = dims.last {
                    guard w.shape[1] == previous else {
                        throw CheckpointError.invalid("\(name).\(i).weight takes \(w.shape[1]) inputs but the previous layer gives \(previous)")
                    }
                    guard i > lastIndex + 1 else {
                        throw CheckpointError.invalid("\(name).\(i) is a Linear right after module \(lastIndex) with no activation module between them")
                    }
                } else {
                    dims.append(w.shape[1])
                }
                if let b = m["bias"], b.shape != [w.shape[0]] {
                    throw CheckpointError.invalid("\(name).\(i).bias has shape \(b.shape), expected [\(w.shape[0])]")
                }
                dims.append(w.shape[0])
                layers.append(Layer(index: i, bias: m["bias"] != nil, norm: nil))
            } else if names.isSuperset(of: ["running_mean", "running_var"]),
                      names.isSubset(of: ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]),
                      names.contains("weight") == names.contains("bias") {
                guard let last = layers.last, last.norm == nil, last.index == lastIndex, let c = dims.last else {
                    throw CheckpointError.invalid("\(name).\(i) is a BatchNorm that does not follow a Linear layer")
                }
                for s in ["weight", "bias", "running_mean", "running_var"] where m[s] != nil && m[s]!.shape != [c] {
                    throw CheckpointError.invalid("\(name).\(i).\(s) has shape \(m[s]!.shape), expected [\(c)]")
                }
                if let n = m["num_batches_tracked"], !n.shape.isEmpty {
                    throw CheckpointError.invalid("\(name).\(i).num_batches_tracked has shape \(n.shape), expected []")
                }
                layers[layers.count - 1].norm = Norm(index: i, affine: names.contains("weight"))
            } else {
                throw CheckpointError.invalid("\(name).\(i) with keys \(names.sorted()) is neither a Linear nor a BatchNorm1d")
            }
            lastIndex = i
        }
        guard !layers.isEmpty else { throw CheckpointError.invalid("\(name) has no Linear layer") }
        return MLPLayout(dims: dims, layers: layers)
    }

    /// One line for messages: `Linear(b) BN ReLU Linear BN(affine=False)`.
    public var summary: String {
        layers.enumerated().map { k, l in
            var s = l.bias ? "Linear(b)" : "Linear"
            if let n = l.norm { s += n.affine ? " BN" : " BN(affine=False)" }
            if k < layers.count - 1 { s += " ReLU" }
            return s
        }.joined(separator: " ")
    }
}
