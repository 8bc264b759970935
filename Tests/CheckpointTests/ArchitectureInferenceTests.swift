@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// Canonical keys and architecture inference, checked against `Tests/Fixtures/layout/canonical_keys.json`
/// (key names and shapes dumped by tools/reference_resnet.py, a torchvision-identical ResNet in torch).
final class ArchitectureInferenceTests: XCTestCase {
    struct Reference: Decodable {
        let keys: [String]
        let shapes: [String: [[Int]]]
    }

    static func reference() throws -> [String: Reference] {
        let data = try Data(contentsOf: Fixtures.url("layout/canonical_keys.json"))
        return try JSONDecoder().decode([String: Reference].self, from: data)
    }

    /// A state dict with the reference keys and shapes (float32 zeros, int64 counters).
    static func stateDict(keys: [String], shapes: [[Int]], dropFC: Bool = false) -> StateDict {
        var d = StateDict()
        for (k, s) in zip(keys, shapes) where !(dropFC && k.hasPrefix("fc.")) {
            d[k] = k.hasSuffix("num_batches_tracked") ? Tensor(int64: 3) : Tensor(float32: [Float](repeating: 0.5, count: s.reduce(1, *)), shape: s)
        }
        return d
    }

    static let layers: [Int: [Int]] = [18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]]

    func testCanonicalKeysMatchTorchvisionForEveryDepthAndWidth() throws {
        let ref = try Self.reference()
        XCTAssertEqual(Set(ref.keys), ["18", "34", "50", "101", "152"])
        for (depthText, r) in ref {
            let depth = Int(depthText)!
            for (variant, shapes) in r.shapes {
                let parts = variant.split(separator: "-")
                let width = Int(parts[0])!, stem = String(parts[1])
                let arch = Architecture(depth: depth, block: depth >= 50 ? "bottleneck" : "basic", layers: Self.layers[depth]!,
                                        width: width, stem: stem,
                                        heads: ["classifier": .init(kind: "linear", dims: [shapes[shapes.count - 2][1], 10])])
                let ours = ArchitectureInference.canonicalKeys(for: arch)
                XCTAssertEqual(ours.map(\.key), r.keys, "keys of resnet\(depth) \(variant)")
                XCTAssertEqual(ours.map(\.shape), shapes, "shapes of resnet\(depth) \(variant)")
                XCTAssertEqual(ArchitectureInference.backboneKeys(for: arch).count, r.keys.count - 2)
            }
        }
        XCTAssertEqual(ref["50"]!.keys.count, 320)
    }

    func testInfersDepthWidthStemAndClassifierFromEveryReferenceDict() throws {
        for (depthText, r) in try Self.reference() {
            for (variant, shapes) in r.shapes {
                let parts = variant.split(separator: "-")
                let arch = try ArchitectureInference.infer(Self.stateDict(keys: r.keys, shapes: shapes))
                XCTAssertEqual(arch.depth, Int(depthText)!)
                XCTAssertEqual(arch.layers, Self.layers[arch.depth]!)
                XCTAssertEqual(arch.block, arch.depth >= 50 ? "bottleneck" : "basic")
                XCTAssertEqual(arch.width, Int(parts[0])!)
                XCTAssertEqual(arch.stem, String(parts[1]))
                // fc is the last key: [10, features].
                XCTAssertEqual(arch.heads["classifier"], .init(kind: "linear", dims: [shapes[shapes.count - 2][1], 10]))
                XCTAssertEqual(ArchitectureInference.featureDimension(arch), shapes[shapes.count - 2][1])

                let noFC = try ArchitectureInference.infer(Self.stateDict(keys: r.keys, shapes: shapes, dropFC: true))
                XCTAssertEqual(noFC.heads, [:])
            }
        }
    }

    func testNumBatchesTrackedIsOptionalButOtherKeysAreNot() throws {
        let r = try Self.reference()["50"]!
        var d = Self.stateDict(keys: r.keys, shapes: r.shapes["4-small"]!, dropFC: true)
        for k in d.keys where k.hasSuffix("num_batches_tracked") { d[k] = nil }
        XCTAssertEqual(d.count, 318 - 53)
        XCTAssertEqual(try ArchitectureInference.inferBackbone(d).depth, 50)

        d["layer3.2.bn2.running_var"] = nil
        XCTAssertThrowsError(try ArchitectureInference.inferBackbone(d)) { error in
            XCTAssertEqual(error as? CheckpointError,
                           .invalid("not a valid resnet50-w4-small backbone: missing 1 (layer3.2.bn2.running_var)"))
        }
    }

    func testWrongShapesUnexpectedKeysAndDTypesAreNamedWithCounts() throws {
        let r = try Self.reference()["18"]!
        var d = Self.stateDict(keys: r.keys, shapes: r.shapes["4-small"]!, dropFC: true)
        d["layer2.0.conv1.weight"] = Tensor(float32: [Float](repeating: 0, count: 8 * 4 * 1 * 1), shape: [8, 4, 1, 1])
        d["layer1.1.conv2.weight"] = Tensor(float32: [Float](repeating: 0, count: 4 * 4 * 1 * 1), shape: [4, 4, 1, 1])
        d["layer1.0.extra.weight"] = Tensor(float32: [1], shape: [1])
        d["bn1.num_batches_tracked"] = Tensor(float32: [1], shape: [])
        XCTAssertThrowsError(try ArchitectureInference.inferBackbone(d)) { error in
            let m = String(describing: error)
            XCTAssertTrue(m.hasPrefix("not a valid resnet18-w4-small backbone: "), m)
            XCTAssertTrue(m.contains("unexpected 1 (layer1.0.extra.weight)"), m)
            XCTAssertTrue(m.contains("wrong shape 2 (layer1.1.conv2.weight: found [4, 4, 1, 1], expected [4, 4, 3, 3], layer2.0.conv1.weight: found [8, 4, 1, 1], expected [8, 4, 3, 3])"), m)
            XCTAssertTrue(m.contains("wrong dtype 1 (bn1.num_batches_tracked: found float32, expected an integer type (int64))"), m)
        }
    }

    func testBlockCountsThatMatchNoDepthAreRefused() throws {
        let r = try Self.reference()["50"]!
        var d = Self.stateDict(keys: r.keys, shapes: r.shapes["4-small"]!, dropFC: true)
        for k in d.keys where k.hasPrefix("layer3.5.") { d[k] = nil }
        XCTAssertThrowsError(try ArchitectureInference.inferBackbone(d)) { error in
            XCTAssertTrue(String(describing: error).hasPrefix("bottleneck blocks per stage [3, 4, 5, 3] match no ResNet depth"), "\(error)")
        }
        // A gap in block numbering is named.
        var gap = Self.stateDict(keys: r.keys, shapes: r.shapes["4-small"]!, dropFC: true)
        for k in gap.keys where k.hasPrefix("layer2.1.") { gap[k] = nil }
        XCTAssertThrowsError(try ArchitectureInference.inferBackbone(gap)) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("layer2 has blocks [0, 2, 3], expected 0..<3"))
        }
    }

    func testStemKernelOtherThanSevenOrThreeIsRefused() throws {
        let r = try Self.reference()["18"]!
        var d = Self.stateDict(keys: r.keys, shapes: r.shapes["4-small"]!, dropFC: true)
        d["conv1.weight"] = Tensor(float32: [Float](repeating: 0, count: 4 * 3 * 5 * 5), shape: [4, 3, 5, 5])
        XCTAssertThrowsError(try ArchitectureInference.inferBackbone(d)) { error in
            XCTAssertTrue(String(describing: error).contains("neither 7x7"), "\(error)")
        }
    }

    func testClassifierInputMustBeTheFeatureSize() throws {
        let r = try Self.reference()["18"]!
        var d = Self.stateDict(keys: r.keys, shapes: r.shapes["4-small"]!, dropFC: true)
        d["fc.weight"] = Tensor(float32: [Float](repeating: 0, count: 10 * 16), shape: [10, 16])
        d["fc.bias"] = Tensor(float32: [Float](repeating: 0, count: 10), shape: [10])
        XCTAssertThrowsError(try ArchitectureInference.infer(d)) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("fc takes 16 inputs but resnet18-w4-small gives 32 features"))
        }
    }

    func testMLPHeadsOfTheMethodReference() throws {
        // Projector "256-256-256" on 2048 features, docs/bissl.md, "Network, heads and state-dict keys": Linear(b)-BN-ReLU-Linear(b)-BN-ReLU-Linear(no bias).
        var p = StateDict()
        func lin(_ i: Int, _ o: Int, _ n: Int, bias: Bool = true) {
            p["\(i).weight"] = Tensor(float32: [Float](repeating: 0, count: o * n), shape: [o, n])
            if bias { p["\(i).bias"] = Tensor(float32: [Float](repeating: 0, count: o), shape: [o]) }
        }
        func bn(_ i: Int, _ c: Int, counter: Bool = true) {
            for s in ["weight", "bias", "running_mean", "running_var"] { p["\(i).\(s)"] = Tensor(float32: [Float](repeating: 1, count: c), shape: [c]) }
            if counter { p["\(i).num_batches_tracked"] = Tensor(int64: 0) }
        }
        lin(0, 256, 2048); bn(1, 256); lin(3, 256, 256); bn(4, 256, counter: false); lin(6, 256, 256, bias: false)
        let head = try ArchitectureInference.inferHead(p, name: "projector")
        XCTAssertEqual(head, .init(kind: "mlp", dims: [2048, 256, 256, 256]))
        XCTAssertEqual(p.values.reduce(0) { $0 + ($1.dtype == .float32 && !$1.shape.isEmpty ? $1.count : 0) } - 4 * 256 /* running stats */,
                       656_896, "parameter count of the method's projector (docs/bissl.md)")

        // Linear-BN-ReLU-Linear as in the task: keys 0.*, 1.*, 3.*.
        p = [:]
        lin(0, 32, 64); bn(1, 32); lin(3, 16, 32)
        XCTAssertEqual(try ArchitectureInference.inferHead(p, name: "p"), .init(kind: "mlp", dims: [64, 32, 16]))

        // BatchNorm1d(affine=False) has only running statistics.
        p = [:]
        lin(0, 32, 64); bn(1, 32); p["1.weight"] = nil; p["1.bias"] = nil; lin(3, 16, 32, bias: false)
        XCTAssertEqual(try ArchitectureInference.inferHead(p, name: "p"), .init(kind: "mlp", dims: [64, 32, 16]))

        // Chaining errors name the key.
        p = [:]
        lin(0, 32, 64); bn(1, 32); lin(3, 16, 31)
        XCTAssertThrowsError(try ArchitectureInference.inferHead(p, name: "p")) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("p.3.weight takes 31 inputs but the previous layer gives 32"))
        }
        p = [:]
        lin(0, 32, 64); bn(1, 16)
        XCTAssertThrowsError(try ArchitectureInference.inferHead(p, name: "p"))
        p = [:]
        lin(0, 32, 64); p["0.weight_g"] = Tensor(float32: [1], shape: [1])
        XCTAssertThrowsError(try ArchitectureInference.inferHead(p, name: "head"))

        // A plain linear.
        p = [:]
        p["weight"] = Tensor(float32: [Float](repeating: 0, count: 30), shape: [10, 3])
        p["bias"] = Tensor(float32: [Float](repeating: 0, count: 10), shape: [10])
        XCTAssertEqual(try ArchitectureInference.inferHead(p, name: "fc"), .init(kind: "linear", dims: [3, 10]))
    }

    func testGuessScoresPartialBackbones() throws {
        let r = try Self.reference()["50"]!
        var d = Self.stateDict(keys: r.keys, shapes: r.shapes["64-imagenet"]!, dropFC: true)
        for k in d.keys where k.hasPrefix("layer3.") || k.hasPrefix("layer4.") { d[k] = nil }
        let arch = try XCTUnwrap(ArchitectureInference.guess(d))
        XCTAssertEqual([arch.depth, arch.width], [50, 64])
        XCTAssertEqual(arch.stem, "imagenet")
        let diff = ArchitectureInference.compare(d, to: ArchitectureInference.backboneKeys(for: arch))
        XCTAssertEqual(diff.matched, d.count)
        XCTAssertEqual(diff.total, 318)
        XCTAssertNil(ArchitectureInference.guess(["x.weight": Tensor(float32: [1], shape: [1])]))
    }
}
