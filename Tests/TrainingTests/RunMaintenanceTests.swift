import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// Run directories do not fill the disk: a completed run drops its resumable state, `bissl runs`
/// shows each run's size and the total, `runs rm` deletes runs (an interrupted one only with
/// --force), `runs prune` and `gc` free what completed runs no longer need.
final class RunMaintenanceTests: XCTestCase {
    /// A completed run (toy job, 2 steps, state saved then finished), an interrupted one (state saved,
    /// dropped) and a completed run from before compaction (its state.h5 still there).
    func makeRuns(_ zoo: Zoo) throws -> (completed: String, interrupted: String, legacy: String) {
        func run(finish: Bool, seed: UInt64) throws -> Run {
            let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["bissl", "test"], totalSteps: 2,
                                     progress: RunTestSupport.quiet(2))
            let job = try ToyJob(seed: seed, totalSteps: 2)
            for s in 1...2 { run.log(step: s, phase: "train", ["loss": Double(job.step(s))]) }
            try run.saveState(job.capture(step: 2))
            if finish { _ = try run.finish(job.net.checkpoint(provenance: run.provenance(stage: "pretext", method: "simclr")), name: nil) }
            return run
        }
        let completed = try run(finish: true, seed: 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: completed.stateURL.path), "finish drops the state")
        for name in ["run.json", "log.jsonl", "curves.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: completed.directory.appendingPathComponent(name).path), name)
        }
        let legacy = try run(finish: true, seed: 2)
        try Data(repeating: 7, count: 50_000).write(to: legacy.stateURL)   // as runs finished before kept it
        var interrupted = ""
        do { interrupted = try run(finish: false, seed: 3).id }
        return (completed.id, interrupted, legacy.id)
    }

    func testRunsShowSizesAndRemoveAndPruneFreeThem() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let (completed, interrupted, legacy) = try makeRuns(zoo)
        let dir = zoo.layout.root.path
        let list = try Fixtures.runBissl(["runs", "--zoo", dir])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertTrue(list.stdout.split(separator: "\n")[0].contains("SIZE"), list.stdout)
        XCTAssertTrue(list.stdout.contains("3 runs, "), list.stdout)
        let json = try JSONSerialization.jsonObject(with: Data(try Fixtures.runBissl(["runs", "--json", "--zoo", dir]).stdout.utf8)) as! [[String: Any]]
        let bytes = Dictionary(uniqueKeysWithValues: json.map { ($0["id"] as! String, $0["bytes"] as! Int) })
        XCTAssertGreaterThan(bytes[legacy]!, bytes[completed]! + 40_000, "the legacy run still holds its state")

        var r = try Fixtures.runBissl(["runs", "rm", interrupted, "--zoo", dir])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.hasPrefix("error: run \(interrupted) is interrupted at step 2/2 and can be resumed (bissl pretrain --resume \(interrupted)); bissl runs rm --force \(interrupted) deletes it"), r.stderr)

        // gc drops the legacy run's state (and nothing of the interrupted run).
        r = try Fixtures.runBissl(["gc", "--zoo", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("removed the state of completed run \(legacy)"), r.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: zoo.layout.runs.appendingPathComponent("\(legacy)/state.h5").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: zoo.layout.runs.appendingPathComponent("\(interrupted)/state.h5").path))

        r = try Fixtures.runBissl(["runs", "rm", interrupted, "--force", "--zoo", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: zoo.layout.runs.appendingPathComponent(interrupted).path))

        r = try Fixtures.runBissl(["runs", "prune", "--completed", "--dry-run", "--zoo", dir])
        XCTAssertTrue(r.stdout.contains("would remove run \(completed) (completed)"), r.stdout)
        XCTAssertEqual(RunSummary.all(zoo.layout).count, 2, "a dry run changes nothing")
        r = try Fixtures.runBissl(["runs", "prune", "--completed", "--zoo", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(RunSummary.all(zoo.layout).count, 0)
        XCTAssertEqual(try zoo.list().count, 2, "the entries stay")
    }

    /// A completed finetune-like run whose entry's dataset URI names its split file
    /// (`holdout-train.txt` in the run directory), as finetune without --val records it.
    func runCitingItsSplitFile(_ zoo: Zoo) throws -> (run: Run, split: URL, entry: String) {
        let run = try Run.create(zoo: zoo, kind: "finetune", config: [:], commandLine: ["bissl", "test"], totalSteps: 1,
                                 progress: RunTestSupport.quiet(1))
        let job = try ToyJob(seed: 4, totalSteps: 1)
        run.log(step: 1, phase: "train", ["loss": Double(job.step(1))])
        let split = run.directory.appendingPathComponent("holdout-train.txt")
        try Data("0\n1\n".utf8).write(to: split)
        var provenance = run.provenance(stage: "finetune", method: "finetune")
        provenance.datasets = [.init(role: "downstream-train", uri: "h5:\(Fixtures.digits)#split=\(split.path)",
                                     fingerprint: String(repeating: "0", count: 64))]
        let entry = try run.finish(job.net.checkpoint(provenance: provenance), name: nil).id
        return (run, split, entry)
    }

    /// A completed pretrain-like run whose entry's datasets are `uris`.
    func completedRun(_ zoo: Zoo, datasets uris: (Run) -> [String] = { _ in [] }) throws -> Run {
        let other = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["bissl", "test"], totalSteps: 1,
                                   progress: RunTestSupport.quiet(1))
        var provenance = other.provenance(stage: "pretext", method: "simclr")
        provenance.datasets = uris(other).map { .init(role: "pretext", uri: $0, fingerprint: String(repeating: "0", count: 64)) }
        _ = try other.finish(try ToyJob(seed: 5, totalSteps: 1).net.checkpoint(provenance: provenance), name: nil)
        return other
    }

    func testRunFilesThatAnEntryCitesAsDataAreNotDeletedWithoutForce() throws {
        // finetune without --val records its hold-out split files (in its run directory) in the
        // entry's dataset URIs; `runs prune --completed` deleted them and left the provenance and the
        // model card naming missing files.
        let zoo = try RunTestSupport.tempZoo(self)
        let (run, split, entry) = try runCitingItsSplitFile(zoo)
        let other = try completedRun(zoo)
        let dir = zoo.layout.root.path

        var r = try Fixtures.runBissl(["runs", "prune", "--completed", "--zoo", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("kept run \(run.id) (completed): it holds holdout-train.txt (cited as data by the provenance of entry \(entry.prefix(12)))"), r.stdout)
        XCTAssertTrue(r.stdout.contains("remove run \(other.id) (completed)"), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: split.path), "the cited split file stays")
        XCTAssertEqual(RunSummary.all(zoo.layout).map(\.id), [run.id])

        r = try Fixtures.runBissl(["runs", "rm", run.id, "--zoo", dir])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr, "error: run \(run.id) holds holdout-train.txt (cited as data by the provenance of entry \(entry.prefix(12))); deleting it leaves that record naming missing files; bissl runs rm --force \(run.id) deletes it anyway\n")
        XCTAssertTrue(FileManager.default.fileExists(atPath: split.path))
        r = try Fixtures.runBissl(["runs", "rm", "--force", run.id, "--zoo", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.directory.path))
    }

    func testRunFilesCitedUnderTheZoosFormerRootAreKeptAfterTheZooFolderMoved() throws {
        // The provenance holds the absolute path of the split file under the zoo root of the time;
        // after `mv zoo zoo_moved` that path names no file, and prune deleted the run (and the file
        // the entry cites, now at zoo_moved/runs/<run id>/holdout-train.txt).
        let zoo = try RunTestSupport.tempZoo(self)
        let (run, _, entry) = try runCitingItsSplitFile(zoo)
        // Paths that carry another run's id but are not `runs/<its id>/<file>` cite none of its files.
        let root = zoo.layout.root.path
        let other = try completedRun(zoo) { r in
            ["h5:\(Fixtures.digits)#split=\(root)/archive/\(r.id)/holdout-train.txt",
             "h5:\(Fixtures.digits)#split=\(root)/runs/\(r.id)-old/holdout-train.txt",
             "h5:\(root)/runs/\(r.id)"]
        }
        try zoo.close()
        let moved = URL(fileURLWithPath: root + "-moved")
        addTeardownBlock { try? FileManager.default.removeItem(at: moved) }
        try FileManager.default.moveItem(atPath: root, toPath: moved.path)
        let split = moved.appendingPathComponent("runs/\(run.id)/holdout-train.txt")
        XCTAssertTrue(FileManager.default.fileExists(atPath: split.path))

        var r = try Fixtures.runBissl(["runs", "prune", "--completed", "--zoo", moved.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("kept run \(run.id) (completed): it holds holdout-train.txt (cited as data by the provenance of entry \(entry.prefix(12)))"), r.stdout)
        XCTAssertTrue(r.stdout.contains("remove run \(other.id) (completed)"), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: split.path), "the cited split file stays")
        XCTAssertEqual(RunSummary.all(ZooLayout(root: moved)).map(\.id), [run.id])

        r = try Fixtures.runBissl(["runs", "rm", run.id, "--zoo", moved.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.hasPrefix("error: run \(run.id) holds holdout-train.txt (cited as data by the provenance of entry \(entry.prefix(12)));"), r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: split.path))
    }

    func testCitationsOfManyRunsComeFromOneScanAndAgreeWithEachRunsOwn() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let (run, _, entry) = try runCitingItsSplitFile(zoo)
        let other = try completedRun(zoo)
        let runs = RunSummary.all(zoo.layout)
        let batch = try RunMaintenance.citations(of: runs, in: zoo)
        XCTAssertEqual(batch, try runs.map { try RunMaintenance.citations(of: $0, in: zoo) })
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: zip(runs.map(\.id), batch)),
                       [run.id: [.init(file: "holdout-train.txt", entries: [entry])], other.id: []])
        // Every text is looked for; one that nothing mentions has no key.
        let mentions = try zoo.provenanceMentioning(anyOf: [run.id, other.id, "no-such-text"])
        XCTAssertEqual(mentions[run.id]?.map(\.id), [entry])
        XCTAssertNil(mentions["no-such-text"])
        XCTAssertEqual(try zoo.provenanceMentioning(run.id).map(\.id), [entry])
    }

    func testACitationByThousandsOfEntriesIsOneReadableLine() {
        let ids = (0..<2000).map { String(format: "%012x", $0) + String(repeating: "0", count: 52) }
        let line = RunMaintenance.describe([.init(file: "holdout-train.txt", entries: ids)])
        XCTAssertEqual(line, "holdout-train.txt (cited as data by the provenance of entries "
                       + ids.prefix(10).map { String($0.prefix(12)) }.joined(separator: ", ") + " and 1990 more)")
    }
}
