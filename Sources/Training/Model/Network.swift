import Checkpoint
import Collections
import Engine

/// A ResNet backbone with its heads: the engine form of one zoo entry, whose components are
/// `backbone` (torchvision keys, `layer1.0.conv1.weight`), `classifier` (`fc.weight [C, F]`,
/// `fc.bias [C]`), and MLP heads such as `projector` / `predictor` (`nn.Sequential` keys `0.weight`,
/// `1.running_var`, ..., in the module layout of `MLPLayout`).
///
/// `Network(checkpoint:)` rebuilds the engine model from the entry's architecture record and loads
/// every component strictly (like `load_state_dict(strict=True)`); `components()` gives them back
/// as float32 state dicts with BN buffers and `num_batches_tracked`.
public final class Network {
    /// One head on the pooled backbone features `[N, F]`.
    public enum Head {
        /// `nn.Linear(F, C)`; the classifier uses the `fc.` prefix (torchvision), other linear heads none.
        case linear(LinearHead)
        /// Linear(-BN1d)-ReLU-...-Linear(-BN1d), `MLPHead`.
        case mlp(MLPHead)

        public var parameters: [Parameter] {
            switch self {
            case .linear(let h): h.parameters
            case .mlp(let h): h.parameters
            }
        }

        /// `[N, d0]` -> `[N, dL]`; `mode` only matters for the BN layers of an MLP.
        public func forward(_ x: Matrix, mode: Mode) -> Matrix {
            switch self {
            case .linear(let h): h.forward(x)
            case .mlp(let h): h.forward(x, mode: mode)
            }
        }

        /// `[N, dL]` -> `[N, d0]`, accumulating parameter gradients.
        public func backward(_ dy: Matrix) -> Matrix {
            switch self {
            case .linear(let h): h.backward(dy)
            case .mlp(let h): h.backward(dy)
            }
        }

        public func stateDict() -> StateDict {
            switch self {
            case .linear(let h): h.stateDict()
            case .mlp(let h): h.stateDict()
            }
        }

        /// - Throws: `TrainingError.invalid` for a missing, extra or mis-shaped tensor.
        public func load(_ sd: StateDict) throws {
            switch self {
            case .linear(let h): try h.load(sd)
            case .mlp(let h): try h.load(sd)
            }
        }

        /// The architecture record of this head.
        public var record: Architecture.Head {
            switch self {
            case .linear(let h): Architecture.Head(kind: "linear", dims: [h.linear.inFeatures, h.linear.outFeatures])
            case .mlp(let h): Architecture.Head(kind: "mlp", dims: h.dims)
            }
        }

        /// A freshly initialised head of the given record (PyTorch default init from `seed`); an MLP
        /// in `layout` when given (read from a checkpoint), else in bissl's own (`MLPLayout.standard`).
        /// - Throws: `TrainingError.invalid` for an unknown kind, bad sizes, or a layout whose sizes
        ///   are not the record's.
        public static func make(_ record: Architecture.Head, component: String, seed: UInt64, layout: MLPLayout? = nil) throws -> Head {
            switch record.kind {
            case "linear":
                guard record.dims.count == 2, record.dims.allSatisfy({ $0 > 0 }) else {
                    throw TrainingError.invalid("head '\(component)': a linear head needs [in, out] sizes, got \(record.dims)")
                }
                let h = LinearHead(features: record.dims[0], classes: record.dims[1],
                                   prefix: component == "classifier" ? "fc." : "")
                h.initialize(seed: seed)
                return .linear(h)
            case "mlp":
                if let layout, layout.dims != record.dims {
                    throw TrainingError.invalid("head '\(component)': its tensors give sizes \(layout.dims), the architecture record says \(record.dims)")
                }
                let h = try MLPHead(layout: layout ?? .standard(dims: record.dims))
                h.initialize(seed: seed)
                return .mlp(h)
            default:
                throw TrainingError.invalid("head '\(component)': unknown kind '\(record.kind)' (expected linear or mlp)")
            }
        }
    }

    public let backbone: ResNet
    /// Heads by component name, in the order they are stored.
    public private(set) var heads: OrderedDictionary<String, Head> = [:]

    /// A randomly initialised network (timm/torchvision init from `seed`: Kaiming fan-out convs,
    /// zero-initialised last BN of each block, PyTorch's Linear default for the heads).
    /// - Throws: `TrainingError.invalid` for an unsupported architecture.
    public init(architecture: Architecture, seed: UInt64) throws {
        var bare = architecture
        bare.heads = [:]
        backbone = try ResNet(architecture: bare)
        backbone.initialize(seed: seed)
        for (k, (name, record)) in architecture.heads.sorted(by: { $0.key < $1.key }).enumerated() {
            heads[name] = try Head.make(record, component: name, seed: seed &+ UInt64(k + 1))
        }
    }

    /// The network of a zoo entry with its components loaded: every one, or only the backbone and the
    /// heads named in `heads` (the others are not read at all, so a head that does not load cannot
    /// stop a command that does not use it). MLP heads keep the module layout of their tensors
    /// (`MLPLayout.infer`), so heads made by other code load as they are.
    /// - Throws: `TrainingError.invalid` when the entry has no architecture record or no backbone,
    ///   a loaded component has no head record, or a tensor is missing, extra or mis-shaped.
    public init(checkpoint: Checkpoint, heads only: Set<String>? = nil) throws {
        guard let architecture = checkpoint.architecture else {
            throw TrainingError.invalid("the entry has no architecture record; cannot build the network")
        }
        guard let backboneSD = checkpoint.components["backbone"] else {
            throw TrainingError.invalid("the entry has no backbone component")
        }
        var bare = architecture
        bare.heads = [:]
        backbone = try ResNet(architecture: bare)
        try backbone.load(backboneSD)
        for (name, sd) in checkpoint.components where name != "backbone" && only?.contains(name) != false {
            guard let record = architecture.heads[name] else {
                throw TrainingError.invalid("component '\(name)' has no head record in the architecture")
            }
            let layout = record.kind == "mlp" ? try MLPLayout.infer(sd, name: name) : nil
            let head = try Head.make(record, component: name, seed: 0, layout: layout)
            try head.load(sd)
            heads[name] = head
        }
    }

    /// Adds or replaces a head.
    public func setHead(_ name: String, _ head: Head) { heads[name] = head }

    /// Drops a head (no-op when absent).
    public func removeHead(_ name: String) { heads.removeValue(forKey: name) }

    /// Feature size F of the pooled backbone output.
    public var featureCount: Int { backbone.featureCount }

    /// The architecture record: the backbone's plus every head.
    public var architecture: Architecture {
        var a = backbone.architecture
        a.heads = Dictionary(uniqueKeysWithValues: heads.map { ($0.key, $0.value.record) })
        return a
    }

    /// `backbone` then the heads, as float32 state dicts (BN buffers and `num_batches_tracked` included).
    public func components() -> OrderedDictionary<String, StateDict> {
        var c: OrderedDictionary<String, StateDict> = ["backbone": backbone.stateDict()]
        for (name, head) in heads { c[name] = head.stateDict() }
        return c
    }

    /// A checkpoint of the current weights with the given provenance.
    public func checkpoint(provenance: Provenance) -> Checkpoint {
        Checkpoint(components: components(), architecture: architecture, provenance: provenance)
    }
}
