import Collections

/// Infers a ResNet architecture (and its heads) from tensor names and shapes, and gives the
/// canonical key set with shapes for an architecture.
///
/// Rules (torchvision `torchvision/models/resnet.py`, v1.5, reproduced in `tools/reference_resnet.py`):
/// - block type: `layer1.0.conv3.weight` present -> `bottleneck` (expansion 4), else `basic` (expansion 1);
/// - blocks per stage: the block indices found under `layer1.` ... `layer4.` (must be `0..<n`);
///   `(block, [n1, n2, n3, n4])` must be one of ResNet-18 `[2,2,2,2]` basic, 34 `[3,4,6,3]` basic,
///   50 `[3,4,6,3]` bottleneck, 101 `[3,4,23,3]` bottleneck, 152 `[3,8,36,3]` bottleneck;
/// - width: output channels of `conv1.weight` (`[width, 3, k, k]`, OIHW);
/// - stem: `conv1.weight` kernel 7 -> `imagenet` (7x7/2 + max pool), kernel 3 -> `small` (3x3/1, no pool);
/// - classifier: `fc.weight` `[out, in]` (+ optional `fc.bias` `[out]`) -> head `classifier`,
///   kind `linear`, dims `[in, out]`; `fc.<i>.*` (an `nn.Sequential`) -> head `projector`, kind `mlp`.
/// Every tensor is then checked against the canonical shape for that architecture; a label stored
/// in the file is never used.
public enum ArchitectureInference {
    /// Blocks per stage and block type of each supported depth (torchvision `resnet18` ... `resnet152`).
    public static let depths: [(depth: Int, block: String, layers: [Int])] = [
        (18, "basic", [2, 2, 2, 2]), (34, "basic", [3, 4, 6, 3]), (50, "bottleneck", [3, 4, 6, 3]),
        (101, "bottleneck", [3, 4, 23, 3]), (152, "bottleneck", [3, 8, 36, 3]),
    ]

