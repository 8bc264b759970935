import BisslCore

/// A ResNet backbone exactly as torchvision defines it (v1.5: the stride sits in the 3x3 conv of the
/// bottleneck; He et al., arXiv:1512.03385), up to the global average pool, with bissl's two options
/// (mirrors `tools/reference_resnet.py`):
///
/// - `width`: stem output channels (64 in torchvision); stages have `width * [1, 2, 4, 8]` planes.
/// - `stem`: `imagenet` (`conv1` 7x7/2 pad 3 -> `bn1` -> ReLU -> max pool 3x3/2 pad 1) or `small`
///   (`conv1` 3x3/1 pad 1 -> `bn1` -> ReLU, no pool).
///
/// Output: `[N, width * 8 * expansion]` features (expansion 1 for basic blocks, 4 for bottlenecks).
/// State-dict keys are torchvision's (`conv1.weight`, `bn1.running_var`, `layer3.0.downsample.1.weight`);
/// the classifier (`fc.*`) is a separate `LinearHead`.
public final class ResNet {
    /// Blocks per stage for each depth, and whether the block is a bottleneck.
    public static let depths: [Int: (block: String, layers: [Int])] = [
        18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
        101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3]),
    ]

    public let architecture: Architecture
    public let conv1: Conv2d
    /// With the stem's ReLU fused in (`BatchNorm2d.forward(_:mode:relu:)`).
    public let bn1: BatchNorm2d
    public let maxpool: MaxPool2d?
    /// Every block in order, `layer1.0` first.
    public let blocks: [ResidualBlock]
    private let pool = GlobalAvgPool()
    /// Size of the feature vector.
    public let featureCount: Int

    /// Builds the backbone an `Architecture` describes (its heads are ignored here).
    /// - Throws: `ModelError.unsupported` for another family, depth or stem, `.invalid` when
    ///   `block`/`layers` contradict the depth or the width is not positive.
    public init(architecture a: Architecture) throws {
        guard a.family == "resnet" else { throw ModelError.unsupported("engine: model family '\(a.family)' is not supported (only resnet)") }
        guard let spec = Self.depths[a.depth] else {
            throw ModelError.unsupported("engine: ResNet depth \(a.depth) is not supported (18, 34, 50, 101, 152)")
        }
        guard a.block == spec.block, a.layers == spec.layers else {
            throw ModelError.invalid("engine: ResNet-\(a.depth) has \(spec.block) blocks \(spec.layers), the architecture says \(a.block) \(a.layers)")
        }
        guard a.width > 0 else { throw ModelError.invalid("engine: ResNet width must be positive, got \(a.width)") }
        guard a.stem == "imagenet" || a.stem == "small" else {
            throw ModelError.unsupported("engine: stem '\(a.stem)' is not supported (imagenet, small)")
        }
        architecture = a
        let bottleneck = spec.block == "bottleneck"
        let expansion = bottleneck ? 4 : 1
        if a.stem == "imagenet" {
            conv1 = Conv2d(name: "conv1.", inChannels: 3, outChannels: a.width, kernel: 7, stride: 2, padding: 3)
            maxpool = MaxPool2d(kernel: 3, stride: 2, padding: 1)
        } else {
            conv1 = Conv2d(name: "conv1.", inChannels: 3, outChannels: a.width, kernel: 3, stride: 1, padding: 1)
            maxpool = nil
        }
        bn1 = BatchNorm2d(name: "bn1.", channels: a.width)
        var inplanes = a.width
        var blocks: [ResidualBlock] = []
        for (s, count) in spec.layers.enumerated() {
            let planes = a.width << s
            let stride = s == 0 ? 1 : 2
            for b in 0..<count {
                let hasDownsample = b == 0 && (stride != 1 || inplanes != planes * expansion)
                blocks.append(ResidualBlock(prefix: "layer\(s + 1).\(b).", bottleneck: bottleneck, inplanes: inplanes,
                                            planes: planes, stride: b == 0 ? stride : 1, hasDownsample: hasDownsample))
                inplanes = planes * expansion
            }
        }
        self.blocks = blocks
        featureCount = inplanes
    }

    /// `ResNet(depth, width, stem)` as in `tools/reference_resnet.py`.
    public convenience init(depth: Int, width: Int = 64, stem: String = "imagenet") throws {
        guard let spec = Self.depths[depth] else {
            throw ModelError.unsupported("engine: ResNet depth \(depth) is not supported (18, 34, 50, 101, 152)")
        }
        try self.init(architecture: Architecture(depth: depth, block: spec.block, layers: spec.layers, width: width, stem: stem))
    }

    /// Trainable parameters in PyTorch's `model.parameters()` order.
    public var parameters: [Parameter] {
        [conv1.weight, bn1.weight, bn1.bias] + blocks.flatMap(\.parameters)
    }

    /// Every BatchNorm in state-dict order.
    public var batchNorms: [BatchNorm2d] { [bn1] + blocks.flatMap(\.batchNorms) }

    /// Every convolution in state-dict order.
    public var convolutions: [Conv2d] {
        [conv1] + blocks.flatMap { b in b.convs + (b.downsample.map { [$0.conv] } ?? []) }
    }

    /// Initialisation as torchvision's `ResNet.__init__`: convs Kaiming-normal with `mode="fan_out"`,
    /// ReLU gain (std `sqrt(2 / (O*k*k))`); BN weight 1, bias 0, running mean 0, var 1, count 0;
    /// with `zeroInitLastBN` (torchvision `zero_init_residual`, timm `zero_init_last`) the last BN of
    /// each block gets weight 0. Draws from `SeededRNG(seed)` in state-dict order, so the same seed
    /// gives the same weights (not the values `torch.manual_seed` would give).
    public func initialize(seed: UInt64, zeroInitLastBN: Bool = true) {
        var rng = SeededRNG(seed: seed)
        for conv in convolutions {
            let std = (2 / Float(conv.outChannels * conv.kernel * conv.kernel)).squareRoot()
            for i in conv.weight.value.indices { conv.weight.value[i] = rng.normal(std: std) }
        }
        for bn in batchNorms {
            for c in 0..<bn.channels {
                bn.weight.value[c] = 1; bn.bias.value[c] = 0; bn.runningMean[c] = 0; bn.runningVar[c] = 1
            }
            bn.numBatchesTracked = 0
        }
        if zeroInitLastBN {
            for b in blocks { for c in 0..<b.bns.last!.channels { b.bns.last!.weight.value[c] = 0 } }
        }
    }

    /// The side of the last feature map for an input side `size`: each layer's output side in turn,
    /// `floor((size + 2p - k) / s) + 1` (`torch.nn.Conv2d` / `MaxPool2d`); nil when some layer's
    /// output would have no rows or columns.
    public func featureMapSide(forInput size: Int) -> Int? {
        var side = size
        func through(_ layer: (Int) -> Int) -> Bool {
            side = layer(side)
            return side >= 1
        }
        guard side >= 1, through(conv1.outputSize) else { return nil }
        if let maxpool, !through(maxpool.outputSize) { return nil }
        for block in blocks {
            let blockInput = side
            for conv in block.convs where !through(conv.outputSize) { return nil }
            if let d = block.downsample, d.conv.outputSize(blockInput) != side { return nil }
        }
        return side
    }

    /// The smallest input height and width every layer takes (`featureMapSide` is not nil): 1 for
    /// every ResNet built here, whose padding keeps each output at least 1x1 (searched up to 2^16).
    public var smallestInputSide: Int { (1...(1 << 16)).first { featureMapSide(forInput: $0) != nil } ?? (1 << 16) }

    /// Refuses images of `height` x `width` that some layer cannot take, before anything runs.
    /// - Throws: `ModelError.invalid` naming the smallest size that works.
    public func checkInputSize(height: Int, width: Int) throws {
        guard featureMapSide(forInput: height) == nil || featureMapSide(forInput: width) == nil else { return }
        let s = smallestInputSide
        throw ModelError.invalid("\(architecture.label) cannot take \(height)x\(width) images: the smallest it takes is \(s)x\(s)")
    }

    /// Forward: images `[N, 3, H, W]` -> features `[N, featureCount]`. Keeps what `backward` needs.
    public func forward(_ x: Tensor4, mode: Mode) -> Matrix {
        precondition(x.c == 3, "ResNet: input has \(x.c) channels, expected 3")
        var out = bn1.forward(conv1.forward(x), mode: mode, relu: true)
        if let mp = maxpool { out = mp.forward(out) }
        for b in blocks { out = b.forward(out, mode: mode) }
        return pool.forward(out)
    }

    /// Inference: images `[N, 3, H, W]` -> features `[N, featureCount]` of the eval-mode forward
    /// (`model.eval()` under `torch.no_grad()`), with every BatchNorm folded into the convolution before it
    /// and the ReLUs and residual adds done in the convolutions' output pass (`ResidualBlock.infer`).
    /// Equals `forward(x, mode: .eval)` up to float32 rounding; keeps nothing for `backward` (which
    /// still needs a `forward`). Not for use inside `ActivationPatterns.record`/`replay` (nothing is pinned).
    public func infer(_ x: Tensor4) -> Matrix {
        precondition(x.c == 3, "ResNet: input has \(x.c) channels, expected 3")
        precondition(ActivationPatterns.current == nil, "ResNet.infer: activation patterns are not recorded or replayed")
        let (scale, shift) = bn1.evalAffine()
        var out = conv1.infer(x, scale: scale, shift: shift, relu: true)
        if let mp = maxpool { out = mp.infer(out) }
        for b in blocks { out = b.infer(out) }
        return pool.forward(out)
    }

    /// Backward from `dL/dfeatures` `[N, featureCount]`: accumulates the gradient of every parameter
    /// (the gradient with respect to the images is not formed).
    public func backward(_ dFeatures: Matrix) {
        var d = pool.backward(dFeatures)
        // Each block's identity gradient is added inside the output ReLU's backward of the block before it.
        var pending: Tensor4?
        for b in blocks.reversed() { (d, pending) = b.backward(d, adding: pending) }
        if let pending { ResidualAdd.accumulate(&d, pending) }
        if let mp = maxpool { d = mp.backward(d) }
        _ = conv1.backward(bn1.backward(d), inputGradient: false)
    }

    /// Tangent forward along the parameters' `tangent` directions (the images do not depend on θ):
    /// -> ḟ `[N, featureCount]`, at the last primal forward (`Tangents`).
    public func tangentForward() -> Matrix {
        var out = bn1.tangentForward(conv1.tangentForward(nil))
        if let mp = maxpool { out = mp.tangentForward(out) }
        for b in blocks { out = b.tangentForward(out) }
        return pool.tangentForward(out)
    }

    /// Tangent backward from R{dL/dfeatures} `[N, featureCount]`: accumulates every parameter's share of
    /// the Hessian-vector product into its `grad`. Needs a primal backward inside `Tangents.record`
    /// and the last `tangentForward`.
    public func tangentBackward(_ rFeatures: Matrix) {
        var d = pool.tangentBackward(rFeatures)
        for b in blocks.reversed() { d = b.tangentBackward(d) }
        if let mp = maxpool { d = mp.tangentBackward(d) }
        _ = conv1.tangentBackward(bn1.tangentBackward(d), inputGradient: false)
    }

    /// The backbone's state dict in torchvision order: `conv1.weight`, `bn1.*`, then per block
    /// `convK.weight`, `bnK.{weight,bias,running_mean,running_var,num_batches_tracked}`, `downsample.0/1.*`.
    public func stateDict() -> StateDict {
        var sd = StateDict()
        StateDictIO.store(conv1.weight, into: &sd)
        StateDictIO.store(bn1, into: &sd)
        for b in blocks {
            for (c, bn) in zip(b.convs, b.bns) {
                StateDictIO.store(c.weight, into: &sd)
                StateDictIO.store(bn, into: &sd)
            }
            if let d = b.downsample {
                StateDictIO.store(d.conv.weight, into: &sd)
                StateDictIO.store(d.bn, into: &sd)
            }
        }
        return sd
    }

    /// Loads a backbone state dict (keys as `stateDict()`; strict: every key needed, no extra key).
    /// - Throws: `ModelError.invalid` for a missing, extra, mis-shaped or non-float tensor; nothing
    ///   is changed then.
    public func load(_ sd: StateDict) throws {
        let owner = "backbone (\(architecture.label))"
        try StateDictIO.validate(sd, against: stateDict(), owner: owner)
        for conv in convolutions { try StateDictIO.load(conv.weight, from: sd, owner: owner) }
        for bn in batchNorms { try StateDictIO.load(bn, from: sd, owner: owner) }
    }
}
