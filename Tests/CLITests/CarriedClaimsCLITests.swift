import Checkpoint
import Foundation
import XCTest
import TestSupport

/// A bissl `.h5` whose record claims a fine-tuning stage, a parent, data, metrics and a tool version
/// (as a tester made one: `convert` a .pth, rewrite the record), imported and used as users do:
/// `lineage` in every format, `export --to hub`, `card`, and the card of an entry fine-tuned from it
/// must show the claim as the file's, never as bissl's record (each stated it as fact).
final class CarriedClaimsCLITests: CLITestCase {
    static let claimedParent = String(repeating: "ab", count: 32)
    static let secretData = "h5:/secret/imagenet.h5"

    /// `claims.h5`: the fixture ResNet-18 (width 2, small stem) converted, with the claimed record.
    func claimsFile() throws -> URL {
        let plain = tmp.appendingPathComponent("plain.h5")
        let converted = try Fixtures.runBissl(["convert", Fixtures.url("pth/resnet18_w2.pth").path, plain.path])
        XCTAssertEqual(converted.status, 0, converted.stderr)
        var c = try CheckpointFile.read(plain)
        c.provenance = Provenance(stage: "finetune", method: "finetune", parents: [.init(id: Self.claimedParent, relation: "finetuned-from")],
                                  datasets: [.init(role: "train", uri: Self.secretData, fingerprint: String(repeating: "cd", count: 32))],
                                  hyperparameters: ["imageSize": .int(96)], metrics: ["val_top1": 99.97, "test_top1": 99.5],
                                  tool: .init(name: "bissl", version: "9.9.9"), commandLine: ["bissl", "finetune"])
        let claims = tmp.appendingPathComponent("claims.h5")
        try CheckpointFile.write(c, to: claims)
        return claims
    }

    /// The YAML front matter of a card (between the two `---` lines).
    func frontMatter(_ card: String) -> String {
        card.components(separatedBy: "---\n").dropFirst().first ?? ""
    }

    func testTheFilesClaimIsMarkedInLineageHubFolderAndCardsOfTheEntryAndItsDescendants() throws {
        let imported = try bissl(["import", try claimsFile().path, "--name", "claimed"])
        XCTAssertEqual(imported.status, 0, imported.stderr)

        // 1. lineage: the claimed edge and the carried entry are marked in every format.
        let text = try bissl(["lineage", "claimed"])
        XCTAssertEqual(text.status, 0, text.stderr)
        let lines = text.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.first?.hasSuffix("(carried)") == true, text.stdout)
        XCTAssertTrue(lines.contains("  abababababab  (not in zoo)  [finetuned-from]  (claimed by the file)"), text.stdout)
        let json = try bissl(["lineage", "claimed", "--format", "json"])
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let edges = try XCTUnwrap(object["edges"] as? [[String: Any]])
        XCTAssertEqual(edges.count, 1)
        XCTAssertEqual(edges.first?["carried"] as? Bool, true, json.stdout)
        let root = (object["nodes"] as? [[String: Any]])?.first { $0["id"] as? String == object["root"] as? String }
        XCTAssertEqual(root?["carried"] as? Bool, true, json.stdout)
        let mermaid = try bissl(["lineage", "claimed", "--format", "mermaid"])
        XCTAssertTrue(mermaid.stdout.contains(" -.->|\"finetuned-from (claimed by the file)\"| n0\n"), mermaid.stdout)

        // 2. export --to hub: no transform stated for the claimed stage, no claimed image size.
        let hub = tmp.appendingPathComponent("hub")
        let exported = try bissl(["export", "claimed", "--to", "hub", hub.path])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: hub.appendingPathComponent("config.json"))) as? [String: Any])
        let cfg = try XCTUnwrap(config["pretrained_cfg"] as? [String: Any])
        for key in ["mean", "std", "crop_pct", "crop_mode", "interpolation"] { XCTAssertNil(cfg[key], key) }
        XCTAssertEqual(cfg["input_size"] as? [Int], [3, 224, 224], "the claimed imageSize 96 is not a record")
        let bisslBlock = try XCTUnwrap(config["bissl"] as? [String: Any])
        XCTAssertTrue((bisslBlock["preprocessing"] as? String ?? "").hasPrefix("not recorded: the entry was imported from a bissl .h5 whose record (stage 'finetune') is that file's claim"), "\(bisslBlock)")

        // 3. card: no claimed dataset in the front matter; the Data row is marked.
        let card = try bissl(["card", "claimed"])
        XCTAssertEqual(card.status, 0, card.stderr)
        XCTAssertFalse(frontMatter(card.stdout).contains("datasets"), card.stdout)
        XCTAssertTrue(card.stdout.contains(" finetune (*carried*) | train | \(Self.secretData) |"), card.stdout)
        XCTAssertTrue(card.stdout.contains("## Preprocessing\n\nNot recorded: the entry was imported from `claims.h5`"), card.stdout)

        // 4. A descendant's card publishes its own stage's data, not its ancestor's claim.
        let data = try split(0..<40)
        let child = try bissl(["finetune", "claimed", "--data", data, "--steps", "1", "--batch-size", "8", "--image-size", "8", "--name", "child"])
        XCTAssertEqual(child.status, 0, child.stderr)
        let childCard = try bissl(["card", "child"])
        XCTAssertEqual(childCard.status, 0, childCard.stderr)
        let front = frontMatter(childCard.stdout)
        XCTAssertFalse(front.contains(Self.secretData), childCard.stdout)
        XCTAssertTrue(front.contains("datasets:\n  - \"h5:\(Self.digits)#split="), childCard.stdout)
        XCTAssertTrue(childCard.stdout.contains(" finetune (*carried*) | train | \(Self.secretData) |"), childCard.stdout)
        let down = try bissl(["lineage", "claimed", "--down"])
        XCTAssertTrue(down.stdout.contains("  child  finetune/finetune"), down.stdout)
        XCTAssertFalse(down.stdout.contains("(claimed by the file)"), "the child's edge is bissl's record: \(down.stdout)")
    }
}
