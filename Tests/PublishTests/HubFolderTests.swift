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
        XCTAssertEqual(try HubFolder.write(c, id: id, lineage: lineage, preprocessing: .init(imageSize: 32), to: first), [Self.noPreprocessing])
        let written = try files(first)
        XCTAssertEqual(Set(written.keys), ["model.safetensors", "config.json", "README.md"])
        let config = try JSONSerialization.jsonObject(with: written["config.json"]!) as! [String: Any]
        XCTAssertEqual(config["architecture"] as? String, "resnet18-w2-small")
        XCTAssertEqual(config["num_classes"] as? Int, 5)
        XCTAssertEqual(config["num_features"] as? Int, 16)
        let cfg = config["pretrained_cfg"] as! [String: Any]
        XCTAssertEqual(cfg["input_size"] as? [Int], [3, 32, 32])
        // Imported: nothing records how its images were prepared, so nothing is stated.
        for key in ["mean", "std", "crop_pct", "crop_mode", "interpolation"] { XCTAssertNil(cfg[key], key) }
        let bissl = config["bissl"] as! [String: Any]
        XCTAssertTrue((bissl["preprocessing"] as! String).hasPrefix("not recorded: the entry was imported"), "\(bissl)")
        XCTAssertEqual(bissl["input_size"] as? String, "recorded by the lineage")
        XCTAssertTrue(String(decoding: written["README.md"]!, as: UTF8.self).contains(" Input size: 32 x 32 (S = 32), the image size the lineage records"))

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

    static let noPreprocessing = "the entry records no preprocessing (imported): config.json leaves out interpolation, crop_pct, crop_mode, mean and std"

    /// An entry bissl trained states bissl's evaluation transform (ImageNet mean/std, bilinear, crop
    /// 0.875), also when it comes back through a file bissl exported (its carried provenance).
    func testATrainedEntryStatesBisslsTransform() throws {
        var c = try entry().0
        c.provenance = Provenance(stage: "finetune")
        var exported = try entry().0
        exported.provenance.source = .init(fileName: "ft.safetensors", sha256: "", format: "safetensors", container: "safetensors",
                                           metadata: ["bissl.provenance": String(decoding: try JSONEncoder.bissl().encode(c.provenance), as: UTF8.self)])
        for (name, checkpoint) in [("trained", c), ("exported", exported)] {
            let id = ContentID.compute(checkpoint)
            let lineage = CardLineage(stages: [.init(id: id, labels: [name], status: "listed", provenance: checkpoint.provenance,
                                                     arch: checkpoint.architecture?.label, components: Array(checkpoint.components.keys))])
            let dir = scratch.appendingPathComponent(name)
            XCTAssertEqual(try HubFolder.write(checkpoint, id: id, lineage: lineage, preprocessing: .init(imageSize: 32), to: dir), [], name)
            let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
            let cfg = config["pretrained_cfg"] as! [String: Any]
            XCTAssertEqual(cfg["mean"] as? [Double], [0.485, 0.456, 0.406], name)
            XCTAssertEqual(cfg["std"] as? [Double], [0.229, 0.224, 0.225], name)
            XCTAssertEqual(cfg["crop_pct"] as? Double, 0.875, name)
            XCTAssertEqual(cfg["interpolation"] as? String, "bilinear", name)
            XCTAssertEqual(cfg["crop_mode"] as? String, "center", name)
            XCTAssertTrue(((config["bissl"] as! [String: Any])["preprocessing"] as! String).hasPrefix("bissl's evaluation transform, which the entry's stage 'finetune' used"), name)
        }
    }

    /// An entry whose record is carried from an imported bissl .h5 (`carriedFrom`) claims its stage;
    /// bissl ran none, so config.json states no transform, as for an imported entry (it stated
    /// bissl's transform "which the entry's stage 'finetune' used"), and the card says the same.
    func testACarriedStageStatesNoTransform() throws {
        var (c, _, _) = try entry()
        c.provenance = Provenance(stage: "finetune", method: "finetune", hyperparameters: ["imageSize": .int(32)])
        c.provenance.carriedFrom = [.init(fileName: "claims.h5", sha256: String(repeating: "0", count: 64),
                                          commandLine: ["bissl", "import", "claims.h5"], importedAt: "2026-01-02T00:00:00Z")]
        let id = ContentID.compute(c)
        let lineage = CardLineage(stages: [.init(id: id, labels: ["claimed"], status: "listed", provenance: c.provenance,
                                                 arch: c.architecture?.label, components: Array(c.components.keys))])
        let dir = scratch.appendingPathComponent("claimed")
        XCTAssertEqual(try HubFolder.write(c, id: id, lineage: lineage, preprocessing: .init(imageSize: nil), to: dir), [
            "no stage records an image size: config.json says input_size [3, 224, 224] (torchvision's convention)",
            "the entry's record is carried from claims.h5 (that file's claim): config.json leaves out interpolation, crop_pct, crop_mode, mean and std",
        ])
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        let cfg = config["pretrained_cfg"] as! [String: Any]
        for key in ["mean", "std", "crop_pct", "crop_mode", "interpolation"] { XCTAssertNil(cfg[key], key) }
        XCTAssertEqual((config["bissl"] as! [String: Any])["preprocessing"] as? String,
                       "not recorded: the entry was imported from a bissl .h5 whose record (stage 'finetune') is that file's claim, not bissl's, so interpolation, crop_pct, crop_mode, mean and std are left out")
        let card = try String(contentsOf: dir.appendingPathComponent("README.md"), encoding: .utf8)
        XCTAssertTrue(card.contains("## Preprocessing\n\nNot recorded: the entry was imported from `claims.h5`"), card)
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
        XCTAssertEqual(notes, ["no stage records an image size: config.json says input_size [3, 224, 224] (torchvision's convention)", Self.noPreprocessing])
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
