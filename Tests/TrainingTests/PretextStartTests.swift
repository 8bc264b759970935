import Checkpoint
import Datasets
import Engine
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// What `PretrainJob.start` checks and records before any training: the `--name` (valid, free) is
/// refused before a run directory exists; the start line names the run and the resume command; the
/// data URI is recorded absolute.
final class PretextStartTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("pretext-start-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    var repo: URL { Fixtures.repository }

    /// Names of the run directories under the zoo's runs/ (none when the folder does not exist).
    func runDirectories(_ zoo: Zoo) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: zoo.layout.runs.path)) ?? []).filter { !$0.hasPrefix(".") }
    }

    func testTakenOrInvalidNameIsRefusedBeforeTheRunExists() throws {
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        defer { try? zoo.close() }
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small")
        let entry = try zoo.add(try Network(architecture: arch, seed: 1).checkpoint(provenance: Provenance(stage: "pretext")),
                                name: "p1", tags: ["t1"])
        func refusal(_ name: String) -> String {
            var o = PretrainOptions(method: .simclr, data: "h5:\(repo.path)/data/digits/digits.h5")
            o.arch = "resnet18"; o.width = 4; o.batchSize = 8; o.steps = 2; o.name = name
            do {
                _ = try PretrainJob.start(zoo: zoo, options: o, commandLine: ["test"])
                return "no error"
            } catch { return "\(error)" }
        }
        let taken = refusal("p1")
        XCTAssertTrue(taken.contains("--name p1 is already the name of entry \(entry.id.prefix(12))"), taken)
        let tag = refusal("t1")
        XCTAssertTrue(tag.contains("--name t1 is already the tag of entry \(entry.id.prefix(12))"), tag)
        let bad = refusal("bad name")
        XCTAssertTrue(bad.contains("--name: invalid label 'bad name'"), bad)
        let hex = refusal("abcdef12")
        XCTAssertTrue(hex.contains("6 or more hex digits"), hex)
        for m in [taken, tag, bad, hex] { XCTAssertFalse(m.contains("\n"), m) }
        XCTAssertEqual(runDirectories(zoo), [], "no run was created for a refused name")
    }

    func testStartLineNamesTheRunAndTheResumeCommand() throws {
        let split = (0..<20).map(String.init).joined(separator: "\n")
        try split.write(to: tmp.appendingPathComponent("split.txt"), atomically: true, encoding: .utf8)
        let dataset = try ImageDataset(parsing: "h5:\(repo.path)/data/digits/digits.h5#split=\(tmp.path)/split.txt")
        var o = PretrainOptions(method: .byol, data: dataset.uri.description)
        o.arch = "resnet18"; o.width = 8; o.stem = "small"; o.batchSize = 8; o.steps = 3; o.lr = 2
        let config = try PretrainConfig.resolve(o, dataset: dataset, fingerprint: "x")
        // 20 images in batches of 8, drop last: 2 batches per epoch, so 3 steps are 1.5 epochs.
        let id = "pretrain-20261129-143000-abcdef"
        XCTAssertEqual(PretrainJob.startLine(runID: id, config: config, commandLine: ["bissl", "pretrain", "--zoo", "/z"]),
                       "run \(id): 3 steps (byol, resnet18-w8-small, 1.50 epochs of 2 batches of 8, lars lr 2.0) (resume with: bissl pretrain --resume \(id) --zoo /z)")
        o.steps = 4
        let whole = try PretrainConfig.resolve(o, dataset: dataset, fingerprint: "x")
        XCTAssertEqual(PretrainJob.startLine(runID: id, config: whole, commandLine: ["bissl", "pretrain"]),
                       "run \(id): 4 steps (byol, resnet18-w8-small, 2 epochs of 2 batches of 8, lars lr 2.0) (resume with: bissl pretrain --resume \(id))")
        // Under mpirun the start line's resume command is the `stopped at step` line's (`Run.saveState`).
        XCTAssertEqual(PretrainJob.startLine(runID: id, config: whole, commandLine: ["bissl", "pretrain", "--zoo", "/z"], ranks: 2),
                       "run \(id): 4 steps (byol, resnet18-w8-small, 2 epochs of 2 batches of 8, lars lr 2.0) (resume with: mpirun -np 2 bissl pretrain --resume \(id) --zoo /z)")
        XCTAssertEqual(Run.resumeCommand(kind: "pretrain", id: id, commandLine: ["bissl", "pretrain", "--zoo", "/z"], ranks: 2),
                       "mpirun -np 2 bissl pretrain --resume \(id) --zoo /z")
        // A relative --zoo is printed absolute (the command works from any folder; `--zoo zq` did not
        // before), and quoted when the shell would split it.
        let here = FileManager.default.currentDirectoryPath
        XCTAssertEqual(Run.resumeCommand(kind: "pretrain", id: id, commandLine: ["bissl", "pretrain", "--zoo", "zq"]),
                       "bissl pretrain --resume \(id) --zoo \(URL(fileURLWithPath: here).appendingPathComponent("zq").standardizedFileURL.path)")
        XCTAssertEqual(Run.resumeCommand(kind: "pretrain", id: id, commandLine: ["bissl", "pretrain", "--zoo=./a/../zq"]),
                       "bissl pretrain --resume \(id) --zoo \(URL(fileURLWithPath: here).appendingPathComponent("zq").standardizedFileURL.path)")
        XCTAssertEqual(Run.resumeCommand(kind: "pretrain", id: id, commandLine: ["bissl", "pretrain", "--zoo", "/tmp/my zoo's"]),
                       "bissl pretrain --resume \(id) --zoo '/tmp/my zoo'\\''s'")
    }

    /// The run's config and the entry's provenance hold the absolute, normalised URI (path and split file).
    func testDataURIIsRecordedAbsolute() throws {
        let split = (0..<20).map(String.init).joined(separator: "\n")
        try split.write(to: tmp.appendingPathComponent("split.txt"), atomically: true, encoding: .utf8)
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        defer { try? zoo.close() }
        var o = PretrainOptions(method: .simclr, data: "h5:\(repo.path)/data/../data/digits/digits.h5#split=\(tmp.path)/./split.txt")
        o.arch = "resnet18"; o.width = 4; o.batchSize = 8; o.steps = 2; o.lr = 1
        let started = try PretrainJob.start(zoo: zoo, options: o, commandLine: ["test"])
        let (run, entry) = (started.run, started.entry)
        let expected = "h5:\(repo.path)/data/digits/digits.h5#split=\(tmp.path)/split.txt"
        XCTAssertEqual(run.config["data"], .string(expected))
        XCTAssertEqual(try zoo.checkpoint(entry.id).provenance.datasets.map(\.uri), [expected])
    }

    /// The lr of the first steps as `bissl pretrain --help` and docs/pretraining.md describe it (the reference implementation's
    /// schedule): step 1 at the full lr, then warmup from lr/W, back to the full lr at step W + 1.
    func testFirstStepsLRAsDocumented() throws {
        let split = (0..<20).map(String.init).joined(separator: "\n")
        try split.write(to: tmp.appendingPathComponent("split.txt"), atomically: true, encoding: .utf8)
        let dataset = try ImageDataset(parsing: "h5:\(repo.path)/data/digits/digits.h5#split=\(tmp.path)/split.txt")
        var o = PretrainOptions(method: .simclr, data: dataset.uri.description)
        o.arch = "resnet18"; o.width = 4; o.batchSize = 8; o.steps = 20
        let config = try PretrainConfig.resolve(o, dataset: dataset, fingerprint: "x")
        XCTAssertEqual(config.warmupSteps, 2, "10 % of 20 steps (shorter than 10 epochs of 2 batches)")
        XCTAssertEqual(config.lr, 4.8)
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        defer { try? zoo.close() }
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: config.json, commandLine: ["test"], totalSteps: 20,
                                 progress: RunTestSupport.quiet(20))
        try Pretrainer(config: config, dataset: dataset).train(run: run, stopAfter: 3)
        let lrs = run.history("lr").map(\.value)
        XCTAssertEqual(lrs.count, 3)
        for (got, want) in zip(lrs, [4.8, 2.4, 4.8]) { XCTAssertEqual(got, want, accuracy: 1e-6) }
    }

    /// A run whose --from entry was removed (bissl rm --force) says so on resume, not a zoo-damage error.
    func testResumeWithoutItsFromEntrySaysItWasRemoved() throws {
        let split = (0..<20).map(String.init).joined(separator: "\n")
        try split.write(to: tmp.appendingPathComponent("split.txt"), atomically: true, encoding: .utf8)
        let dataset = try ImageDataset(parsing: "h5:\(repo.path)/data/digits/digits.h5#split=\(tmp.path)/split.txt")
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        defer { try? zoo.close() }
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small")
        let parent = try zoo.add(try Network(architecture: arch, seed: 1).checkpoint(provenance: Provenance(stage: "pretext")))
        var o = PretrainOptions(method: .simclr, data: dataset.uri.description)
        o.arch = "resnet18"; o.width = 4; o.stem = "small"; o.batchSize = 8; o.steps = 2; o.from = parent.id
        let config = try PretrainConfig.resolve(o, dataset: dataset, fingerprint: try dataset.fingerprint(), parentArchitecture: arch)
        let runID: String
        do {   // the run object going away releases its lock, as a killed process does
            runID = try Run.create(zoo: zoo, kind: "pretrain", config: config.json, commandLine: ["test"], totalSteps: 2,
                                   progress: RunTestSupport.quiet(2)).id
        }
        _ = try zoo.remove(parent.id, force: true)
        XCTAssertThrowsError(try PretrainJob.resume(zoo: zoo, id: runID, commandLine: ["test", "--resume"])) {
            XCTAssertEqual("\($0)", "run \(runID) continues entry \(parent.id.prefix(12)) (--from), which is no longer in the zoo (removed with bissl rm --force?); it cannot be resumed")
        }
    }
}
