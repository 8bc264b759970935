import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// A zoo whose `runs/` is a symbolic link to a folder elsewhere: gc, `runs rm` and `runs prune`
/// judged what they found there as the zoo's runs and deleted through the link (gc a completed run's
/// state.h5, `runs rm` the whole run folder); they refuse, as gc refuses a linked `objects/` or `tmp/`.
final class LinkedRunsFolderTests: XCTestCase {
    func testGCAndRunsRmAndPruneRefuseALinkedRunsFolder() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["bissl", "test"], totalSteps: 1,
                                 progress: RunTestSupport.quiet(1))
        let job = try ToyJob(seed: 1, totalSteps: 1)
        run.log(step: 1, phase: "train", ["loss": Double(job.step(1))])
        _ = try run.finish(job.net.checkpoint(provenance: run.provenance(stage: "pretext", method: "simclr")), name: nil)
        try zoo.close()
        // The runs live elsewhere, the zoo's runs/ links there; the completed run holds a state.h5
        // (as runs finished before compaction kept it), which gc would drop.
        let outside = URL(fileURLWithPath: zoo.layout.root.path + "-outside")
        addTeardownBlock { try? FileManager.default.removeItem(at: outside) }
        try FileManager.default.moveItem(at: zoo.layout.runs, to: outside)
        try FileManager.default.createSymbolicLink(at: zoo.layout.runs, withDestinationURL: outside)
        let folder = outside.appendingPathComponent(run.id)
        let state = folder.appendingPathComponent(Run.stateFileName)
        try Data(repeating: 7, count: 5000).write(to: state)
        let dir = zoo.layout.root.path

        let gc = try Fixtures.runBissl(["gc", "--zoo", dir])
        XCTAssertNotEqual(gc.status, 0, gc.stdout)
        XCTAssertEqual(gc.stderr, "error: bissl gc refused: \(zoo.layout.runs.path) is a symbolic link (to \(outside.path)); it removes files only in the zoo's own folders: put the folder itself there\n")
        XCTAssertTrue(FileManager.default.fileExists(atPath: state.path), "gc keeps the linked run's state")

        for arg in [run.id, folder.path, zoo.layout.runs.appendingPathComponent(run.id).path] {
            let rm = try Fixtures.runBissl(["runs", "rm", "--force", arg, "--zoo", dir])
            XCTAssertNotEqual(rm.status, 0, rm.stdout)
            XCTAssertEqual(rm.stderr, "error: bissl runs rm refused: \(zoo.layout.runs.path) is a symbolic link (to \(outside.path)); it removes files only in the zoo's own folders: put the folder itself there\n", arg)
        }
        let prune = try Fixtures.runBissl(["runs", "prune", "--completed", "--zoo", dir])
        XCTAssertNotEqual(prune.status, 0, prune.stdout)
        XCTAssertTrue(prune.stderr.hasPrefix("error: removing run \(run.id) refused: \(zoo.layout.runs.path) is a symbolic link"), prune.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: state.path), "the run folder stays whole")

        // The library refuses as the commands do (compact is what gc and prune call per run).
        let summary = try XCTUnwrap(RunSummary.all(zoo.layout).first { $0.id == run.id })
        XCTAssertThrowsError(try RunMaintenance.compact(summary)) { XCTAssertTrue("\($0)".contains("is a symbolic link"), "\($0)") }
        XCTAssertThrowsError(try RunMaintenance.remove(summary, force: true)) { XCTAssertTrue("\($0)".contains("is a symbolic link"), "\($0)") }
        XCTAssertTrue(FileManager.default.fileExists(atPath: state.path))
    }
}
