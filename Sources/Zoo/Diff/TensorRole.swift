import Checkpoint

/// Which section of a diff a tensor belongs to.
///
/// PyTorch keeps three kinds of entries in a ResNet state dict: learned parameters (`weight`,
/// `bias`), BatchNorm running statistics (`running_mean`, `running_var`; buffers updated by forward
/// passes in train mode, not by the optimizer) and counters (`num_batches_tracked`, an int64 buffer
/// that only counts batches). A diff reports them separately so that a change of statistics
/// or counters is never mistaken for a change of weights.
public enum DiffSection: String, Codable, CaseIterable, Sendable {
    /// Learned floating-point tensors.
    case weights
    /// `running_mean` and `running_var` of BatchNorm layers.
    case bnStatistics = "bn_statistics"
    /// `num_batches_tracked` and any other integer or boolean buffer.
    case counters

    /// Heading used by the text renderer.
    public var title: String {
        switch self {
        case .weights: return "weights"
        case .bnStatistics: return "BN statistics"
        case .counters: return "counters"
        }
    }

    /// The section of the tensor stored under `key` (last dotted segment decides) with `dtype`.
    public static func of(key: String, dtype: DType) -> DiffSection {
        let leaf = key.split(separator: ".").last.map(String.init) ?? key
        switch leaf {
        case "running_mean", "running_var": return .bnStatistics
        case "num_batches_tracked": return .counters
        default: return dtype.isFloatingPoint ? .weights : .counters
        }
    }
}

/// The stage of the network a tensor belongs to, for the per-stage summary.
///
/// Backbone keys use torchvision ResNet names: `conv1.*` and `bn1.*` are the stem, `layer1.*` ...
/// `layer4.*` the four stages (`torchvision.models.resnet.ResNet`). A `fc.*` key found in the
/// backbone or in a plain `tensors` component is the classifier. Every other component (`classifier`,
/// `projector`, `predictor`, ...) is one stage named after the component.
public enum DiffStage {
    /// Backbone stages in network order; heads follow in the order they are first seen.
    public static let backboneOrder = ["stem", "layer1", "layer2", "layer3", "layer4"]

    /// Stage name for `key` in `component`.
    public static func of(component: String, key: String) -> String {
        guard component == "backbone" || component == "tensors" else { return component }
        let first = key.split(separator: ".", maxSplits: 1).first.map(String.init) ?? key
        switch first {
        case "conv1", "bn1": return "stem"
        case "layer1", "layer2", "layer3", "layer4": return first
        case "fc": return "classifier"
        default: return component == "backbone" ? "backbone-other" : first
        }
    }

    /// Sort rank: backbone stages first in network order, then the rest by first appearance.
    static func rank(_ stage: String) -> Int? { backboneOrder.firstIndex(of: stage) }
}
