@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// The provenance JSON that format v1 writes has exactly the shape schemas/provenance.schema.json
/// declares (full JSON Schema validation runs in tools/interop/test_h5.py with jsonschema).
final class ProvenanceSchemaFormatTests: XCTestCase {
    private func schema() throws -> [String: Any] {
        let url = Fixtures.repository.appendingPathComponent("schemas/provenance.schema.json")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    private func encoded(_ p: Provenance) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(CheckpointFile.provenanceJSON(p).utf8)) as! [String: Any]
    }

    private func check(_ object: [String: Any], against def: [String: Any], full: Bool, _ what: String) {
        let properties = Set((def["properties"] as! [String: Any]).keys)
        let required = Set(def["required"] as! [String])
        let keys = Set(object.keys)
        XCTAssertTrue(keys.isSubset(of: properties), "\(what): keys not in the schema: \(keys.subtracting(properties))")
        XCTAssertTrue(required.isSubset(of: keys), "\(what): required keys not written: \(required.subtracting(keys))")
        if full { XCTAssertEqual(keys, properties, "\(what): a fully populated value writes every schema property") }
    }

    func testEncodedKeysMatchTheSchema() throws {
        let schema = try schema()
        let defs = schema["$defs"] as! [String: Any]
        var full = Provenance(
            stage: "imported", method: "simclr", parents: [.init(id: "x", relation: "imported-from", note: "n")],
            source: .init(fileName: "a.pth", sha256: String(repeating: "0", count: 64), format: "pth", container: "pytorch-zip",
                          strippedPrefix: "module."),
            datasets: [.init(role: "pretext", uri: "cifar:/d", fingerprint: String(repeating: "f", count: 64))],
            hyperparameters: ["lr": .double(0.1)], seeds: ["init": 0], metrics: ["top1": 0.5], warnings: ["w"],
            commandLine: ["bissl"], startedAt: "2026-01-01T00:00:00Z", endedAt: "2026-01-01T00:00:01Z")
        full.metricHistory = ["loss": [1, 2]]
        full.carriedFrom = [.init(fileName: "b.h5", sha256: String(repeating: "1", count: 64), commandLine: ["bissl", "import", "b.h5"],
                                  importedAt: "2026-01-02T00:00:00Z")]
        let json = try encoded(full)
        check(json, against: schema, full: true, "provenance")
        check(json["source"] as! [String: Any], against: defs["source"] as! [String: Any], full: true, "source")
        check((json["parents"] as! [[String: Any]])[0], against: defs["parent"] as! [String: Any], full: true, "parent")
        check((json["datasets"] as! [[String: Any]])[0], against: defs["dataset"] as! [String: Any], full: true, "dataset")
        check(json["tool"] as! [String: Any], against: (schema["properties"] as! [String: Any])["tool"] as! [String: Any],
              full: true, "tool")
        check((json["carriedFrom"] as! [[String: Any]])[0], against: defs["carriedStep"] as! [String: Any], full: true, "carriedStep")
        XCTAssertNil(json["metricHistory"], "histories are datasets, not JSON")

        let minimal = try encoded(Provenance(stage: "pretext"))
        check(minimal, against: schema, full: false, "minimal provenance")
        XCTAssertNil(minimal["method"], "unknown optional fields are omitted")
        XCTAssertNil(minimal["carriedFrom"], "a record bissl made carries no import step")
    }

    func testStageAndRelationVocabularyMatchesTheDocumentation() throws {
        let props = try schema()["properties"] as! [String: Any]
        XCTAssertEqual((props["stage"] as! [String: Any])["enum"] as! [String], ["imported", "pretext", "bissl", "finetune", "probe"])
    }
}
