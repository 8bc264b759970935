/// What is needed to rebuild the engine model of a checkpoint without guessing.
///
/// Inferred from tensor names and shapes (never from a label in the file alone): see
/// `ArchitectureInference`. Stored in the HDF5 file's `/architecture` group (schemas/checkpoint-v1.md).
public struct Architecture: Codable, Equatable, Sendable {
    /// Model family; `resnet` is the only one so far (torchvision v1.5 layout, stride in the 3x3 conv).
    public var family: String
    /// 18, 34, 50, 101 or 152.
    public var depth: Int
    /// `basic` (ResNet-18/34) or `bottleneck` (ResNet-50/101/152).
    public var block: String
    /// Blocks per stage, e.g. `[3, 4, 6, 3]`.
    public var layers: [Int]
    /// Base width: output channels of the stem (64 for torchvision).
    public var width: Int
    /// `imagenet` (7x7 stride-2 conv + max pool) or `small` (3x3 stride-1 conv, no max pool).
    public var stem: String
    /// Heads by component name (`classifier`, `projector`, `predictor`).
    public var heads: [String: Head]

    /// A head on top of the backbone's pooled features.
    public struct Head: Codable, Equatable, Sendable {
        /// `linear` (one `nn.Linear`) or `mlp` (Linear-BN-ReLU-...-Linear, docs/bissl.md, "Network, heads and state-dict keys").
        public var kind: String
        /// Feature sizes from input to output, e.g. `[2048, 1000]` or `[2048, 4096, 256]`.
        public var dims: [Int]
        /// Output size; the number of classes for a classifier.
        public var outputs: Int { dims.last ?? 0 }

        public init(kind: String, dims: [Int]) {
            self.kind = kind
            self.dims = dims
        }
    }

    public init(family: String = "resnet", depth: Int, block: String, layers: [Int], width: Int,
                stem: String, heads: [String: Head] = [:]) {
        self.family = family
        self.depth = depth
        self.block = block
        self.layers = layers
        self.width = width
        self.stem = stem
        self.heads = heads
    }

    /// Short label for listings: `resnet50`, `resnet18-w16-small`.
    public var label: String {
        var s = "\(family)\(depth)"
        if width != 64 { s += "-w\(width)" }
        if stem != "imagenet" { s += "-\(stem)" }
        return s
    }
}
