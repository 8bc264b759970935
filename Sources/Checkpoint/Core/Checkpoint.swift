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

    public init(components: OrderedDictionary<String, StateDict>, architecture: Architecture?, provenance: Provenance) {
        self.components = components
        self.architecture = architecture
        self.provenance = provenance
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
}
