import Checkpoint
import Engine
import Foundation
import SwiftProtobuf

/// A checkpoint's eval-mode network as an ONNX model (ONNX IR version 8, default operator set 17;
/// operators as the ONNX Operators specification defines them at that opset).
///
/// The graph is the engine's `ResNet` walked module by module, so it computes what `bissl predict`
/// computes (`model.eval()` in PyTorch):
/// - input `input`: float32 `[batch, 3, height, width]` (NCHW; all three dimensions symbolic);
/// - `Conv` (OIHW weights, `pads` `[p, p, p, p]`, `strides` `[s, s]`), then either
///   `BatchNormalization` (`epsilon` 1e-5, inference mode: `running_mean`/`running_var`) or, with
///   `foldBatchNorm`, nothing: the BN is folded into the conv, `W' = W * γ/√(σ²+ε)` per output channel
///   and bias `β - μ * γ/√(σ²+ε)` (computed in float64, rounded once to float32);
/// - `Relu`, `MaxPool` (3x3/2 pad 1, imagenet stem), `Add` for the residual, `GlobalAveragePool`,
///   `Flatten` (axis 1);
/// - output `logits` `[batch, classes]` through `Gemm` (`transB` 1: `x Wᵀ + b`, as `nn.Linear`) when
///   the checkpoint has a classifier and `features` is false, else `features` `[batch, C]`.
///
/// Initializers keep the state-dict keys (`layer1.0.conv1.weight`, `fc.bias`; a folded conv's bias is
/// `<conv>.bias`); node outputs are named by module path (`layer1.0.bn1`, `layer1.0.relu`).
/// `metadata_props` carry `Interchange.provenanceSummary` (content id of the checkpoint, stage,
/// architecture, full provenance JSON) and `bissl.output`, `bissl.batchnorm`.
public enum ONNXExport {
    /// ONNX IR version written (IR version 8 came with ONNX 1.12, which introduced opset 17).
    public static let irVersion: Int64 = 8
    /// Version of the default (`ai.onnx`) operator set the graph uses.
    public static let opsetVersion: Int64 = 17
    /// Protobuf messages are limited to 2 GiB; this writer keeps every weight inside the model.
    static let maxInitializerBytes = (1 << 31) - (64 << 20)

    public struct Options: Equatable, Sendable {
        /// Output the pooled backbone features instead of the classifier's logits.
        public var features: Bool
        /// Fold each BatchNorm into the convolution before it instead of writing `BatchNormalization`.
        public var foldBatchNorm: Bool

        public init(features: Bool = false, foldBatchNorm: Bool = false) {
            self.features = features
            self.foldBatchNorm = foldBatchNorm
        }
    }

    /// Writes the model to `url` atomically (nothing is left there on failure).
    /// - Returns: notes for the user, one line each: components not in the graph (projector,
    ///   predictor), tensors converted to float32 from another dtype.
    /// - Throws: as `serialize`; `PublishError.io` when the file cannot be written.
    @discardableResult
    public static func write(_ checkpoint: Checkpoint, to url: URL, options: Options) throws -> [String] {
        let (data, notes) = try serialize(checkpoint, options: options)
        try AtomicFile.write(data, to: url)
        return notes
    }

