import Checkpoint
import Engine
import Foundation
@testable import Publish
import XCTest

/// The ONNX model's structure and metadata, read back with the generated protobuf types (numerical
/// parity with onnxruntime and PyTorch is checked by tools/interop/test_onnx.py).
final class ONNXExportTests: XCTestCase {
    /// A seeded ResNet-18 (width 2, small stem) with BN statistics away from 0/1 and a 5-class head.
    static func checkpoint(stem: String = "small", classifier: Bool = true) throws -> Checkpoint {
        let net = try ResNet(depth: 18, width: 2, stem: stem)
        net.initialize(seed: 1, zeroInitLastBN: false)
        for (i, bn) in net.batchNorms.enumerated() {
            for c in 0..<bn.channels {
                bn.runningMean[c] = Float(c + i) * 0.01
                bn.runningVar[c] = 0.5 + Float(c) * 0.1
                bn.weight.value[c] = 1 + Float(c) * 0.05
                bn.bias.value[c] = Float(i) * 0.02
            }
        }
        var c = Checkpoint(components: ["backbone": net.stateDict()], architecture: net.architecture,
                           provenance: Provenance(stage: "imported"))
        if classifier {
            let head = LinearHead(features: net.featureCount, classes: 5)
            head.initialize(seed: 2)
            c.components["classifier"] = head.stateDict()
            c.architecture?.heads["classifier"] = .init(kind: "linear", dims: [net.featureCount, 5])
        }
        return c
    }

    func model(_ c: Checkpoint, _ options: ONNXExport.Options) throws -> Onnx_ModelProto {
        try Onnx_ModelProto(serializedBytes: ONNXExport.serialize(c, options: options).0)
    }

    func testGraphHasTheIRAndOpsetAndDynamicNCHWInput() throws {
        let c = try Self.checkpoint(stem: "imagenet")
        let m = try model(c, .init())
        XCTAssertEqual(m.irVersion, 8)
        XCTAssertEqual(m.opsetImport.map(\.version), [17])
        XCTAssertEqual(m.producerName, "bissl")
        let input = try XCTUnwrap(m.graph.input.first)
        XCTAssertEqual(input.name, "input")
        XCTAssertEqual(input.type.tensorType.elemType, 1)  // FLOAT
        XCTAssertEqual(input.type.tensorType.shape.dim.map { $0.dimParam.isEmpty ? "\($0.dimValue)" : $0.dimParam },
                       ["batch", "3", "height", "width"])
        let output = try XCTUnwrap(m.graph.output.first)
        XCTAssertEqual(output.name, "logits")
        XCTAssertEqual(output.type.tensorType.shape.dim.map { $0.dimParam.isEmpty ? "\($0.dimValue)" : $0.dimParam }, ["batch", "5"])
        let ops = m.graph.node.map(\.opType)
        // ResNet-18: 20 convs (17 + 3 downsample), each with a BN; 8 residual adds.
        XCTAssertEqual(ops.filter { $0 == "Conv" }.count, 20)
        XCTAssertEqual(ops.filter { $0 == "BatchNormalization" }.count, 20)
        XCTAssertEqual(ops.filter { $0 == "Add" }.count, 8)
        XCTAssertEqual(ops.filter { $0 == "MaxPool" }.count, 1)
        XCTAssertEqual(ops.suffix(3), ["GlobalAveragePool", "Flatten", "Gemm"])
        XCTAssertEqual(m.graph.node.last?.output, ["logits"])
        // Every BN parameter and buffer (not num_batches_tracked) and both fc tensors are initializers.
        let names = Set(m.graph.initializer.map(\.name))
        let expected = c.flatStateDict().keys.filter { !$0.hasSuffix("num_batches_tracked") }
        XCTAssertEqual(names, Set(expected))
    }

    func testMetadataCarriesTheContentIdAndProvenance() throws {
        let c = try Self.checkpoint()
        let meta = Dictionary(uniqueKeysWithValues: try model(c, .init(foldBatchNorm: true)).metadataProps.map { ($0.key, $0.value) })
        XCTAssertEqual(meta["bissl.content_id"], ContentID.compute(c))
        XCTAssertEqual(meta["bissl.stage"], "imported")
        XCTAssertEqual(meta["bissl.arch"], "resnet18-w2-small")
        XCTAssertEqual(meta["bissl.output"], "logits")
        XCTAssertEqual(meta["bissl.batchnorm"], "folded into Conv")
        let provenance = try JSONDecoder().decode(Provenance.self, from: Data(try XCTUnwrap(meta["bissl.provenance"]).utf8))
        XCTAssertEqual(provenance, c.provenance)
    }