    /// The five BatchNorm entries of one `BatchNorm{1,2}d(n)` in state-dict order.
    static let batchNormSuffixes = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]

    /// True for keys whose absence is filled on import (`num_batches_tracked`: an optional
    /// int64 buffer that BatchNorm version 2 added; `torch.nn.modules.batchnorm._NormBase._load_from_state_dict`).
    public static func isOptional(_ key: String) -> Bool { key.hasSuffix("num_batches_tracked") }

    /// Channels of the pooled feature vector: `8 * width * expansion` (2048 for ResNet-50).
    public static func featureDimension(_ arch: Architecture) -> Int {
        arch.width * 8 * (arch.block == "bottleneck" ? 4 : 1)
    }

    // MARK: canonical keys

    /// The torchvision state-dict keys of the backbone (no `fc.*`), in `state_dict()` order, with shapes.
    ///
    /// Conv weights are OIHW, BN `weight/bias/running_mean/running_var` are `[C]`, `num_batches_tracked`
    /// is `[]`. ResNet-50: 318 keys. Checked against `tools/reference_resnet.py` (fixture
    /// `layout/canonical_keys.json`).
    public static func backboneKeys(for arch: Architecture) -> [(key: String, shape: [Int])] {
        var keys: [(key: String, shape: [Int])] = []
        func bn(_ name: String, _ c: Int) {
            for s in batchNormSuffixes { keys.append((name + "." + s, s == "num_batches_tracked" ? [] : [c])) }
        }
        let w = arch.width
        let k = arch.stem == "imagenet" ? 7 : 3
        keys.append(("conv1.weight", [w, 3, k, k]))
        bn("bn1", w)
        let bottleneck = arch.block == "bottleneck"
        let expansion = bottleneck ? 4 : 1
        var inplanes = w
        for (stage, blocks) in arch.layers.enumerated() {
            let planes = w << stage
            for b in 0..<blocks {
                let p = "layer\(stage + 1).\(b)."
                if bottleneck {
                    keys.append((p + "conv1.weight", [planes, inplanes, 1, 1])); bn(p + "bn1", planes)
                    keys.append((p + "conv2.weight", [planes, planes, 3, 3])); bn(p + "bn2", planes)
                    keys.append((p + "conv3.weight", [planes * 4, planes, 1, 1])); bn(p + "bn3", planes * 4)
                } else {
                    keys.append((p + "conv1.weight", [planes, inplanes, 3, 3])); bn(p + "bn1", planes)
                    keys.append((p + "conv2.weight", [planes, planes, 3, 3])); bn(p + "bn2", planes)
                }
                if b == 0 && (stage > 0 || inplanes != planes * expansion) {
                    keys.append((p + "downsample.0.weight", [planes * expansion, inplanes, 1, 1]))
                    bn(p + "downsample.1", planes * expansion)
                }
                inplanes = planes * expansion
            }
        }
        return keys
    }

    /// The torchvision key set with shapes: the backbone, plus `fc.weight [classes, features]` and
    /// `fc.bias [classes]` when `arch.heads["classifier"]` is a linear head. ResNet-50: 320 keys
    /// (318 without `fc`).
    public static func canonicalKeys(for arch: Architecture) -> [(key: String, shape: [Int])] {
        var keys = backboneKeys(for: arch)
        if let head = arch.heads["classifier"], head.kind == "linear", head.dims.count == 2 {
            keys.append(("fc.weight", [head.dims[1], head.dims[0]]))
            keys.append(("fc.bias", [head.dims[1]]))
        }
        return keys
    }

    // MARK: inference

    /// Infers the architecture of a flat state dict in torchvision naming (backbone, optionally `fc.*`)
    /// and validates every key, shape and dtype against `canonicalKeys`.
    ///
    /// `num_batches_tracked` keys may be missing (they are optional); every other canonical
    /// key must be present with its canonical shape, and no other key may be present.
    /// - Throws: `CheckpointError.invalid` naming the first differences (missing, unexpected, wrong
    ///   shape, wrong dtype) with their counts, or when the depth, width or stem cannot be determined.
    public static func infer(_ dict: StateDict) throws -> Architecture {
        let fcKeys = dict.keys.filter { $0.hasPrefix("fc.") }
        var backbone = dict
        for key in fcKeys { backbone[key] = nil }
        var arch = try inferBackbone(backbone)
        if !fcKeys.isEmpty {
            var fc = StateDict()
            for key in fcKeys { fc[String(key.dropFirst(3))] = dict[key] }
            let head = try inferHead(fc, name: "fc")
            let features = featureDimension(arch)
            guard head.dims.first == features else {
                throw CheckpointError.invalid(
                    "fc takes \(head.dims.first ?? 0) inputs but \(arch.label) gives \(features) features")
            }
            arch.heads[head.kind == "linear" ? "classifier" : "projector"] = head
        }
        return arch
    }

    /// Infers and validates a backbone alone (no `fc.*` keys allowed). See `infer`.
    /// - Throws: `CheckpointError.invalid` as `infer` does.
    public static func inferBackbone(_ dict: StateDict) throws -> Architecture {
        let arch = try guessBackbone(dict, strict: true)!
        let diff = compare(dict, to: backboneKeys(for: arch))
        if !diff.isEmpty { throw CheckpointError.invalid("not a valid \(arch.label) backbone: \(diff.summary)") }
        return arch
    }

    /// Best-effort architecture of a possibly incomplete backbone, for scoring candidates: block type,
    /// blocks per stage (the smallest depth whose counts cover those found), width and stem from
    /// whichever tensors are present. Nil when nothing ResNet-like is present.
    public static func guess(_ dict: StateDict) -> Architecture? {
        (try? guessBackbone(dict, strict: false)) ?? nil
    }

    /// Why backbone keys fit no ResNet (`guess` gave nil): the strict check's first complaint, e.g.
    /// `the stem has 0 channels (...)`.
    public static func misfit(_ dict: StateDict) -> String {
        if let conv1 = dict["conv1.weight"], conv1.shape.first == 0 {
            return "the stem has 0 channels (conv1.weight \(conv1.shape)): a ResNet needs at least 1"
        }
        do {
            _ = try guessBackbone(dict, strict: true)
            return "they fit no ResNet"
        } catch let CheckpointError.invalid(m) {
            return m
        } catch {
            return "\(error)"
        }
    }

    private static func guessBackbone(_ dict: StateDict, strict: Bool) throws -> Architecture? {
        var blocks = [Set<Int>](repeating: [], count: 4)
        var bottleneck = false
        for key in dict.keys {
            let parts = key.split(separator: ".", maxSplits: 3, omittingEmptySubsequences: false)
            guard parts.count >= 3, parts[0].count == 6, parts[0].hasPrefix("layer"),
                  let stage = Int(parts[0].dropFirst(5)), (1...4).contains(stage), let b = Int(parts[1]) else { continue }
            blocks[stage - 1].insert(b)
            if parts[2] == "conv3" || parts[2] == "bn3" { bottleneck = true }
        }
        let block = bottleneck ? "bottleneck" : "basic"
        let counts = blocks.map { $0.count }
        if strict {
            for (i, set) in blocks.enumerated() where set != Set(0..<set.count) {
                throw CheckpointError.invalid("layer\(i + 1) has blocks \(set.sorted()), expected 0..<\(set.count)")
            }
        }
        var entry = depths.first { $0.block == block && $0.layers == counts }
        if entry == nil {
            if strict {
                let known = depths.map { "\($0.depth): \($0.block) \($0.layers)" }.joined(separator: ", ")
                throw CheckpointError.invalid(
                    "\(block) blocks per stage \(counts) match no ResNet depth (\(known))")
            }
            let maxima = blocks.map { ($0.max() ?? -1) + 1 }
            entry = depths.first { d in d.block == block && zip(d.layers, maxima).allSatisfy { $0 >= $1 } }
        }
        guard let found = entry else { return nil }

        var width: Int?
        var stem: String?
        if let conv1 = dict["conv1.weight"] {
            guard conv1.shape.count == 4, conv1.shape[1] == 3, conv1.shape[2] == conv1.shape[3] else {
                if strict { throw CheckpointError.invalid("conv1.weight has shape \(conv1.shape), expected [width, 3, k, k]") }
                return nil
            }
            width = conv1.shape[0]
            switch conv1.shape[2] {
            case 7: stem = "imagenet"
            case 3: stem = "small"
            default:
                if strict { throw CheckpointError.invalid("conv1.weight kernel \(conv1.shape[2])x\(conv1.shape[3]) is neither 7x7 (imagenet stem) nor 3x3 (small stem)") }
            }
        } else if strict {
            throw CheckpointError.invalid("no conv1.weight: cannot tell the stem width of this ResNet")
        }
        if width == nil {
            width = dict["bn1.weight"]?.shape.first ?? dict["layer1.0.conv1.weight"].flatMap { $0.shape.count == 4 ? $0.shape[1] : nil }
        }
        guard let w = width, w > 0 else {
            if strict { throw CheckpointError.invalid("the stem has \(width ?? 0) channels (conv1.weight \(dict["conv1.weight"]?.shape ?? [])): a ResNet needs at least 1") }
            return nil
        }
        return Architecture(depth: found.depth, block: block, layers: found.layers, width: w, stem: stem ?? "imagenet")
    }

    // MARK: heads

    /// Infers a head from its own state dict (keys relative to the head):
    /// - `weight [out, in]` and optional `bias [out]` -> `linear`, dims `[in, out]`;
    /// - an `nn.Sequential` of `Linear` (`<i>.weight [out, in]`, optional `<i>.bias`) layers, each
    ///   optionally followed by a `BatchNorm1d` (`<i>.running_mean/running_var [out]`, `<i>.weight/bias [out]`
    ///   unless `affine=False`, optional `<i>.num_batches_tracked []`), with parameter-free modules (ReLU)
    ///   between layers (`MLPLayout`, the projector/predictor layouts of SimCLR, MoCo, BYOL and SimSiam
    ///   code) -> `mlp`, dims `[in, hidden..., out]`, even for a single Linear in a Sequential.
    /// - Parameter name: used in error messages (`projector`, `encoder.fc`).
    /// - Throws: `CheckpointError.invalid` naming the offending key.
    public static func inferHead(_ dict: StateDict, name: String) throws -> Architecture.Head {
        if dict.keys.allSatisfy({ $0 == "weight" || $0 == "bias" }) {
            guard let w = dict["weight"], w.shape.count == 2 else {
                throw CheckpointError.invalid("\(name).weight must be a linear weight [out, in], found \(dict["weight"]?.shape.description ?? "none")")
            }
            if let b = dict["bias"], b.shape != [w.shape[0]] {
                throw CheckpointError.invalid("\(name).bias has shape \(b.shape), expected [\(w.shape[0])]")
            }
            try requireFloating(dict, name: name)
            return Architecture.Head(kind: "linear", dims: [w.shape[1], w.shape[0]])
        }
        let layout = try MLPLayout.infer(dict, name: name)
        try requireFloating(dict, name: name)
        return Architecture.Head(kind: "mlp", dims: layout.dims)
    }

    private static func requireFloating(_ dict: StateDict, name: String) throws {
        for (key, t) in dict {
            if isOptional(key) {
                guard !t.dtype.isFloatingPoint && t.dtype != .bool else {
                    throw CheckpointError.invalid("\(name).\(key) has dtype \(t.dtype.rawValue), expected an integer type (int64)")
                }
            } else if !t.dtype.isFloatingPoint {
                throw CheckpointError.invalid("\(name).\(key) has dtype \(t.dtype.rawValue), expected a floating-point type")
            }
        }
    }

    // MARK: comparison

    /// Differences between a state dict and a canonical key set (with optional `num_batches_tracked`).
    public struct KeyDifference: Equatable, Sendable {
        public var missing: [String] = []
        public var unexpected: [String] = []
        /// `key: found [..], expected [..]`.
        public var wrongShapes: [String] = []
        /// `key: found float16, expected an integer type` and the like.
        public var wrongDTypes: [String] = []
        /// Canonical keys present with the right shape (optional ones included when present).
        public var matched = 0
        /// Canonical keys that are not optional.
        public var required = 0
        public var total = 0

        public var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty && wrongShapes.isEmpty && wrongDTypes.isEmpty }

        /// One line: counts and the first three of each kind, e.g.
        /// `missing 2 (conv1.weight, bn1.bias), wrong shape 1 (fc.weight: found [10, 64], expected [10, 512])`.
        public var summary: String {
            func part(_ label: String, _ list: [String]) -> String? {
                guard !list.isEmpty else { return nil }
                let shown = list.prefix(3).joined(separator: ", ")
                return "\(label) \(list.count) (\(shown)\(list.count > 3 ? ", ..." : ""))"
            }
            return [part("missing", missing), part("unexpected", unexpected), part("wrong shape", wrongShapes),
                    part("wrong dtype", wrongDTypes)].compactMap { $0 }.joined(separator: ", ")
        }
    }

    /// Compares `dict` with `canonical` (keys in canonical order); `num_batches_tracked` may be absent.
    public static func compare(_ dict: StateDict, to canonical: [(key: String, shape: [Int])]) -> KeyDifference {
        var d = KeyDifference()
        d.total = canonical.count
        var known = Set<String>()
        for (key, shape) in canonical {
            known.insert(key)
            let optional = isOptional(key)
            if !optional { d.required += 1 }
            guard let t = dict[key] else {
                if !optional { d.missing.append(key) }
                continue
            }
            if t.shape != shape {
                d.wrongShapes.append("\(key): found \(t.shape), expected \(shape)")
            } else if optional ? (t.dtype.isFloatingPoint || t.dtype == .bool) : !t.dtype.isFloatingPoint {
                d.wrongDTypes.append("\(key): found \(t.dtype.rawValue), expected \(optional ? "an integer type (int64)" : "a floating-point type")")
            } else {
                d.matched += 1
            }
        }
        d.unexpected = dict.keys.filter { !known.contains($0) }
        return d
    }
}