    /// The serialized `ModelProto` and the notes `write` returns.
    /// - Throws: `PublishError.invalid` when the checkpoint has no architecture record or no
    ///   backbone, when its tensors do not fit the architecture (missing, extra or mis-shaped), when
    ///   logits are asked of a checkpoint without a classifier, or when the weights exceed what one
    ///   protobuf can hold (2 GiB less a margin); `.unsupported` for an architecture the engine lacks.
    public static func serialize(_ checkpoint: Checkpoint, options: Options) throws -> (Data, [String]) {
        guard let architecture = checkpoint.architecture else {
            throw PublishError.invalid("no architecture record: the network cannot be built for ONNX export")
        }
        guard let backboneSD = checkpoint.components["backbone"] else {
            throw PublishError.invalid("no backbone component: nothing to export as ONNX")
        }
        let classifierSD = options.features ? nil : checkpoint.components["classifier"]
        if !options.features && classifierSD == nil {
            throw PublishError.invalid("no classifier component: pass --features for the pooled backbone features")
        }
        let backbone = try ResNet(architecture: architecture)
        try backbone.load(backboneSD)
        var head: LinearHead?
        if let classifierSD {
            guard let weight = classifierSD["fc.weight"], weight.shape.count == 2 else {
                throw PublishError.invalid("classifier component has no 2-D 'fc.weight'")
            }
            let h = LinearHead(features: backbone.featureCount, classes: weight.shape[0])
            try h.load(classifierSD)
            head = h
        }

        var notes: [String] = []
        let left = checkpoint.components.keys.filter { $0 != "backbone" && !($0 == "classifier" && head != nil) }
        if !left.isEmpty {
            notes.append("not in the graph: \(left.joined(separator: ", ")) (ONNX export is the backbone\(options.features ? "'s pooled features" : " and classifier"))")
        }
        var converted: [DType: Int] = [:]
        for (name, sd) in checkpoint.components where name == "backbone" || (name == "classifier" && head != nil) {
            for t in sd.values where t.dtype.isFloatingPoint && t.dtype != .float32 { converted[t.dtype, default: 0] += 1 }
        }
        for (dtype, count) in converted.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            let how = dtype == .float64 ? "rounded" : "widened exactly"
            notes.append("\(count) \(dtype.rawValue) tensor\(count == 1 ? "" : "s") \(how) to float32 (ONNX input and weights are float32)")
        }

        var builder = ONNXGraphBuilder(name: architecture.label)
        let outputName = head == nil ? "features" : "logits"
        emit(backbone, head: head, foldBatchNorm: options.foldBatchNorm, output: outputName, into: &builder)
        guard builder.initializerBytes <= maxInitializerBytes else {
            throw PublishError.invalid("the weights need \(builder.initializerBytes) bytes as float32; one ONNX protobuf holds at most 2 GiB (external data is not written)")
        }
        builder.input(ONNXGraphBuilder.floatTensor(
            "input", dims: [.symbolic("batch"), .fixed(3), .symbolic("height"), .symbolic("width")],
            doc: "images, float32 NCHW, normalised as in training"))
        let outputs = head.map { $0.linear.outFeatures } ?? backbone.featureCount
        builder.output(ONNXGraphBuilder.floatTensor(
            outputName, dims: [.symbolic("batch"), .fixed(outputs)],
            doc: head == nil ? "pooled backbone features" : "classifier logits"))

        var model = Onnx_ModelProto()
        model.irVersion = irVersion
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = opsetVersion
        model.opsetImport = [opset]
        model.producerName = "bissl"
        model.producerVersion = bisslVersion
        model.docString = "\(architecture.label) (ResNet-\(architecture.depth), width \(architecture.width), \(architecture.stem) stem) in eval mode: input [batch, 3, height, width] float32 -> \(outputName) [batch, \(outputs)]"
        var graph = builder.graph
        graph.docString = model.docString
        model.graph = graph
        var meta = Interchange.provenanceSummary(checkpoint)
        meta["bissl.output"] = outputName
        meta["bissl.batchnorm"] = options.foldBatchNorm ? "folded into Conv" : "BatchNormalization (running statistics)"
        model.metadataProps = meta.sorted { $0.key < $1.key }.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        let data: Data = try model.serializedBytes()
        return (data, notes)
    }

