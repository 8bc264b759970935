@testable import Checkpoint
import Foundation
import GRDB
import HDF5
import XCTest
import TestSupport
import Zoo

/// Importing a bissl `.h5` keeps its record as that file's claim and records the import itself
/// (`Provenance.carriedFrom`, schemas/checkpoint-v1.md): `show` and `card` say so, a parent the zoo
/// does not hold is not shown as one it holds, `diff` and `lineage` still work.
final class CarriedProvenanceTests: XCTestCase {
    private func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    func testAnImportedRecordIsMarkedAsTheFilesClaimAndTheImportIsRecorded() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let stranger = String(repeating: "7", count: 64)
        let claimed = ZooTestSupport.checkpoint(seed: 900, stage: "finetune",
                                                parents: [.init(id: stranger, relation: "finetuned-from")],
                                                metrics: ["val_top1": 99.9],
                                                datasets: [.init(role: "downstream-val", uri: "h5:/data/val.h5",
                                                                 fingerprint: ZooTestSupport.fingerprint)])
        let h5 = try ZooTestSupport.writeH5(claimed, to: dir.appendingPathComponent("claims.h5"))
        let sha = try FileSHA256.digest(of: h5).sha256
        let imported = try BisslBinary.run(["import", h5.path, "--zoo", zoo, "--name", "claimed"])
        XCTAssertEqual(imported.status, 0, imported.stderr)

        let shown = try BisslBinary.run(["show", "claimed", "--zoo", zoo, "--json"])
        XCTAssertEqual(shown.status, 0, shown.stderr)
        let provenance = try XCTUnwrap(try json(shown.stdout)["provenance"] as? [String: Any])
        let steps = try XCTUnwrap(provenance["carriedFrom"] as? [[String: Any]])
        XCTAssertEqual(steps.count, 1)
        XCTAssertEqual(steps.first?["fileName"] as? String, "claims.h5")
        XCTAssertEqual(steps.first?["sha256"] as? String, sha)
        XCTAssertEqual((steps.first?["commandLine"] as? [String])?.dropFirst().first, "import")
        XCTAssertNotNil(steps.first?["importedAt"] as? String)

        let text = try BisslBinary.run(["show", "claimed", "--zoo", zoo]).stdout
        XCTAssertTrue(text.contains("carried  from claims.h5 (sha256 \(sha))"), text)
        XCTAssertTrue(text.contains("that file's claims, not bissl's records"), text)
        XCTAssertTrue(text.contains("parents (claimed by the file)\n  finetuned-from 777777777777 (not in this zoo)"), text)

        let card = try BisslBinary.run(["card", "claimed", "--zoo", zoo])
        XCTAssertEqual(card.status, 0, card.stderr)
        XCTAssertTrue(card.stdout.contains("*carried*: this record is the claim of the file `claims.h5` (SHA-256 `\(sha)`)"), card.stdout)
        XCTAssertTrue(card.stdout.contains("these values are claims of the imported file `claims.h5`"), card.stdout)
        // The front matter names no claimed parent as the base model and publishes no claimed result.
        XCTAssertFalse(card.stdout.contains("base_model"), card.stdout)
        XCTAssertFalse(card.stdout.contains("model-index"), card.stdout)

        // lineage and diff still work on the entry.
        let lineage = try BisslBinary.run(["lineage", "claimed", "--zoo", zoo])
        XCTAssertEqual(lineage.status, 0, lineage.stderr)
        let diff = try BisslBinary.run(["diff", "claimed", h5.path, "--zoo", zoo])
        XCTAssertEqual(diff.stderr, "")

