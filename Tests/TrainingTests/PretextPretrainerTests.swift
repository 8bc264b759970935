import Checkpoint
import Datasets
import Engine
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// The pretraining loop on real data (the 8x8 digits, 20 images: 2 batches of 8 per epoch), ResNet-18
/// width 4, small stem: resume is bit-exact, provenance says how the entry was made, options are checked.
final class PretextPretrainerTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("pretrainer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        // 20 images in a fixed order
        let split = (0..<20).map { String($0 * 37) }.joined(separator: "\n")
        try split.write(to: tmp.appendingPathComponent("split.txt"), atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    var dataURI: String {
        let repo = Fixtures.repository
        return "h5:\(repo.path)/data/digits/digits.h5#split=\(tmp.path)/split.txt"
    }

    func zoo(_ name: String) throws -> Zoo { try Zoo.open(ZooLayout(root: tmp.appendingPathComponent(name)), create: true) }

    func options(_ method: PretextObjective.Method, steps: Int = 7) -> PretrainOptions {
        var o = PretrainOptions(method: method, data: dataURI)
        o.arch = "resnet18"; o.width = 4; o.batchSize = 8; o.steps = steps; o.seed = 3; o.checkpointEvery = 3
        o.lr = 2.0
        return o
    }

    /// K = 7 steps uninterrupted vs. stopped after step 5 (last saved state: step 4, the end of epoch 2),
    /// the objects dropped, the run reopened with `PretrainJob.resume`: identical parameters, BN buffers,
    /// BYOL target and per-step losses.
    func checkResume(_ method: PretextObjective.Method) throws {
        let zooA = try zoo("a-\(method)")
        let startedA = try PretrainJob.start(zoo: zooA, options: options(method), commandLine: ["test"])
        let (runA, entryA) = (startedA.run, startedA.entry)
        let lossesA = runA.history("loss").map(\.value)
        XCTAssertEqual(lossesA.count, 7)

        let zooB = try zoo("b-\(method)")
        var runId = ""
        do {
            let dataset = try ImageDataset(parsing: dataURI)
            let config = try PretrainConfig.resolve(options(method), dataset: dataset, fingerprint: try dataset.fingerprint())
            let trainer = try Pretrainer(config: config, dataset: dataset)
            let run = try Run.create(zoo: zooB, kind: "pretrain", config: config.json, commandLine: ["test"], totalSteps: config.steps)
            runId = run.id
            try trainer.train(run: run, stopAfter: 5)
            XCTAssertEqual(trainer.step, 5)
            XCTAssertEqual(try run.loadState()?.step, 4, "saves at epoch ends and every 3 steps: 2, 3, 4")
        }  // trainer and run dropped here: the "interruption"
        XCTAssertTrue(try zooB.list().isEmpty, "an interrupted run adds no entry")
        let resumedB = try PretrainJob.resume(zoo: zooB, id: runId, commandLine: ["test", "--resume"])
        let (runB, entryB) = (resumedB.run, resumedB.entry)
        XCTAssertEqual(runB.history("loss").map(\.value), lossesA, "per-step losses, each step logged once")
        let a = try zooA.checkpoint(entryA.id), b = try zooB.checkpoint(entryB.id)
        XCTAssertTrue(a.components == b.components, "parameters and BN buffers after resume differ")
        XCTAssertEqual(entryA.id, entryB.id, "same content id")
        XCTAssertFalse(FileManager.default.fileExists(atPath: runA.stateURL.path), "a completed run drops its resumable state")
        // The final states agree too (for BYOL this includes the target, which is not in the entry):
        // the same two runs again, kept open before finish.
        func finalState(_ zoo: Zoo, stopAfter: Int?) throws -> TrainingState {
            let dataset = try ImageDataset(parsing: dataURI)
            let config = try PretrainConfig.resolve(options(method), dataset: dataset, fingerprint: try dataset.fingerprint())
            var id = ""
            if let stopAfter {
                let trainer = try Pretrainer(config: config, dataset: dataset)
                let run = try Run.create(zoo: zoo, kind: "pretrain", config: config.json, commandLine: ["test"], totalSteps: config.steps)
                id = run.id
                try trainer.train(run: run, stopAfter: stopAfter)
            }
            let trainer = try Pretrainer(config: config, dataset: dataset)
            let run = try stopAfter == nil
                ? Run.create(zoo: zoo, kind: "pretrain", config: config.json, commandLine: ["test"], totalSteps: config.steps)
                : Run.open(zoo: zoo, id: id, expectedKind: "pretrain", commandLine: ["test", "--resume"])
            if let state = try run.loadState() { try trainer.restoreState(state) }
            try trainer.train(run: run)
            return trainer.captureState()
        }
        let stateA = try finalState(try zoo("c-\(method)"), stopAfter: nil), stateB = try finalState(try zoo("d-\(method)"), stopAfter: 5)
        XCTAssertEqual(stateA.step, 7)
        XCTAssertTrue(stateA.arrays == stateB.arrays, "saved arrays differ")
        XCTAssertEqual(stateA.integers, stateB.integers)
        XCTAssertEqual(stateA.arrays.keys.contains { $0.hasPrefix("target/") }, method == .byol)
    }

    func testSimCLRResumeIsBitExact() throws { try checkResume(.simclr) }

    func testBYOLResumeIsBitExact() throws { try checkResume(.byol) }

    /// The entry says how it was made: stage, method, components, parent (`--from`), dataset with its
    /// fingerprint, every hyperparameter, seed, final loss and the per-step history.
    func testProvenanceOfAContinuedBYOLEntry() throws {
        let zoo = try zoo("prov")
        var first = options(.byol, steps: 2)
        first.name = "byol-a"
        let a = try PretrainJob.start(zoo: zoo, options: first, commandLine: ["bissl", "pretrain", "first"]).entry
        var second = options(.byol, steps: 3)
        second.from = "byol-a"
        second.lr = nil
        let started = try PretrainJob.start(zoo: zoo, options: second, commandLine: ["bissl", "pretrain", "second"])
        let (run, b) = (started.run, started.entry)
        let entry = try zoo.checkpoint(b.id)
        let p = entry.provenance
        XCTAssertEqual(p.stage, "pretext")
        XCTAssertEqual(p.method, "byol")
        XCTAssertEqual(Array(entry.components.keys).sorted(), ["backbone", "predictor", "projector"])
        XCTAssertEqual(entry.architecture?.heads["projector"]?.dims, [32, 32, 32, 32], "d = min(256, F) with F = 32")
        XCTAssertEqual(entry.architecture?.heads["predictor"]?.dims, [32, 32, 32, 32])
        XCTAssertEqual(p.parents, [Provenance.Parent(id: a.id, relation: "pretrained-from", note: "pretraining continued from this entry (--from)")])
        let dataset = try ImageDataset(parsing: dataURI)
        XCTAssertEqual(p.datasets, [Provenance.Dataset(role: "pretext", uri: dataURI, fingerprint: try dataset.fingerprint())])
        XCTAssertEqual(p.seeds, ["seed": 3])
        XCTAssertEqual(p.commandLine, ["bissl", "pretrain", "second"])
        let h = p.hyperparameters
        XCTAssertEqual(h["lr"], .double(4.8), "the method's default (docs/bissl.md), no batch scaling")
        XCTAssertEqual(h["weightDecay"], .double(1e-6))
        XCTAssertEqual(h["optimizer"], .string("lars"))
        XCTAssertEqual(h["emaDecay"], .double(0.9995))
        XCTAssertEqual(h["batchSize"], .int(8))
        XCTAssertEqual(h["steps"], .int(3))
        XCTAssertEqual(h["imageSize"], .int(8), "8x8 digits: the image side rounded up to a multiple of 8")
        XCTAssertNil(h["image_size"], "one spelling of each key: camelCase")
        XCTAssertEqual(h["stem"], .string("small"))
        XCTAssertEqual(h["arch"], .string("resnet18"))
        XCTAssertEqual(h["pixelScale"], .string("unit"))
        XCTAssertEqual(h["warmupSteps"], .int(0), "10% of 3 steps")
        XCTAssertEqual(h["from"], .string(a.id))
        let losses = run.history("loss").map(\.value)
        XCTAssertEqual(p.metricHistory["loss"], losses)
        XCTAssertEqual(losses.count, 3)
        XCTAssertEqual(p.metrics["pretext_loss"], losses.last)
        XCTAssertNotNil(p.metrics["durationSeconds"])
        XCTAssertNotNil(p.startedAt)
        XCTAssertNotNil(p.endedAt)
        // the lr actually used per step: the first at the base lr (the reference implementation's scheduler), no warmup, cosine after
        let lrs = run.history("lr").map(\.value)
        XCTAssertEqual(lrs.count, 3)
        XCTAssertEqual(lrs[0], 4.8, accuracy: 1e-6)
        let cosine = { (s: Double) in 4.8 * (1 + cos(Double.pi * s / 3)) / 2 + 0.0048 * (1 - (1 + cos(Double.pi * s / 3)) / 2) }
        XCTAssertEqual(lrs[1], cosine(1), accuracy: 1e-5)
        XCTAssertEqual(lrs[2], cosine(2), accuracy: 1e-5)
        // the continued run started from the parent's weights: its BN counters went on from 2 to 5
        XCTAssertEqual(entry.components["backbone"]?["bn1.num_batches_tracked"], Tensor(int64: 5))
        // and its heads are the parent's (kept, not re-initialised): their BN counters went on too
        XCTAssertEqual(entry.components["projector"]?["1.num_batches_tracked"], Tensor(int64: 5))
        XCTAssertEqual(entry.components["predictor"]?["1.num_batches_tracked"], Tensor(int64: 5))
    }

    /// The BYOL target is not among the optimised parameters and gets no gradient in a training step.
    func testBYOLTargetIsExcludedFromGradients() throws {
        let dataset = try ImageDataset(parsing: dataURI)
        let config = try PretrainConfig.resolve(options(.byol), dataset: dataset, fingerprint: "x")
        let trainer = try Pretrainer(config: config, dataset: dataset)
        let target = trainer.objective.targetParameters
        XCTAssertFalse(target.isEmpty)
        let online = Set(trainer.objective.parameters.map(ObjectIdentifier.init))
        XCTAssertTrue(target.allSatisfy { !online.contains(ObjectIdentifier($0)) })
        let before = target.map(\.value)
        let batch = try XCTUnwrap(try trainer.loader.epoch(0).nextBatch())
        try trainer.trainStep(batch)
        XCTAssertTrue(target.allSatisfy { $0.grad.allSatisfy { $0 == 0 } }, "the target received a gradient")
        // the target moved only by the EMA with the online parameters BEFORE the step, which were its copy:
        // t = 0.9995 t + 0.0005 t (float32)
        let d = Float(0.9995)
        XCTAssertTrue(zip(target, before).allSatisfy { $0.value == $1.map { d * $0 + (1 - d) * $0 } }, "target after EMA")
        XCTAssertFalse(zip(trainer.objective.backboneParameters, before).allSatisfy { $0.value == $1 }, "the online network moved")
    }

    func testBadOptionsAreOneLineErrors() throws {
        let dataset = try ImageDataset(parsing: dataURI)
        func message(_ edit: (inout PretrainOptions) -> Void) -> String {
            var o = options(.simclr)
            edit(&o)
            do {
                _ = try PretrainConfig.resolve(o, dataset: dataset, fingerprint: "x")
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(message { $0.arch = "resnet20" }.contains("'resnet20' is not an architecture name: expected resnet<depth>"))
        XCTAssertTrue(message { $0.epochs = 2 }.contains("not both"))
        XCTAssertTrue(message { $0.batchSize = 1 }.contains("at least 2"))
        XCTAssertTrue(message { $0.batchSize = 64 }.contains("exceeds the 20 images"))
        XCTAssertTrue(message { $0.optimizer = "adam" }.contains("lars or sgd"))
        XCTAssertTrue(message { $0.stem = "tiny" }.contains("imagenet or small"))
        XCTAssertTrue(message { $0.lr = -1 }.contains("--lr must be positive"))
        for m in [message { $0.arch = "resnet20" }, message { $0.optimizer = "adam" }] {
            XCTAssertFalse(m.contains("\n"), m)
        }
        XCTAssertEqual(message { $0.arch = "ResNet34" }, "no error")
    }
}
