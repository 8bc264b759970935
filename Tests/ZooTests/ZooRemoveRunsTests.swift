import Checkpoint
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// `bissl rm` (the built binary) refuses an entry that an unfinished run (run.json status `running`:
/// active or interrupted) starts from, under the config key each command stores: `from` (pretrain),
/// `ref` (finetune, align); completed and failed runs do not hold it; `--force` removes it anyway.
final class ZooRemoveRunsTests: XCTestCase {
    /// Writes `<zoo>/runs/<id>/run.json` as `Run` writes it (the `RunRecord` fields).
    private func writeRun(_ layout: ZooLayout, id: String, kind: String, status: String, config: [String: String]) throws {
        let dir = layout.runs.appendingPathComponent(id, isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let record: [String: Any] = [
            "id": id, "kind": kind, "status": status, "config": config, "commandLine": ["bissl", kind],
            "startedAt": "2026-11-29T10:00:00Z", "updatedAt": "2026-11-29T10:00:00Z", "totalSteps": 10, "step": 0,
            "durationSeconds": 1.0, "segments": 1, "resumeCommandLines": [[String]](),
        ]
        try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]).write(to: dir.appendingPathComponent("run.json"))
    }

    private func importEntry(_ dir: URL, zoo: String, seed: Int, name: String) throws -> String {
        let source = ZooTestSupport.checkpoint(seed: seed, stage: "pretext")
        let h5 = try ZooTestSupport.writeH5(source, to: dir.appendingPathComponent("\(name).h5"))
        let r = try BisslBinary.run(["import", h5.path, "--zoo", zoo, "--name", name])
        XCTAssertEqual(r.status, 0, r.stderr)
        return ContentID.compute(source)
    }

    private func isListed(_ id: String, _ layout: ZooLayout) throws -> Bool {
        let zoo = try Zoo.open(layout)
        defer { try? zoo.close() }
        return (try? zoo.resolve(id)) == id
    }

    func testUnfinishedRunsKeepTheirStartingEntry() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let layout = ZooLayout(root: dir.appendingPathComponent("zoo"))
        let zoo = layout.root.path
        let a = try importEntry(dir, zoo: zoo, seed: 300, name: "a")
        let b = try importEntry(dir, zoo: zoo, seed: 301, name: "b")
        let c = try importEntry(dir, zoo: zoo, seed: 302, name: "c")
        let d = try importEntry(dir, zoo: zoo, seed: 303, name: "d")
        // a: an interrupted pretrain --from a; b: an interrupted finetune and align of b;
        // c: only a completed and a failed run; d: an unfinished run naming d under another key.
        try writeRun(layout, id: "pretrain-20261129-100000-aaaaaa", kind: "pretrain", status: "running", config: ["from": a, "data": "h5:/x.h5"])
        try writeRun(layout, id: "finetune-20261129-100001-bbbbbb", kind: "finetune", status: "running", config: ["ref": b])
        try writeRun(layout, id: "align-20261129-100002-cccccc", kind: "align", status: "running", config: ["ref": b])
        try writeRun(layout, id: "finetune-20261129-100003-dddddd", kind: "finetune", status: "completed", config: ["ref": c])
        try writeRun(layout, id: "align-20261129-100004-eeeeee", kind: "align", status: "failed", config: ["ref": c])
        try writeRun(layout, id: "pretrain-20261129-100005-ffffff", kind: "pretrain", status: "running", config: ["name": d])

        let refusedA = try BisslBinary.run(["rm", "a", "--zoo", zoo])
        XCTAssertNotEqual(refusedA.status, 0)
        XCTAssertEqual(refusedA.stderr.split(separator: "\n").count, 1, refusedA.stderr)
        XCTAssertTrue(refusedA.stderr.hasPrefix("error: entry \(a.prefix(12)) is the start of 1 unfinished run"), refusedA.stderr)
        XCTAssertTrue(refusedA.stderr.contains("pretrain-20261129-100000-aaaaaa (interrupted)"), refusedA.stderr)
        XCTAssertTrue(try isListed(a, layout))

        let refusedB = try BisslBinary.run(["rm", String(b.prefix(10)), "--zoo", zoo])
        XCTAssertNotEqual(refusedB.status, 0)
        XCTAssertEqual(refusedB.stderr.split(separator: "\n").count, 1, refusedB.stderr)
        XCTAssertTrue(refusedB.stderr.contains("2 unfinished runs"), refusedB.stderr)
        XCTAssertTrue(refusedB.stderr.contains("align-20261129-100002-cccccc"), refusedB.stderr)
        XCTAssertTrue(refusedB.stderr.contains("finetune-20261129-100001-bbbbbb"), refusedB.stderr)
        XCTAssertTrue(try isListed(b, layout))

        for (ref, id) in [("c", c), ("d", d)] {
            let r = try BisslBinary.run(["rm", ref, "--zoo", zoo])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertFalse(try isListed(id, layout))
        }
        let forced = try BisslBinary.run(["rm", "a", "--force", "--zoo", zoo])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertFalse(try isListed(a, layout))
    }
}