    /// Appends the network's nodes and initializers: stem, blocks, pool, optional classifier.
    static func emit(_ net: ResNet, head: LinearHead?, foldBatchNorm: Bool, output: String, into g: inout ONNXGraphBuilder) {
        var x = convBN(net.conv1, net.bn1, input: "input", fold: foldBatchNorm, into: &g)
        x = g.node("Relu", name: "relu", inputs: [x])
        if let mp = net.maxpool {
            x = g.node("MaxPool", name: "maxpool", inputs: [x], attributes: [
                ONNXGraphBuilder.ints("kernel_shape", [mp.kernel, mp.kernel]),
                ONNXGraphBuilder.ints("strides", [mp.stride, mp.stride]),
                ONNXGraphBuilder.ints("pads", [mp.padding, mp.padding, mp.padding, mp.padding]),
            ])
        }
        for block in net.blocks {
            let prefix = String(block.convs[0].weight.name.dropLast("conv1.weight".count))  // "layer1.0."
            var y = x
            for (i, (conv, bn)) in zip(block.convs, block.bns).enumerated() {
                y = convBN(conv, bn, input: y, fold: foldBatchNorm, into: &g)
                if i < block.convs.count - 1 { y = g.node("Relu", name: prefix + "relu\(i + 1)", inputs: [y]) }
            }
            let identity = block.downsample.map { convBN($0.conv, $0.bn, input: x, fold: foldBatchNorm, into: &g) } ?? x
            y = g.node("Add", name: prefix + "add", inputs: [y, identity])
            x = g.node("Relu", name: prefix + "relu", inputs: [y])
        }
        x = g.node("GlobalAveragePool", name: "avgpool", inputs: [x])
        if let head {
            x = g.node("Flatten", name: "flatten", inputs: [x], attributes: [ONNXGraphBuilder.int("axis", 1)])
            let lin = head.linear
            var inputs = [g.initializer(lin.weight.name, lin.weight.value, shape: lin.weight.shape), ]
            if let b = lin.bias { inputs.append(g.initializer(b.name, b.value, shape: b.shape)) }
            g.node("Gemm", name: "fc", inputs: [x] + inputs, output: output, attributes: [ONNXGraphBuilder.int("transB", 1)])
        } else {
            g.node("Flatten", name: "flatten", inputs: [x], output: output, attributes: [ONNXGraphBuilder.int("axis", 1)])
        }
    }

    /// A convolution and the BatchNorm after it: `Conv` + `BatchNormalization`, or one `Conv` with the
    /// BN folded into its weight and bias.
    /// - Returns: the name of the output value.
    static func convBN(_ conv: Conv2d, _ bn: BatchNorm2d, input: String, fold: Bool, into g: inout ONNXGraphBuilder) -> String {
        let convPath = String(conv.weight.name.dropLast(".weight".count))
        let bnPath = String(bn.prefix.dropLast())
        let attributes = [
            ONNXGraphBuilder.ints("kernel_shape", [conv.kernel, conv.kernel]),
            ONNXGraphBuilder.ints("strides", [conv.stride, conv.stride]),
            ONNXGraphBuilder.ints("pads", [conv.padding, conv.padding, conv.padding, conv.padding]),
        ]
        if fold {
            let (weight, bias) = foldedConv(conv, bn)
            let w = g.initializer(conv.weight.name, weight, shape: conv.weight.shape, doc: "\(conv.weight.name) with \(bnPath) folded in")
            let b = g.initializer(convPath + ".bias", bias, shape: [conv.outChannels], doc: "\(bnPath) folded into \(convPath)")
            return g.node("Conv", name: convPath, inputs: [input, w, b], attributes: attributes)
        }
        let w = g.initializer(conv.weight.name, conv.weight.value, shape: conv.weight.shape)
        let y = g.node("Conv", name: convPath, inputs: [input, w], attributes: attributes)
        let c = [bn.channels]
        let inputs = [y,
                      g.initializer(bn.weight.name, bn.weight.value, shape: c),
                      g.initializer(bn.bias.name, bn.bias.value, shape: c),
                      g.initializer(bn.prefix + "running_mean", bn.runningMean, shape: c),
                      g.initializer(bn.prefix + "running_var", bn.runningVar, shape: c)]
        return g.node("BatchNormalization", name: bnPath, inputs: inputs, attributes: [ONNXGraphBuilder.float("epsilon", bn.eps)])
    }

    /// BatchNorm (inference) folded into the preceding bias-free convolution:
    /// `s = γ / √(σ² + ε)`, `W'[o] = W[o] * s[o]`, `b'[o] = β[o] - μ[o] * s[o]`, in float64, each
    /// result rounded once to float32.
    /// - Returns: the weight `[O, C, k, k]` and the bias `[O]`.
    static func foldedConv(_ conv: Conv2d, _ bn: BatchNorm2d) -> (weight: [Float], bias: [Float]) {
        let per = conv.weight.count / conv.outChannels
        var weight = conv.weight.value
        var bias = [Float](repeating: 0, count: conv.outChannels)
        for o in 0..<conv.outChannels {
            let s = Double(bn.weight.value[o]) / (Double(bn.runningVar[o]) + Double(bn.eps)).squareRoot()
            for i in (o * per)..<((o + 1) * per) { weight[i] = Float(Double(weight[i]) * s) }
            bias[o] = Float(Double(bn.bias.value[o]) - Double(bn.runningMean[o]) * s)
        }
        return (weight, bias)
    }
}