        // A record bissl made itself (an import of a .pth) carries no step.
        let pth = try BisslBinary.run(["import", ZooTestSupport.fixture("pth/resnet18_w2.pth").path, "--zoo", zoo, "--name", "own"])
        XCTAssertEqual(pth.status, 0, pth.stderr)
        let own = try XCTUnwrap(try json(try BisslBinary.run(["show", "own", "--zoo", zoo, "--json"]).stdout)["provenance"] as? [String: Any])
        XCTAssertNil(own["carriedFrom"])
        XCTAssertFalse(try BisslBinary.run(["show", "own", "--zoo", zoo]).stdout.contains("carried"))
    }

    /// The SHA-256 a carried step records is that of the bytes read: the file is hashed through the
    /// descriptor it was read from, so a file put at the path right after the read (the test's hook,
    /// where the path used to be hashed again) does not give its hash. In process and in the HDF5
    /// reader process (the built binary as `Sandbox.helper`).
    func testTheCarriedStepHashesTheBytesRead() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let original = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 903, stage: "finetune"), to: dir.appendingPathComponent("a.h5"))
        let replacement = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 904, stage: "finetune"), to: dir.appendingPathComponent("b.h5"))
        let originalSHA = try FileSHA256.digest(of: original).sha256
        let replacementSHA = try FileSHA256.digest(of: replacement).sha256
        XCTAssertNotEqual(originalSHA, replacementSHA)
        defer { Interchange.afterReadingForTesting = nil; Sandbox.helper = nil }
        for helper in [nil, BisslBinary.url.map { [$0.path, "sandboxed-read"] }] {
            let path = dir.appendingPathComponent("import.h5")
            unlink(path.path)
            try FileManager.default.copyItem(at: original, to: path)
            Sandbox.helper = helper
            var replaced = false
            Interchange.afterReadingForTesting = { url in
                replaced = (try? FileManager.default.copyItem(at: replacement, to: url.appendingPathExtension("new"))) != nil
                    && rename(url.path + ".new", url.path) == 0
            }
            let checkpoint = try Interchange.load(path, options: LayoutOptions(), verifyStoredContentID: true, recordCarriedStep: true)
            XCTAssertTrue(replaced, "the hook put another file at the path")
            XCTAssertEqual(checkpoint.provenance.carriedStep?.sha256, originalSHA, "helper \(helper ?? [])")
        }
    }

    /// `list` marks a carried record's metric, as `show` and the card do: `(carried)` after it in the
    /// table, `"carried": true` in `--json`; a record bissl made is unmarked. A catalog of schema
    /// version 4 (no `carried` column) learns it from migration 5.
    func testListMarksACarriedMetric() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let claimed = ZooTestSupport.checkpoint(seed: 901, stage: "finetune", metrics: ["val_top1": 99.9])
        let h5 = try ZooTestSupport.writeH5(claimed, to: dir.appendingPathComponent("claims.h5"))
        XCTAssertEqual(try BisslBinary.run(["import", h5.path, "--zoo", zoo, "--name", "claimed"]).status, 0)
        let own = ZooTestSupport.checkpoint(seed: 902, stage: "finetune", metrics: ["val_top1": 50])
        let zooHandle = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)))
        _ = try zooHandle.add(own, name: "own")
        try zooHandle.close()

        func check(_ what: String) throws {
            let text = try BisslBinary.run(["list", "--zoo", zoo])
            XCTAssertEqual(text.status, 0, text.stderr)
            let lines = text.stdout.split(separator: "\n").map(String.init)
            let claimedLine = try XCTUnwrap(lines.first { $0.contains(" claimed ") }, text.stdout)
            let ownLine = try XCTUnwrap(lines.first { $0.contains(" own ") }, text.stdout)
            XCTAssertTrue(claimedLine.contains("val_top1=99.9 (carried)"), "\(what): \(claimedLine)")
            XCTAssertTrue(ownLine.contains("val_top1=50") && !ownLine.contains("carried"), "\(what): \(ownLine)")
            let json = try BisslBinary.run(["list", "--zoo", zoo, "--json"])
            let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
            let carried = Dictionary(uniqueKeysWithValues: rows.map { ($0["name"] as? String ?? "", $0["carried"] as? Bool) })
            XCTAssertEqual(carried, ["claimed": true, "own": false], what)
        }
        try check("schema 5")

        // Back to schema version 4 (migration 5 undone); `list`, able to write the catalog, migrates it again.
        let db = try DatabaseQueue(path: dir.appendingPathComponent("zoo/catalog.sqlite").path)
        try db.write {
            try $0.execute(sql: "DROP INDEX entries_listing")
            try $0.execute(sql: "ALTER TABLE entries DROP COLUMN carried")
            try $0.execute(sql: """
                CREATE INDEX entries_listing ON entries(created DESC, id, name, stage, method, arch, first_parent, parent_count,
                                                        dataset, headline_metric, headline_value, size, tensor_count,
                                                        components, source_file)
                """)
            try $0.execute(sql: "PRAGMA user_version = 4")
        }
        try db.close()
        try check("migrated from schema 4")
        XCTAssertEqual(try BisslBinary.run(["verify", "--zoo", zoo]).status, 0, "the migrated rows agree with the objects")
    }
}
