import Collections

/// Tensors of one component, keyed by PyTorch state-dict name, in source order.
public typealias StateDict = OrderedDictionary<String, Tensor>

/// An in-memory checkpoint: tensors grouped by component, the architecture, and provenance.
///
/// Component keys are the names PyTorch uses *within* that component: the backbone and the
/// classifier use torchvision names (`layer1.0.conv1.weight`, `fc.weight`), so backbone plus
/// classifier is a torchvision `ResNet` state dict; projector and predictor keys are those of
/// their own `nn.Sequential` (`0.weight`, `1.running_mean`, ...).
public struct Checkpoint: Equatable, Sendable {
    /// Component name (`backbone`, `classifier`, `projector`, `predictor`, ...) -> its tensors.
    public var components: OrderedDictionary<String, StateDict>
    public var architecture: Architecture?
    public var provenance: Provenance
    /// Tensors stored once under several names: alias -> the name it shares
    /// its tensor with, both in `flatStateDict` naming (`fc.weight`, `projector.0.weight`). Writers
    /// use `sharedAliases(in:)`, which keeps only entries whose names exist with identical tensors, so
    /// an entry made stale by editing one tensor is ignored rather than written. See `Checkpoint+Aliases`.
    public var aliases: [String: String]

    public init(components: OrderedDictionary<String, StateDict>, architecture: Architecture?, provenance: Provenance,
                aliases: [String: String] = [:]) {
        self.components = components
        self.architecture = architecture
        self.provenance = provenance
        self.aliases = aliases
    }

    /// Equal components, architecture and provenance, and the same sharing (`sharedAliases(in:)` of
    /// the whole flat state dict), so stale or redundant alias entries do not make checkpoints differ.
    public static func == (a: Checkpoint, b: Checkpoint) -> Bool {
        guard a.components == b.components, a.architecture == b.architecture, a.provenance == b.provenance else { return false }
        if a.aliases.isEmpty && b.aliases.isEmpty { return true }
        let flat = a.flatStateDict()
        return a.sharedAliases(in: flat) == b.sharedAliases(in: flat)
    }

    /// Components whose keys go into an exported state dict unprefixed: `backbone` and `classifier`
    /// (together the torchvision `ResNet` layout) and `tensors` (a plain tensor dict `bissl convert`
    /// carried over from a file with no recognised architecture).
    public static let unprefixedComponents: Set<String> = ["backbone", "classifier", "tensors"]

    /// One flat state dict for export: backbone, classifier and tensors keys as they are, every other
    /// component's keys prefixed with `<component>.` (`projector.0.weight`).
    /// - Parameter only: restrict to these components (e.g. `["backbone"]`); nil for all.
    public func flatStateDict(only: Set<String>? = nil) -> StateDict {
        var flat = StateDict()
        for (name, tensors) in components where only?.contains(name) ?? true {
            let prefix = Self.unprefixedComponents.contains(name) ? "" : name + "."
            for (key, tensor) in tensors { flat[prefix + key] = tensor }
        }
        return flat
    }

    /// This checkpoint with only the components named in `only` (unknown names ignored), the aliases
    /// between kept names, and, when only the backbone is kept, the architecture record without heads.
    public func keeping(_ only: Set<String>) -> Checkpoint {
        var copy = self
        copy.components = components.filter { only.contains($0.key) }
        if copy.components.keys.elementsEqual(["backbone"]) { copy.architecture?.heads = [:] }
        let names = Set(copy.flatStateDict().keys)
        copy.aliases = aliases.filter { names.contains($0.key) && names.contains($0.value) }
        return copy
    }
}
