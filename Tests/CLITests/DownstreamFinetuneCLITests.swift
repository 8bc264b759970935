import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// `bissl finetune` (and `eval` on its kind of entry) as users run it (the built binary, see
/// `BisslBinary`) after a tiny run (ResNet-18 width 4 from random init, 1 step on 36 of the
/// 8x8 digits): what it prints on stdout, the spelling of the keys it records, and the recorded
/// image size of an entry written before camelCase (`image_size`) still read by `eval`.
final class DownstreamFinetuneCLITests: CLITestCase {
    var data = ""

    override func setUpWithError() throws {
        try super.setUpWithError()
        data = try split(0..<40)
    }

    /// `bissl finetune --random-init` (ResNet-18 width 4, small stem) on the 40 digits of the split file,
    /// 1 step of batch 8 at 8x8, plus `extra`.
    func finetune(_ extra: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try Fixtures.runBissl(["finetune", "--random-init", "--arch", "resnet18", "--width", "4", "--data", data,
                               "--batch-size", "8", "--image-size", "8", "--zoo", zoo] + extra)
    }

    /// stdout is the one summary line (`finetune entry <12 hex> (<name>): ...`), no bare id before it.
    func testStdoutIsTheSummaryLineOnly() throws {
        let r = try finetune(["--steps", "1", "--name", "ft1", "--augment", "flip+crop:0.5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertEqual(lines.count, 1, r.stdout)
        let line = try XCTUnwrap(lines.first)
        let zooHandle = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), readOnly: true)
        defer { try? zooHandle.close() }
        let id = try zooHandle.resolve("ft1")
        XCTAssertTrue(line.hasPrefix("finetune entry \(id.prefix(12)) (ft1): val top-1 "), String(line))
        // --augment is recorded in its canonical spelling
        XCTAssertEqual(try zooHandle.checkpoint(id).provenance.hyperparameters["augment"], .string("crop:0.5+flip"))
    }

    /// A bad --augment is one `error:` line naming the option, before any run directory exists.
    func testBadAugmentIsOneErrorLine() throws {
        for spec in ["crop:2", "rotate", "flip+flip", "crop:0"] {
            let r = try finetune(["--steps", "1", "--augment", spec])
            XCTAssertNotEqual(r.status, 0, spec)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains("--augment '\(spec)'"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: zoo + "/runs"))
    }

    /// Every key of the run config (run.json) and of the entry's hyperparameters, nested trial records
    /// included, is camelCase: no `_` in any key; the settings given are under their camelCase names.
    func testRecordedKeysAreCamelCase() throws {
        let r = try finetune(["--steps", "1", "--checkpoint-every", "5", "--name", "ft2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let runs = try FileManager.default.contentsOfDirectory(atPath: zoo + "/runs").filter { $0.hasPrefix("finetune-") }
        XCTAssertEqual(runs.count, 1)
        let runJSON = try Data(contentsOf: URL(fileURLWithPath: "\(zoo)/runs/\(runs[0])/run.json"))
        let record = try XCTUnwrap(JSONSerialization.jsonObject(with: runJSON) as? [String: Any])
        let config = try XCTUnwrap(record["config"] as? [String: Any])
        XCTAssertEqual(config.keys.filter { $0.contains("_") }, [], "run.json config keys")
        XCTAssertEqual(config["imageSize"] as? Int, 8)
        XCTAssertEqual(config["batchSize"] as? Int, 8)
        XCTAssertEqual(config["checkpointEvery"] as? Int, 5)
        XCTAssertEqual(config["randomInit"] as? Bool, true)

        let zooHandle = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), readOnly: true)
        defer { try? zooHandle.close() }
        let h = try zooHandle.checkpoint(zooHandle.resolve("ft2")).provenance.hyperparameters
        func keys(_ v: JSONValue) -> [String] {
            switch v {
            case .object(let o): return o.keys + o.values.flatMap(keys)
            case .array(let a): return a.flatMap(keys)
            default: return []
            }
        }
        XCTAssertEqual(keys(.object(h)).filter { $0.contains("_") }, [], "hyperparameter keys")
        XCTAssertEqual(h["imageSize"], .int(8))
        XCTAssertEqual(h["batchSize"], .int(8))
        XCTAssertEqual(h["stepsPerTrial"], .int(1))
        XCTAssertEqual(h["chosenTrial"], .int(0))
        XCTAssertEqual(h["chosenLR"], .double(0.1), "the default --lr")
        XCTAssertEqual(h["augment"], .string("crop:0.08+flip"), "the default --augment")
        XCTAssertNotNil(h["lineageNote"])
        guard case .array(let trials)? = h["trials"], case .object(let trial)? = trials.first else { return XCTFail("no trial record") }
        XCTAssertEqual(Set(trial.keys), ["trial", "lr", "wd", "top1", "bestTop1", "bestStep", "valTop1"])
    }

