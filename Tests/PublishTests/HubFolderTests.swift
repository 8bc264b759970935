import Checkpoint
import Foundation
@testable import Publish
import XCTest

/// Hub-style folders: written atomically, read back with config and card in provenance, and written
/// again byte for byte (timm and torch loading are checked by tools/interop/test_card_hub.py).
final class HubFolderTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-hub-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    func entry() throws -> (Checkpoint, String, CardLineage) {
        let c = try ONNXExportTests.checkpoint()
        let id = ContentID.compute(c)
        let lineage = CardLineage(stages: [.init(id: id, labels: ["tiny"], status: "listed", provenance: c.provenance,
                                                 arch: c.architecture?.label, components: Array(c.components.keys))])
        return (c, id, lineage)
    }

    func files(_ dir: URL) throws -> [String: Data] {
        Dictionary(uniqueKeysWithValues: try FileManager.default.contentsOfDirectory(atPath: dir.path).map {
            ($0, try Data(contentsOf: dir.appendingPathComponent($0)))
        })
    }

    func testFolderRoundTripsByteForByte() throws {
        let (c, id, lineage) = try entry()
        let first = scratch.appendingPathComponent("first")
        XCTAssertEqual(try HubFolder.write(c, id: id, lineage: lineage, preprocessing: .init(imageSize: 32), to: first), [])
        let written = try files(first)
        XCTAssertEqual(Set(written.keys), ["model.safetensors", "config.json", "README.md"])
        let config = try JSONSerialization.jsonObject(with: written["config.json"]!) as! [String: Any]
        XCTAssertEqual(config["architecture"] as? String, "resnet18-w2-small")
        XCTAssertEqual(config["num_classes"] as? Int, 5)
        XCTAssertEqual(config["num_features"] as? Int, 16)
        let cfg = config["pretrained_cfg"] as! [String: Any]
        XCTAssertEqual(cfg["input_size"] as? [Int], [3, 32, 32])
        XCTAssertEqual(cfg["mean"] as? [Double], [0.485, 0.456, 0.406])

        let imported = try HubFolder.read(first, options: LayoutOptions())
        XCTAssertEqual(ContentID.compute(imported), id)
        XCTAssertEqual(imported.provenance.source?.container, "hub folder")
        XCTAssertEqual(imported.provenance.source?.fileName, "first/model.safetensors")
        XCTAssertEqual(imported.provenance.source?.metadata["hub.README.md"].map { Data($0.utf8) }, written["README.md"])

        let second = scratch.appendingPathComponent("second")
        let notes = try HubFolder.write(imported, id: id, lineage: lineage, preprocessing: .init(imageSize: nil), to: second)
        XCTAssertEqual(notes, ["imported from a hub folder bissl wrote (content id verified): its recorded config and card are written as they were"])
        XCTAssertEqual(try files(second), written)
    }

    func testTheStagingFolderIsLockedWhileItIsFilledSoNoCleanerRemovesIt() throws {
        let dir = scratch.appendingPathComponent("hub")
        var staging: URL?
        try HubFolder.writeFolder(dir) { tmp in
            staging = tmp
            XCTAssertEqual(TemporaryFileLock.folderIsUnlocked(tmp), false)
            // A cleaner sees a dead pid only when the writer runs in another pid namespace; the lock decides.
            XCTAssertEqual(TemporaryFiles.removeAbandoned(for: dir, stagingFiles: HubFolder.files).removed, [])
            try Data("x".utf8).write(to: tmp.appendingPathComponent("x"))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), ["hub"])
        XCTAssertEqual(TemporaryFileLock.folderIsUnlocked(dir), true, "released once published")
        XCTAssertNotNil(staging)
    }

    func testOnlyAnEmptyOrNewFolderIsWrittenAndNothingIsLeftOnRefusal() throws {
        let (c, id, lineage) = try entry()
        let taken = scratch.appendingPathComponent("taken")
        try FileManager.default.createDirectory(at: taken, withIntermediateDirectories: false)
        try Data("x".utf8).write(to: taken.appendingPathComponent("x"))
        XCTAssertThrowsError(try HubFolder.write(c, id: id, lineage: lineage, preprocessing: .init(imageSize: nil), to: taken)) { error in
            XCTAssertEqual(error as? PublishError, .invalid("\(taken.path) exists and is not an empty folder; pick a new folder"))
        }
        let empty = scratch.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: false)
        let notes = try HubFolder.write(c, id: id, lineage: lineage, preprocessing: .init(imageSize: nil), to: empty)
        XCTAssertEqual(notes, ["no stage records an image size: config.json says input_size [3, 224, 224] (torchvision's convention)"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted(), ["empty", "taken"])
    }

    func testReadingRefusesAFolderThatContradictsItself() throws {
        let (c, id, lineage) = try entry()
        let dir = scratch.appendingPathComponent("h")
        try HubFolder.write(c, id: id, lineage: lineage, preprocessing: .init(imageSize: 8), to: dir)
        let configURL = dir.appendingPathComponent("config.json")
        try Data(#"{"architecture": "resnet50", "num_classes": 5}"#.utf8).write(to: configURL)
        XCTAssertThrowsError(try HubFolder.read(dir, options: LayoutOptions())) { error in
            XCTAssertEqual(error as? PublishError, .invalid("config.json says architecture resnet50, the weights are resnet18-w2-small"))
        }
        // Not a ResNet at all: refused too (only names with a ResNet prefix were compared).
        try Data(#"{"architecture": "vit_base_patch16_224", "num_classes": 5}"#.utf8).write(to: configURL)
        XCTAssertThrowsError(try HubFolder.read(dir, options: LayoutOptions())) { error in
            XCTAssertEqual(error as? PublishError, .invalid("config.json says architecture vit_base_patch16_224, the weights are resnet18-w2-small"))
        }
        // A ResNet variant bissl has no name for is not compared.
        try Data(#"{"architecture": "resnet18d", "num_classes": 5}"#.utf8).write(to: configURL)
        XCTAssertNoThrow(try HubFolder.read(dir, options: LayoutOptions()))
        try Data("[]".utf8).write(to: configURL)
        XCTAssertThrowsError(try HubFolder.read(dir, options: LayoutOptions())) { error in
            XCTAssertEqual(error as? PublishError, .invalid("config.json in h is not a JSON object"))
        }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("README.md"))
        XCTAssertThrowsError(try HubFolder.read(dir, options: LayoutOptions())) { error in
            XCTAssertEqual(error as? PublishError, .invalid("README.md is missing from h"))
        }
    }
}