    func testFoldingReplacesEachBatchNormByAConvBias() throws {
        let c = try Self.checkpoint()
        let m = try model(c, .init(foldBatchNorm: true))
        XCTAssertFalse(m.graph.node.contains { $0.opType == "BatchNormalization" })
        let conv = try XCTUnwrap(m.graph.node.first { $0.name == "layer1.0.conv2" })
        XCTAssertEqual(conv.input, ["layer1.0.relu1", "layer1.0.conv2.weight", "layer1.0.conv2.bias"])
        // The folded values: s = γ/√(σ²+ε), W' = W s, b' = β - μ s (float64, one rounding).
        let sd = c.components["backbone"]!
        let gamma = sd["layer1.0.bn2.weight"]!.floats(), beta = sd["layer1.0.bn2.bias"]!.floats()
        let mean = sd["layer1.0.bn2.running_mean"]!.floats(), variance = sd["layer1.0.bn2.running_var"]!.floats()
        let w = sd["layer1.0.conv2.weight"]!.floats()
        let tensors = Dictionary(uniqueKeysWithValues: m.graph.initializer.map { ($0.name, $0) })
        let folded = Self.floats(try XCTUnwrap(tensors["layer1.0.conv2.weight"]))
        let bias = Self.floats(try XCTUnwrap(tensors["layer1.0.conv2.bias"]))
        let per = w.count / gamma.count
        for o in gamma.indices {
            let s = Double(gamma[o]) / (Double(variance[o]) + Double(Float(1e-5))).squareRoot()
            XCTAssertEqual(bias[o], Float(Double(beta[o]) - Double(mean[o]) * s))
            for i in (o * per)..<((o + 1) * per) { XCTAssertEqual(folded[i], Float(Double(w[i]) * s)) }
        }
    }

    func testFeaturesOutputAndNotes() throws {
        var c = try Self.checkpoint()
        c.components["projector"] = ["0.weight": Tensor(float32: [1, 2], shape: [1, 2])]
        let (data, notes) = try ONNXExport.serialize(c, options: .init(features: true))
        let m = try Onnx_ModelProto(serializedBytes: data)
        XCTAssertEqual(m.graph.output.map(\.name), ["features"])
        XCTAssertEqual(m.graph.node.last?.opType, "Flatten")
        XCTAssertEqual(notes, ["not in the graph: classifier, projector (ONNX export is the backbone's pooled features)"])
    }

    func testNonFloat32WeightsAreConvertedWithANote() throws {
        var c = try Self.checkpoint()
        let (cast, _) = try c.casting(to: .bfloat16, castBuffers: false)
        c = cast
        let notes = try ONNXExport.serialize(c, options: .init()).1
        XCTAssertEqual(notes.count, 1)
        XCTAssertTrue(notes[0].hasSuffix("bfloat16 tensors widened exactly to float32 (ONNX input and weights are float32)"), notes[0])
    }

    func testRefusals() throws {
        let c = try Self.checkpoint(classifier: false)
        XCTAssertThrowsError(try ONNXExport.serialize(c, options: .init())) { error in
            XCTAssertEqual(error as? PublishError, .invalid("no classifier component: pass --features for the pooled backbone features"))
        }
        var plain = c
        plain.architecture = nil
        XCTAssertThrowsError(try ONNXExport.serialize(plain, options: .init(features: true))) { error in
            XCTAssertEqual(error as? PublishError, .invalid("no architecture record: the network cannot be built for ONNX export"))
        }
        var broken = c
        broken.components["backbone"]?["conv1.weight"] = Tensor(float32: [1], shape: [1])
        XCTAssertThrowsError(try ONNXExport.serialize(broken, options: .init(features: true)))
    }

    static func floats(_ t: Onnx_TensorProto) -> [Float] {
        t.rawData.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }
}
