import Checkpoint
import Engine
import XCTest
@testable import Training
import TestSupport

/// Which classifier a fine-tune starts from, by the entry's stage; the image size an entry records.
final class DownstreamStartTests: XCTestCase {
    func network(classes: Int) throws -> Network {
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small",
                                heads: ["projector": .init(kind: "mlp", dims: [32, 16, 8]),
                                        "classifier": .init(kind: "linear", dims: [32, classes])])
        return try Network(architecture: arch, seed: 3)
    }

    func testBiSSLEntryGetsANewClassifier() throws {
        let entry = try network(classes: 10)
        guard case .linear(let phiD)? = entry.heads["classifier"] else { return XCTFail("no classifier") }
        let phiDWeights = phiD.linear.weight.value
        let start = FineTuneStart(entry: entry, entryId: String(repeating: "a", count: 64), entryStage: "bissl", classes: 10, seed: 9)
        XCTAssertEqual(start.classifier, "new")
        guard case .linear(let head)? = start.network.heads["classifier"] else { return XCTFail("no classifier") }
        XCTAssertNotEqual(head.linear.weight.value, phiDWeights, "φ_D must not be reused for θ_P")
        XCTAssertEqual(Array(start.network.heads.keys), ["classifier"], "projector dropped")
        XCTAssertTrue(start.note.contains("new classifier Linear(32, 10)"), start.note)
    }

    func testFinetuneEntryKeepsAMatchingClassifier() throws {
        let entry = try network(classes: 10)
        guard case .linear(let fc)? = entry.heads["classifier"] else { return XCTFail("no classifier") }
        let weights = fc.linear.weight.value
        let start = FineTuneStart(entry: entry, entryId: String(repeating: "b", count: 64), entryStage: "finetune", classes: 10, seed: 9)
        XCTAssertEqual(start.classifier, "kept")
        guard case .linear(let head)? = start.network.heads["classifier"] else { return XCTFail("no classifier") }
        XCTAssertEqual(head.linear.weight.value, weights)
    }

    func testRecordedImageSizeReadsBothSpellings() {
        var p = Provenance(stage: "finetune")
        XCTAssertNil(DownstreamData.recordedImageSize(p))
        p.hyperparameters["image_size"] = .int(16)
        XCTAssertEqual(DownstreamData.recordedImageSize(p), 16)
        p.hyperparameters = ["imageSize": .int(32)]
        XCTAssertEqual(DownstreamData.recordedImageSize(p), 32)
        p.hyperparameters = ["imageSize": .double(24)]
        XCTAssertEqual(DownstreamData.recordedImageSize(p), 24)
        p.hyperparameters = ["imageSize": .int(0)]
        XCTAssertNil(DownstreamData.recordedImageSize(p))
    }

    /// An entry imported from a file bissl exported carries its training image size in the file's
    /// `bissl.provenance`, through repeated export/import round trips, within a bounded depth.
    func testRecordedImageSizeFollowsTheProvenanceAnExportedFileCarries() throws {
        func imported(carrying inner: Provenance) throws -> Provenance {
            let meta = Interchange.provenanceSummary(Checkpoint(components: [:], architecture: nil, provenance: inner))
            return Provenance(stage: "imported", source: .init(fileName: "bb.safetensors", sha256: "", format: "safetensors",
                                                               container: "safetensors", metadata: meta))
        }
        var pretext = Provenance(stage: "pretext")
        pretext.hyperparameters = ["imageSize": .int(16)]
        let once = try imported(carrying: pretext)
        XCTAssertEqual(DownstreamData.recordedImageSize(once), 16)
        XCTAssertEqual(DownstreamData.recordedImageSize(try imported(carrying: once)), 16, "exported and imported again")
        var deep = once
        for _ in 0..<5 { deep = try imported(carrying: deep) }
        XCTAssertNil(DownstreamData.recordedImageSize(deep), "more round trips than the bound")
        var garbled = once
        garbled.source!.metadata["bissl.provenance"] = "{not json"
        XCTAssertNil(DownstreamData.recordedImageSize(garbled))
    }
}
