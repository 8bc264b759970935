import Checkpoint
import Engine
import XCTest
@testable import Training
import TestSupport

/// Network <-> checkpoint components round trip, strict loading.
final class NetworkTests: XCTestCase {
    func testRoundTripThroughComponents() throws {
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small",
                                heads: ["projector": .init(kind: "mlp", dims: [32, 16, 8]),
                                        "classifier": .init(kind: "linear", dims: [32, 10])])
        let net = try Network(architecture: arch, seed: 7)
        XCTAssertEqual(net.featureCount, 32)
        let ckpt = net.checkpoint(provenance: Provenance(stage: "pretext"))
        XCTAssertEqual(Set(ckpt.components.keys), ["backbone", "projector", "classifier"])
        XCTAssertEqual(ckpt.components["classifier"]?.keys.sorted(), ["fc.bias", "fc.weight"])
        XCTAssertEqual(ckpt.components["projector"]?["0.weight"]?.shape, [16, 32])
        XCTAssertNil(ckpt.components["projector"]?["3.bias"], "last projector Linear has no bias (docs/bissl.md, network and heads)")
        let back = try Network(checkpoint: ckpt)
        XCTAssertEqual(back.components(), ckpt.components)
        XCTAssertEqual(back.architecture, arch)
    }

    func testMissingHeadRecordAndBadTensorAreRefused() throws {
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small",
                                heads: ["classifier": .init(kind: "linear", dims: [32, 10])])
        var ckpt = try Network(architecture: arch, seed: 1).checkpoint(provenance: Provenance(stage: "finetune"))
        var noRecord = ckpt
        noRecord.architecture?.heads = [:]
        XCTAssertThrowsError(try Network(checkpoint: noRecord))
        ckpt.components["classifier"]?["fc.weight"] = Tensor(float32: [Float](repeating: 0, count: 30), shape: [3, 10])
        XCTAssertThrowsError(try Network(checkpoint: ckpt))
    }
}
