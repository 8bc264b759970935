/// One ResNet block in torchvision's naming (https://github.com/pytorch/vision/blob/main/torchvision/models/resnet.py):
///
/// - `basic` (ResNet-18/34): `conv1` 3x3/stride -> `bn1` -> ReLU -> `conv2` 3x3 -> `bn2`;
/// - `bottleneck` (ResNet-50/101/152, v1.5): `conv1` 1x1 -> `bn1` -> ReLU -> `conv2` 3x3/stride -> `bn2`
///   -> ReLU -> `conv3` 1x1 (x4 channels) -> `bn3`;
///
/// then `+ identity` (or `downsample.0` 1x1/stride conv -> `downsample.1` BN) and a ReLU. Each BN -> ReLU
/// pair runs as one BatchNorm pass (`BatchNorm2d.forward(_:mode:relu:)`), the last BatchNorm with the residual
/// add and the output ReLU (`BatchNorm2d.forward(_:mode:adding:)`; the tangent rules keep the layers apart).
public final class ResidualBlock {
    public let convs: [Conv2d]
    /// `bns[i]` follows `convs[i]`; all but the last with the ReLU fused in.
    public let bns: [BatchNorm2d]
    public let downsample: (conv: Conv2d, bn: BatchNorm2d)?
    private let outRelu = ReLU()

    /// - Parameter prefix: `layer2.0.`
    public init(prefix: String, bottleneck: Bool, inplanes: Int, planes: Int, stride: Int, hasDownsample: Bool) {
        if bottleneck {
            convs = [Conv2d(name: prefix + "conv1.", inChannels: inplanes, outChannels: planes, kernel: 1),
                     Conv2d(name: prefix + "conv2.", inChannels: planes, outChannels: planes, kernel: 3, stride: stride, padding: 1),
                     Conv2d(name: prefix + "conv3.", inChannels: planes, outChannels: planes * 4, kernel: 1)]
            bns = [BatchNorm2d(name: prefix + "bn1.", channels: planes), BatchNorm2d(name: prefix + "bn2.", channels: planes),
                   BatchNorm2d(name: prefix + "bn3.", channels: planes * 4)]
        } else {
            convs = [Conv2d(name: prefix + "conv1.", inChannels: inplanes, outChannels: planes, kernel: 3, stride: stride, padding: 1),
                     Conv2d(name: prefix + "conv2.", inChannels: planes, outChannels: planes, kernel: 3, padding: 1)]
            bns = [BatchNorm2d(name: prefix + "bn1.", channels: planes), BatchNorm2d(name: prefix + "bn2.", channels: planes)]
        }
        let out = convs.last!.outChannels
        downsample = hasDownsample
            ? (Conv2d(name: prefix + "downsample.0.", inChannels: inplanes, outChannels: out, kernel: 1, stride: stride),
               BatchNorm2d(name: prefix + "downsample.1.", channels: out))
            : nil
    }

    /// Parameters in PyTorch order.
    public var parameters: [Parameter] {
        var ps: [Parameter] = []
        for (c, b) in zip(convs, bns) { ps += [c.weight, b.weight, b.bias] }
        if let d = downsample { ps += [d.conv.weight, d.bn.weight, d.bn.bias] }
        return ps
    }

    /// Every BatchNorm, in PyTorch order.
    public var batchNorms: [BatchNorm2d] { bns + (downsample.map { [$0.bn] } ?? []) }

    /// Forward: x `[N, inplanes, H, W]` -> `[N, planes*expansion, H/stride, W/stride]`. The last BatchNorm,
    /// the residual add and the output ReLU run as one pass (`BatchNorm2d.forward(_:mode:adding:)`), except
    /// inside `ActivationPatterns` (the ReLU pins its mask itself).
    public func forward(_ x: Tensor4, mode: Mode) -> Tensor4 {
        let last = convs.count - 1
        var out = x
        for i in 0..<last {
            out = bns[i].forward(convs[i].forward(out), mode: mode, relu: true)
        }
        out = convs[last].forward(out)
        let identity = downsample.map { $0.bn.forward($0.conv.forward(x), mode: mode) } ?? x
        guard ActivationPatterns.current == nil else {
            return outRelu.forward(bns[last].forward(out, mode: mode), adding: identity)
        }
        let y = bns[last].forward(out, mode: mode, adding: identity)
        outRelu.record(output: y)
        return y
    }

    /// Eval-mode forward for inference only (nothing kept for a backward pass): each BatchNorm folded into
    /// its convolution, the ReLUs and the residual add applied in the convolutions' output pass
    /// (`Conv2d.infer`). Equals `forward(x, mode: .eval)` up to float32 rounding.
    public func infer(_ x: Tensor4) -> Tensor4 {
        let identity = downsample.map { ds in
            let (scale, shift) = ds.bn.evalAffine()
            return ds.conv.infer(x, scale: scale, shift: shift, relu: false)
        } ?? x
        var out = x
        for i in convs.indices {
            let (scale, shift) = bns[i].evalAffine()
            // every convolution is followed by a ReLU; the last one after the residual add
            out = convs[i].infer(out, scale: scale, shift: shift, adding: i == convs.count - 1 ? identity : nil, relu: true)
        }
        return out
    }

    /// Backward: dy (shape of the output) -> dx (shape of the input); accumulates every parameter gradient.
    public func backward(_ dy: Tensor4) -> Tensor4 {
        var (d, identity) = backward(dy, adding: nil)
        ResidualAdd.accumulate(&d, identity)
        return d
    }

    /// Backward with the two branches' input gradients left unsummed, dx = `main + identity`, so that the
    /// block before adds them inside its output ReLU's backward (`ReLU.backward(_:adding:)`, one pass fewer);
    /// `pending`: the unsummed identity part of dy from the block after (nil: none). Accumulates every
    /// parameter gradient, as `backward`.
    func backward(_ dy: Tensor4, adding pending: Tensor4?) -> (main: Tensor4, identity: Tensor4) {
        let g = pending.map { outRelu.backward(dy, adding: $0) } ?? outRelu.backward(dy)
        let (dMain, dIdentity) = ResidualAdd.backward(g)
        var d = dMain
        for i in convs.indices.reversed() {
            d = convs[i].backward(bns[i].backward(d))!
        }
        return (d, downsample.map { ds in ds.conv.backward(ds.bn.backward(dIdentity))! } ?? dIdentity)
    }

    /// Tangent forward (the layers' rules in forward order): ẋ -> ẏ, shapes as `forward`.
    public func tangentForward(_ dotX: Tensor4) -> Tensor4 {
        var out = dotX
        for i in convs.indices {
            out = bns[i].tangentForward(convs[i].tangentForward(out))
        }
        let identity = downsample.map { $0.bn.tangentForward($0.conv.tangentForward(dotX)) } ?? dotX
        return outRelu.tangentForward(out, adding: identity)
    }

    /// Tangent backward (mirrors `backward`): R{dy} -> R{dx}; accumulates every parameter's R{dW}.
    public func tangentBackward(_ rdy: Tensor4) -> Tensor4 {
        let (rMain, rIdentity) = ResidualAdd.tangentBackward(outRelu.tangentBackward(rdy))
        var d = rMain
        for i in convs.indices.reversed() {
            d = convs[i].tangentBackward(bns[i].tangentBackward(d))!
        }
        if let ds = downsample {
            ResidualAdd.accumulate(&d, ds.conv.tangentBackward(ds.bn.tangentBackward(rIdentity))!)
        } else {
            ResidualAdd.accumulate(&d, rIdentity)
        }
        return d
    }
}