    /// A run counted in steps records what it did: `steps` and no `epochs` (it never counted them), and
    /// where its best validation came as `best_step` (no `best_epoch`), in the trial records too; `show`
    /// and the card print the same fields. A run counted in epochs keeps `epochs` and `best_epoch`.
    /// 36 training images (every 10th of 40 held out), batch 8: 5 steps an epoch, so `--steps 7`
    /// validates after steps 5 and 7.
    func testStepsRunRecordsStepsAndNoEpochFields() throws {
        let r = try finetune(["--steps", "7", "--keep", "best", "--name", "by-steps"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let zooHandle = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), readOnly: true)
        let p = try zooHandle.checkpoint(zooHandle.resolve("by-steps")).provenance
        XCTAssertNil(p.hyperparameters["epochs"], "--steps run: no epochs recorded")
        XCTAssertEqual(p.hyperparameters["steps"], .int(7))
        XCTAssertNil(p.metrics["best_epoch"])
        guard case .array(let trials)? = p.hyperparameters["trials"], case .object(let trial)? = trials.first,
              case .array(let val)? = trial["valTop1"] else { return XCTFail("no trial record") }
        XCTAssertNil(trial["bestEpoch"])
        XCTAssertEqual(val.count, 2, "validated after steps 5 and 7")
        let values = val.compactMap(\.doubleValue)   // whole percentages are recorded as integers
        XCTAssertEqual(values.count, 2)
        let expected = [5, 7][values.firstIndex(of: try XCTUnwrap(values.max()))!]
        XCTAssertEqual(p.metrics["best_step"], Double(expected))
        XCTAssertEqual(trial["bestStep"], .int(Int64(expected)))
        XCTAssertTrue(r.stdout.contains("after step \(expected)),"), r.stdout)

        let show = try Fixtures.runBissl(["show", "by-steps", "--zoo", zoo])
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("best_step"), show.stdout)
        XCTAssertFalse(show.stdout.contains("best_epoch") || show.stdout.contains("  epochs ="), show.stdout)
        let card = try Fixtures.runBissl(["card", "by-steps", "--zoo", zoo])
        XCTAssertEqual(card.status, 0, card.stderr)
        XCTAssertTrue(card.stdout.contains("`best_step`"), card.stdout)
        XCTAssertFalse(card.stdout.contains("best_epoch") || card.stdout.contains("epoch of"), card.stdout)
        try zooHandle.close()

        let e = try finetune(["--epochs", "1", "--name", "by-epochs"])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stdout.contains("after epoch 1),"), e.stdout)
        let again = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), readOnly: true)
        defer { try? again.close() }
        let q = try again.checkpoint(again.resolve("by-epochs")).provenance
        XCTAssertEqual(q.hyperparameters["epochs"], .int(1))
        XCTAssertEqual(q.metrics["best_epoch"], 1)
        XCTAssertNil(q.metrics["best_step"])
    }

    /// An entry recorded before camelCase keys (`image_size` 12) is evaluated at 12x12 by default.
    func testEvalReadsTheOldImageSizeKey() throws {
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small",
                                heads: ["classifier": .init(kind: "linear", dims: [32, 10])])
        let p = Provenance(stage: "finetune", method: "finetune", hyperparameters: ["image_size": .int(12), "batch_size": .int(8)])
        let zooHandle = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), create: true)
        _ = try zooHandle.add(Network(architecture: arch, seed: 1).checkpoint(provenance: p), name: "old")
        try zooHandle.close()
        let r = try Fixtures.runBissl(["eval", "old", "--data", data, "--json", "--zoo", zoo])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["imageSize"] as? Int, 12, "the recorded image_size, not the data's 8")
    }

    /// A finetune run created before camelCase keys (its run.json config as the old command wrote it:
    /// `random_init`, `batch_size`, `image_size`) resumes and records its settings under the new keys.
    func testResumeReadsAnOldSnakeCaseRunConfig() throws {
        let zooHandle = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), create: true)
        let old: [String: JSONValue] = [
            "random_init": .bool(true), "arch": .string("resnet18"), "width": .int(4), "stem": .string("small"),
            "data": .string(data), "holdout": .string("every 10th image"), "epochs": .int(10), "steps": .int(1),
            "batch_size": .int(8), "lr": .double(0.05), "wd": .double(0.001), "momentum": .double(0.9), "search": .int(0),
            "image_size": .int(8), "seed": .int(0), "name": .string("resumed")]
        let id = try Run.create(zoo: zooHandle, kind: "finetune", config: old, commandLine: ["bissl", "finetune"], totalSteps: 1,
                                progress: ProgressReporter(total: 1, mode: .none, write: { _ in }, now: { 0 })).id
        try zooHandle.close()
        let r = try Fixtures.runBissl(["finetune", "--resume", id, "--zoo", zoo])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("finetune entry "), r.stdout)
        let again = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), readOnly: true)
        defer { try? again.close() }
        let h = try again.checkpoint(again.resolve("resumed")).provenance.hyperparameters
        XCTAssertEqual(h["batchSize"], .int(8))
        XCTAssertEqual(h["imageSize"], .int(8))
        XCTAssertEqual(h["chosenLR"], .double(0.05))
        XCTAssertEqual(h["stepsPerTrial"], .int(1))
        XCTAssertNil(h["epochs"], "the old config's default epochs: not what a --steps run did")
    }
}
