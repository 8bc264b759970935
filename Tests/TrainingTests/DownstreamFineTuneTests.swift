import Checkpoint
import Collections
import Datasets
import Engine
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// Fine-tuning: the start network and its lineage, resume bit-exactness, the search.
final class DownstreamFineTuneTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ft-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    static func quiet(_ total: Int) -> ProgressReporter { ProgressReporter(total: total, mode: .none, write: { _ in }, now: { 0 }) }

    /// ResNet-18 width 4, small stem (32 features), with a `[1000, 32]` classifier and a projector, as an entry.
    static func entryWithImageNetHead() throws -> Network {
        var a = try ResNet(depth: 18, width: 4, stem: "small").architecture
        a.heads = ["classifier": .init(kind: "linear", dims: [32, 1000]), "projector": .init(kind: "mlp", dims: [32, 16, 8])]
        return try Network(architecture: a, seed: 5)
    }

    func testC17ClassifierWithOtherClassCountIsReinitialisedAndSaysSo() throws {
        let entry = try Self.entryWithImageNetHead()
        let backboneBefore = entry.backbone.stateDict()
        let id = String(repeating: "ab", count: 32)
        let start = FineTuneStart(entry: entry, entryId: id, classes: 10, seed: 3)
        XCTAssertEqual(start.classifier, "reinitialised")
        XCTAssertEqual(start.network.heads["classifier"]?.record.dims, [32, 10])
        XCTAssertNil(start.network.heads["projector"], "only backbone + classifier are fine-tuned")
        XCTAssertTrue(start.note.hasPrefix("backbone from abababababab, classifier re-initialised 1000 -> 10"), start.note)
        XCTAssertTrue(start.note.contains("projector dropped"), start.note)
        XCTAssertTrue(try XCTUnwrap(start.warning).contains("classifier re-initialised 1000 -> 10"))
        XCTAssertEqual(start.network.backbone.stateDict(), backboneBefore, "the backbone is the entry's")
        // The new head is PyTorch's default init: U(-1/sqrt(32), 1/sqrt(32)) for weight and bias, from SeededRNG(3).
        let sd = start.network.heads["classifier"]!.stateDict()
        let w = sd["fc.weight"]!.floats(), b = sd["fc.bias"]!.floats()
        XCTAssertEqual(w.count, 320); XCTAssertEqual(b.count, 10)
        let bound = 1 / Float(32).squareRoot()
        XCTAssertTrue((w + b).allSatisfy { abs($0) <= bound })
        var rng = SeededRNG(seed: 3)
        XCTAssertEqual(w[0], rng.uniform(-bound, bound))
    }

    func testMatchingClassifierIsKeptAndMissingOneIsNew() throws {
        var a = try ResNet(depth: 18, width: 4, stem: "small").architecture
        a.heads = ["classifier": .init(kind: "linear", dims: [32, 10])]
        let entry = try Network(architecture: a, seed: 9)
        let head = entry.heads["classifier"]!.stateDict()
        let kept = FineTuneStart(entry: entry, entryId: "0123456789abcdef", classes: 10, seed: 1)
        XCTAssertEqual(kept.classifier, "kept")
        XCTAssertNil(kept.warning)
        XCTAssertEqual(kept.network.heads["classifier"]!.stateDict(), head)
        XCTAssertEqual(kept.note, "backbone and classifier (32 -> 10) from 0123456789ab")

        let bare = try Network(architecture: try ResNet(depth: 18, width: 4, stem: "small").architecture, seed: 9)
        let fresh = FineTuneStart(entry: bare, entryId: "0123456789abcdef", classes: 7, seed: 1)
        XCTAssertEqual(fresh.classifier, "new")
        XCTAssertNil(fresh.warning)
        XCTAssertEqual(fresh.note, "backbone from 0123456789ab, new classifier Linear(32, 7)")
        XCTAssertEqual(fresh.network.heads["classifier"]?.record.dims, [32, 7])
    }

    func testRandomInitArchitectureParsing() throws {
        let a = try FineTuneStart.architecture(arch: "resnet18", width: 8, stem: "small")
        XCTAssertEqual(a.label, "resnet18-w8-small")
        XCTAssertThrowsError(try FineTuneStart.architecture(arch: "resnet19", width: 8, stem: "small"))
        XCTAssertThrowsError(try FineTuneStart.architecture(arch: "resnet18", width: 8, stem: "tiny"))
        let s = try FineTuneStart(randomArchitecture: a, classes: 10, seed: 4)
        XCTAssertEqual(s.classifier, "random-init")
        XCTAssertEqual(s.network.architecture.heads["classifier"]?.dims, [64, 10])
    }

    func testSearchDrawsAreSeededLogUniformAndInRange() {
        let a = (0..<200).map { FineTuneSettings.searchDraw(seed: 7, trial: $0) }
        XCTAssertEqual(a.map(\.lr), (0..<200).map { FineTuneSettings.searchDraw(seed: 7, trial: $0).lr })
        XCTAssertNotEqual(a.map(\.lr), (0..<200).map { FineTuneSettings.searchDraw(seed: 8, trial: $0).lr })
        XCTAssertTrue(a.allSatisfy { (1e-4...1).contains($0.lr) && (1e-5...1e-2).contains($0.weightDecay) })
        // log-uniform: about half of the draws below the geometric midpoint (1e-2 for lr)
        let below = a.filter { $0.lr < 1e-2 }.count
        XCTAssertTrue((70...130).contains(below), "\(below) of 200 below 1e-2")
        XCTAssertEqual(FineTuneSettings.defaultBatchSize(trainCount: 60000), 256)
        XCTAssertEqual(FineTuneSettings.defaultBatchSize(trainCount: 1617), 128)
        XCTAssertEqual(FineTuneSettings.defaultBatchSize(trainCount: 20), 8)
    }

    // MARK: - runs

    func tuner(_ zoo: Zoo, config: FineTuneSettings, start: Network, runId: String? = nil) throws -> FineTuner {
        let train = try DownstreamFeaturesTests.digits(first: 20)
        let val = try DownstreamFeaturesTests.digits(first: 10, offset: 100)
        let steps = FineTuner.stepsPerTrial(config, trainCount: train.count) * max(config.search, 1)
        let run = try runId.map { try Run.open(zoo: zoo, id: $0, expectedKind: "finetune", commandLine: ["test", "--resume"], progress: Self.quiet(steps)) }
            ?? Run.create(zoo: zoo, kind: "finetune", config: [:], commandLine: ["test"], totalSteps: steps, progress: Self.quiet(steps))
        return try FineTuner(config: config, start: start, train: train, val: val, run: run)
    }

    func startNetwork() throws -> FineTuneStart {
        FineTuneStart(entry: try Self.entryWithImageNetHead(), entryId: String(repeating: "cd", count: 32), classes: 10, seed: 2)
    }

    func assertSameWeights(_ a: Network, _ b: Network, file: StaticString = #filePath, line: UInt = #line) {
        let ca = a.components(), cb = b.components()
        XCTAssertEqual(Array(ca.keys), Array(cb.keys), file: file, line: line)
        for (name, sd) in ca {
            for (k, t) in sd { XCTAssertEqual(cb[name]?[k], t, "\(name)/\(k) differs", file: file, line: line) }
        }
    }

    func testResumeIsBitExact() throws {
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        // 20 images, batch 8: 3 batches per epoch, 2 epochs = 6 steps; interrupted mid-epoch 2 (step 4).
        let config = FineTuneSettings(epochs: 2, batchSize: 8, lr: 0.05, weightDecay: 1e-3, imageSize: 8, seed: 3)
        let a = try tuner(zoo, config: config, start: try startNetwork().network)
        XCTAssertEqual(a.batchesPerEpoch, 3)
        let full = try XCTUnwrap(try a.runAll())
        XCTAssertEqual(full.trials.count, 1)
        XCTAssertEqual(full.trials[0].valTop1.count, 2, "validation after every epoch")
        XCTAssertEqual(a.run.history("loss").count, 6)
        XCTAssertNotEqual(full.network.backbone.stateDict(), try startNetwork().network.backbone.stateDict(), "training moved the weights")

        var runId = ""
        do {
            let b = try tuner(zoo, config: config, start: try startNetwork().network)
            runId = b.run.id
            b.shouldStop = { $0 == 4 }
            XCTAssertNil(try b.runAll(), "stopped")
        }
        let c = try tuner(zoo, config: config, start: try startNetwork().network, runId: runId)
        let resumed = try XCTUnwrap(try c.runAll())
        assertSameWeights(resumed.network, full.network)
        XCTAssertEqual(resumed.trials, full.trials)
        XCTAssertEqual(c.run.history("loss").map(\.value), a.run.history("loss").map(\.value))
    }

    func testKeepBestDeliversTheBestValidationEpochAndResumes() throws {
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        // 20 images, batch 8: 3 batches per epoch, 4 epochs = 12 steps.
        let best = FineTuneSettings(epochs: 4, batchSize: 8, lr: 0.05, weightDecay: 1e-3, imageSize: 8, seed: 5, keep: .best)
        let a = try tuner(zoo, config: best, start: try startNetwork().network)
        let full = try XCTUnwrap(try a.runAll())
        let trial = full.trials[0]
        XCTAssertEqual(trial.valTop1.count, 4)
        XCTAssertEqual(trial.bestTop1, trial.valTop1.max())
        XCTAssertEqual(trial.bestEpoch, trial.valTop1.firstIndex(of: trial.valTop1.max()!)! + 1, "the earliest best epoch")
        XCTAssertEqual(trial.top1, trial.bestTop1, "the trial delivers its best epoch")
        XCTAssertEqual(try a.validate(full.network), trial.bestTop1, "the delivered weights score the best epoch's top-1")
        XCTAssertEqual(a.provenance(outcome: full, start: try startNetwork(), parentId: nil, datasets: []).hyperparameters["keep"], .string("best"))

        // The same run with --keep last, stopped right after the best epoch: its saved network is the delivered one.
        var last = best; last.keep = .last
        let b = try tuner(zoo, config: last, start: try startNetwork().network)
        b.shouldStop = { $0 == trial.bestEpoch * 3 }
        XCTAssertNil(try b.runAll())
        let atBest = try b.freshNetwork()
        try XCTUnwrap(try b.run.loadState()).restore(atBest)
        assertSameWeights(atBest, full.network)

        // Stopped mid-epoch 3 and resumed: the same trial record and weights.
        var runId = ""
        do {
            let c = try tuner(zoo, config: best, start: try startNetwork().network)
            runId = c.run.id
            c.shouldStop = { $0 == 7 }
            XCTAssertNil(try c.runAll())
        }
        let resumed = try XCTUnwrap(try tuner(zoo, config: best, start: try startNetwork().network, runId: runId).runAll())
        XCTAssertEqual(resumed.trials, full.trials)
        assertSameWeights(resumed.network, full.network)
    }

    func testSearchRecordsEveryTrialAndResumesAcrossTrials() throws {
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        let config = FineTuneSettings(steps: 3, batchSize: 8, imageSize: 8, seed: 1, search: 3)
        let a = try tuner(zoo, config: config, start: try startNetwork().network)
        let full = try XCTUnwrap(try a.runAll())
        XCTAssertEqual(full.trials.map(\.index), [0, 1, 2])
        for t in full.trials {
            let draw = FineTuneSettings.searchDraw(seed: 1, trial: t.index)
            XCTAssertEqual(t.lr, draw.lr); XCTAssertEqual(t.weightDecay, draw.weightDecay)
        }
        let best = full.trials.map { $0.top1 ?? -1 }.max()!
        XCTAssertEqual(full.chosen, full.trials.firstIndex { $0.top1 == best })

        var runId = ""
        do {
            let b = try tuner(zoo, config: config, start: try startNetwork().network)
            runId = b.run.id
            b.shouldStop = { $0 == 5 }   // inside trial 1
            XCTAssertNil(try b.runAll())
        }
        let c = try tuner(zoo, config: config, start: try startNetwork().network, runId: runId)
        let resumed = try XCTUnwrap(try c.runAll())
        XCTAssertEqual(resumed.trials, full.trials)
        XCTAssertEqual(resumed.chosen, full.chosen)
        assertSameWeights(resumed.network, full.network)

        // The entry: provenance with lineage note (C17), every trial, per-epoch history.
        let start = try startNetwork()
        let p = c.provenance(outcome: resumed, start: start, parentId: String(repeating: "cd", count: 32), datasets: [])
        XCTAssertEqual(p.stage, "finetune")
        XCTAssertEqual(p.parents.first?.relation, "finetuned-from")
        XCTAssertTrue(p.parents.first?.note?.contains("classifier re-initialised 1000 -> 10") ?? false)
        XCTAssertTrue(p.warnings.contains { $0.contains("re-initialised 1000 -> 10") })
        guard case .array(let trials)? = p.hyperparameters["trials"] else { return XCTFail("no trials in hyperparameters") }
        XCTAssertEqual(trials.count, 3)
        XCTAssertEqual(p.metrics["val_top1"], resumed.trials[resumed.chosen].top1)
        XCTAssertEqual(p.metricHistory["val_top1"], resumed.trials[resumed.chosen].valTop1)
        XCTAssertEqual(p.metricHistory["loss"]?.count, 3)
        let entry = try c.run.finish(resumed.network.checkpoint(provenance: p), name: "ft-test")
        let stored = try zoo.checkpoint(entry.id)
        XCTAssertEqual(Set(stored.components.keys), ["backbone", "classifier"])
        XCTAssertEqual(stored.provenance.parents.first?.note, start.note)
    }
}
