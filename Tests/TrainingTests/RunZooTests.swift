import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// The zoo's maintenance commands leave `<zoo>/runs/` alone: verify reports nothing about it, gc
/// deletes nothing in it (not even a stale temporary of a dead writer), reindex ignores it.
final class RunZooTests: XCTestCase {
    func testVerifyGCAndReindexIgnoreRuns() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["x"], totalSteps: 2, progress: RunTestSupport.quiet(2))
        run.log(step: 1, phase: "train", ["loss": 1])
        try run.saveState(TrainingState(step: 1, arrays: ["a": [1, 2]]))
        let job = try ToyJob(seed: 2, totalSteps: 2)
        _ = try zoo.add(job.net.checkpoint(provenance: Provenance(stage: "pretext")), name: "other")
        // Files a dead writer (pid 999999999 does not exist) would leave, and an HDF5 file that looks like a stray object.
        let stale = run.directory.appendingPathComponent(".state.h5.tmp-999999999-12345")
        try Data("partial".utf8).write(to: stale)
        let objectLike = zoo.layout.runs.appendingPathComponent("ab").appendingPathComponent(String(repeating: "c", count: 62) + ".h5")
        try FileManager.default.createDirectory(at: objectLike.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("x".utf8).write(to: objectLike)
        let before = try snapshot(zoo.layout.runs)

        let report = try zoo.verify()
        XCTAssertTrue(report.findings.allSatisfy { !($0.path ?? "").contains("/runs/") }, "\(report.findings)")
        XCTAssertTrue(report.problems.isEmpty, "\(report.problems)")
        let gc = try zoo.gc()
        XCTAssertTrue(gc.writerLeftovers.allSatisfy { !$0.contains("/runs/") }, "\(gc.writerLeftovers)")
        XCTAssertTrue(gc.damagedObjects.isEmpty && gc.relistedObjects.isEmpty)
        let reindex = try Zoo.reindex(zoo.layout)
        XCTAssertEqual(reindex.entries, 1)
        XCTAssertTrue(reindex.skipped.allSatisfy { !$0.contains("/runs/") }, "\(reindex.skipped)")
        XCTAssertEqual(try snapshot(zoo.layout.runs), before, "runs/ unchanged by verify, gc and reindex")
        XCTAssertEqual(try run.loadState()?.arrays["a"], [1, 2])
    }

    /// Reopening a run removes its own stale AtomicFile temporaries (a SIGKILL during saveState).
    func testOpenRemovesStaleTemporariesOfDeadWriters() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        var dir: URL!
        var id = ""
        do {
            let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["x"], totalSteps: 2, progress: RunTestSupport.quiet(2))
            dir = run.directory; id = run.id
        }
        let stale = dir.appendingPathComponent(".state.h5.tmp-999999999-12345")
        try Data("partial".utf8).write(to: stale)
        _ = try Run.open(zoo: zoo, id: id, expectedKind: "pretrain", progress: RunTestSupport.quiet(2))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale.path))
    }

    /// Every file under `dir` with its contents.
    func snapshot(_ dir: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let e = FileManager.default.enumerator(atPath: dir.path)!
        while let rel = e.nextObject() as? String {
            var isDirectory: ObjCBool = false
            let path = dir.appendingPathComponent(rel).path
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                out[rel] = try Data(contentsOf: URL(fileURLWithPath: path))
            }
        }
        return out
    }
}
