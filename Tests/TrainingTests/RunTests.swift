import Checkpoint
import Engine
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// A toy training job for the run tests: ResNet-18 width 4 (small stem) on 8x8 inputs with a
/// classifier (cross-entropy) and an MLP projector with BatchNorm1d (loss 0.5 * mean_n ||z_n||^2),
/// SGD with momentum and weight decay, a cosine schedule. Inputs and labels of step `s` derive from
/// `s` alone (the project's resume rule), so a resumed job sees the same batches.
final class ToyJob {
    static let architecture = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small",
                                           heads: ["projector": .init(kind: "mlp", dims: [32, 16, 8]),
                                                   "classifier": .init(kind: "linear", dims: [32, 10])])
    let net: Network
    let sgd: SGD
    var schedule: CosineSchedule
    let parameters: [Parameter]

    init(seed: UInt64, totalSteps: Int) throws {
        net = try Network(architecture: Self.architecture, seed: seed)
        parameters = net.backbone.parameters + net.heads.values.flatMap(\.parameters)
        sgd = SGD(parameters: parameters, lr: 0.05, momentum: 0.9, weightDecay: 1e-4)
        schedule = CosineSchedule(base: 0.05, warmup: min(2, totalSteps - 1), total: totalSteps)
    }

    /// Batch of step `s`: 4 images 3x8x8 with values from a hash of (s, index), labels (7s + i) % 10.
    static func batch(_ s: Int) -> (Tensor4, [Int]) {
        var x = Tensor4(n: 4, c: 3, h: 8, w: 8)
        for i in x.data.indices {
            var h = UInt64(s) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31; h &*= 0x94D0_49BB_1331_11EB; h ^= h >> 29
            x.data[i] = Float(h % 2001) / 1000 - 1
        }
        return (x, (0..<4).map { (7 * s + $0) % 10 })
    }

    /// One optimisation step (step number `s`, 1-based); returns the classifier loss.
    @discardableResult
    func step(_ s: Int) -> Float {
        let (x, labels) = Self.batch(s)
        parameters.zeroGrad()
        let f = net.backbone.forward(x, mode: .train)
        let classifier = net.heads["classifier"]!, projector = net.heads["projector"]!
        let (loss, g) = CrossEntropy.forward(logits: classifier.forward(f, mode: .train), labels: labels)
        var dF = classifier.backward(g)
        let z = projector.forward(f, mode: .train)
        let dz = Matrix(rows: z.rows, cols: z.cols, data: z.data.map { $0 / Float(z.rows) })
        let dF2 = projector.backward(dz)
        for i in dF.data.indices { dF.data[i] += dF2.data[i] }
        net.backbone.backward(dF)
        sgd.step()
        sgd.lr = schedule.step()
        return loss
    }

    func capture(step: Int) -> TrainingState {
        var state = TrainingState(step: step)
        state.capture(net)
        state.capture(sgd)
        state.capture(schedule)
        return state
    }

    func restore(_ state: TrainingState) throws {
        try state.restore(net)
        try state.restore(sgd)
        try state.restore(&schedule)
    }
}

enum RunTestSupport {
    static func tempZoo(_ test: XCTestCase) throws -> Zoo {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-run-\(UUID().uuidString)")
        test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return try Zoo.open(ZooLayout(root: dir), create: true)
    }

    /// Progress that prints nothing (tests).
    static func quiet(_ total: Int) -> ProgressReporter { ProgressReporter(total: total, mode: .none, write: { _ in }, now: { 0 }) }
}

final class RunTests: XCTestCase {
    let total = 6

    /// Interrupt after saving the state at step 3 (two more steps logged, then the Run dropped),
    /// resume, finish: parameters, BN buffers and every logged loss equal an uninterrupted run's bit
    /// for bit, and log.jsonl holds steps 1...6 once each.
    func testInterruptAndResumeIsBitIdentical() throws {
        let reference = try ToyJob(seed: 11, totalSteps: total)
        var referenceLosses: [Float] = []
        for s in 1...total { referenceLosses.append(reference.step(s)) }

        let zoo = try RunTestSupport.tempZoo(self)
        var runID = ""
        do {
            let run = try Run.create(zoo: zoo, kind: "pretrain", config: ["lr": .double(0.05)], commandLine: ["bissl", "test"],
                                     totalSteps: total, progress: RunTestSupport.quiet(total))
            runID = run.id
            XCTAssertNil(try run.loadState())
            let job = try ToyJob(seed: 11, totalSteps: total)
            for s in 1...5 {
                run.log(step: s, phase: "train", ["loss": Double(job.step(s)), "lr": Double(job.sgd.lr)])
                if s == 3 { try run.saveState(job.capture(step: 3)) }
            }
            // Dropped here without finish: as after SIGKILL, steps 4 and 5 are in the log but not in the state.
        }
        var shown = ""
        let progress = ProgressReporter(total: total, mode: .plain, write: { shown += $0 }, now: { 0 })
        let run = try Run.open(zoo: zoo, id: runID, expectedKind: "pretrain", commandLine: ["bissl", "test", "--resume", runID], progress: progress)
        XCTAssertEqual(run.rewoundLogLines, 2)
        XCTAssertEqual(shown, "resuming run \(runID) from step 3/6; 2 log lines after the saved state will be logged again\n")
        XCTAssertEqual(run.history("loss").map { $0.step }, [1, 2, 3])
        let state = try XCTUnwrap(try run.loadState())
        XCTAssertEqual(state.step, 3)
        let job = try ToyJob(seed: 999, totalSteps: total)   // different init: everything must come from the state
        try job.restore(state)
        for s in (state.step + 1)...total {
            run.log(step: s, phase: "train", ["loss": Double(job.step(s)), "lr": Double(job.sgd.lr)])
        }
        try run.saveState(job.capture(step: total))
        // log() feeds the progress: the first update (step 4) printed at once, the last at finish.
        run.progress.finish()
        let progressLines = shown.split(separator: "\n").dropFirst()
        XCTAssertEqual(progressLines.count, 2)
        XCTAssertTrue(progressLines.first!.hasPrefix("step 4/6 (66%) [train] loss "), "\(progressLines)")
        XCTAssertTrue(progressLines.last!.hasPrefix("step 6/6 (100%) [train] loss "), "\(progressLines)")

        XCTAssertEqual(job.net.components(), reference.net.components(), "parameters and BN buffers after resume")
        for (a, b) in zip(job.sgd.buffers!, reference.sgd.buffers!) { XCTAssertEqual(a, b) }
        XCTAssertEqual(job.schedule.counter, reference.schedule.counter)
        XCTAssertEqual(run.history("loss").map { $0.value }, referenceLosses.map(Double.init))
        let lines = try String(contentsOf: run.logURL, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.compactMap { RunLogEntry(jsonLine: $0)?.step }, Array(1...total))

        let record = try RunRecord.read(directory: run.directory)
        XCTAssertEqual(record.segments, 2)
        XCTAssertEqual(record.step, total)
        XCTAssertEqual(record.resumeCommandLines, [["bissl", "test", "--resume", runID]])
    }

    /// A last line cut by SIGKILL is dropped on reopen and removed from log.jsonl.
    func testTornLastLogLineIsDropped() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        var id = ""
        do {
            let run = try Run.create(zoo: zoo, kind: "finetune", config: [:], commandLine: ["x"], totalSteps: 4, progress: RunTestSupport.quiet(4))
            id = run.id
            run.log(step: 1, phase: "train", ["loss": 2.5])
            run.log(step: 2, phase: "train", ["loss": 2.25])
            try run.saveState(TrainingState(step: 2))
        }
        let log = try Run.resolve(zoo: zoo, id: id).appendingPathComponent("log.jsonl")
        let handle = try FileHandle(forWritingTo: log)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"step\":3,\"time\":0.5,\"pha".utf8))
        try handle.close()
        let run = try Run.open(zoo: zoo, id: id, expectedKind: "finetune", progress: RunTestSupport.quiet(4))
        XCTAssertEqual(run.droppedLogLines, 1)
        XCTAssertEqual(run.history("loss").map { $0.value }, [2.5, 2.25])
        run.log(step: 3, phase: "train", ["loss": 2.0])
        let text = try String(contentsOf: log, encoding: .utf8)
        XCTAssertEqual(text.split(separator: "\n").count, 3)
        XCTAssertTrue(text.hasSuffix("\"loss\":2.0}\n"), text)
        XCTAssertFalse(text.contains("\"pha\n") || text.contains("\"pha{"))
    }

    /// finish adds exactly one entry, marks run.json completed with its id; a second finish and a
    /// resume are refused; provenance carries the run's fields.
    func testFinishAddsOneEntryAndCompletes() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: ["batch_size": .int(4), "method": .string("simclr")],
                                 commandLine: ["bissl", "pretrain", "--method", "simclr"], totalSteps: 2, progress: RunTestSupport.quiet(2))
        let job = try ToyJob(seed: 3, totalSteps: 2)
        for s in 1...2 { run.log(step: s, phase: "train", ["loss": Double(job.step(s))]) }
        run.log(step: 2, phase: "eval", ["knn_top1": 0.25])
        try run.saveState(job.capture(step: 2))
        XCTAssertTrue(try zoo.list().isEmpty, "no entry before finish")
        let provenance = run.provenance(stage: "pretext", method: "simclr")
        XCTAssertEqual(provenance.stage, "pretext")
        XCTAssertEqual(provenance.method, "simclr")
        XCTAssertEqual(provenance.commandLine, ["bissl", "pretrain", "--method", "simclr"])
        var hyperparameters = provenance.hyperparameters
        let engine = hyperparameters.removeValue(forKey: "run.engine")
        XCTAssertEqual(hyperparameters, ["batch_size": .int(4), "method": .string("simclr")])
        guard case .object(let recorded)? = engine else { return XCTFail("no run.engine in the provenance") }
        XCTAssertEqual(recorded["blasKernel"], .string(BLAS.kernel.name), "the OpenBLAS kernel of this process is recorded")
        XCTAssertEqual(recorded["blasKernelChoice"], .string(BLAS.kernel.choice))
        XCTAssertEqual(recorded["cpu"], .string(CPUFeatures.current.brand))
        XCTAssertEqual(provenance.startedAt, run.runRecord.startedAt)
        XCTAssertTrue(ProvenanceCheck.violations(provenance).isEmpty, "\(ProvenanceCheck.violations(provenance))")
        XCTAssertNotNil(provenance.metrics["durationSeconds"])
        XCTAssertEqual(provenance.metricHistory["loss"], run.history("loss").map { $0.value })
        XCTAssertEqual(provenance.metricHistory["knn_top1"], [0.25])
        XCTAssertEqual(provenance.tool, Provenance.Tool(name: "bissl", version: bisslVersion))

        let result = try run.finish(job.net.checkpoint(provenance: provenance), name: "toy")
        XCTAssertTrue(result.added)
        XCTAssertEqual(try zoo.list().map(\.summary.id), [result.id])
        XCTAssertEqual(run.status, .completed)
        let record = try RunRecord.read(directory: run.directory)
        XCTAssertEqual(record.status, .completed)
        XCTAssertEqual(record.entryId, result.id)
        XCTAssertNotNil(record.endedAt)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.curvesURL.path))

        XCTAssertThrowsError(try run.finish(job.net.checkpoint(provenance: provenance), name: "toy2")) { error in
            XCTAssertTrue("\(error)".contains("already completed"), "\(error)")
        }
        XCTAssertEqual(try zoo.list().count, 1)
        run.fail(CheckpointError.invalid("an error after finish"))
        XCTAssertEqual(try RunRecord.read(directory: run.directory).status, .completed, "fail() after finish keeps completed")
        let id = run.id
        XCTAssertThrowsError(try Run.open(zoo: zoo, id: id, expectedKind: "pretrain", progress: RunTestSupport.quiet(2))) { error in
            XCTAssertTrue("\(error)".contains("is completed"), "\(error)")
            XCTAssertFalse("\(error)".contains("\n"))
        }
    }

    /// A failed zoo add leaves the run running and resumable, with no entry.
    func testDivergedRunMakesNoEntry() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["x"], totalSteps: 1, progress: RunTestSupport.quiet(1))
        let job = try ToyJob(seed: 1, totalSteps: 2)
        job.parameters[0].value[0] = .infinity
        let checkpoint = job.net.checkpoint(provenance: run.provenance(stage: "pretext", method: nil))
        XCTAssertThrowsError(try run.finish(checkpoint, name: nil)) { error in
            XCTAssertTrue("\(error)".contains("diverged: backbone \(job.parameters[0].name) holds 1 NaN or infinite values"), "\(error)")
        }
        XCTAssertTrue(try zoo.list().isEmpty, "no entry for a diverged run")
    }

    func testFailedFinishStaysResumable() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        var id = ""
        do {
            let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["x"], totalSteps: 1, progress: RunTestSupport.quiet(1))
            id = run.id
            run.log(step: 1, phase: "train", ["loss": 1])
            try run.saveState(TrainingState(step: 1))
            let job = try ToyJob(seed: 1, totalSteps: 2)
            let bad = job.net.checkpoint(provenance: Provenance(stage: "no-such-stage"))
            XCTAssertThrowsError(try run.finish(bad, name: nil))
            XCTAssertEqual(run.status, .running)
            XCTAssertTrue(try zoo.list().isEmpty)
        }
        let run = try Run.open(zoo: zoo, id: id, expectedKind: "pretrain", progress: RunTestSupport.quiet(1))
        XCTAssertEqual(try run.loadState()?.step, 1)
        XCTAssertEqual(run.history("loss").map { $0.value }, [1])
    }

    /// fail() records the one-line error; the run can be resumed.
    func testFailMarksRunFailed() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        var id = ""
        do {
            let run = try Run.create(zoo: zoo, kind: "align", config: [:], commandLine: ["x"], totalSteps: 3, progress: RunTestSupport.quiet(3))
            id = run.id
            // Not a OneLineError (those escape their line breaks): fail() keeps the first line.
            struct TwoLines: Error, CustomStringConvertible { var description: String { "loss is NaN at step 2\nsecond line" } }
            run.fail(TwoLines())
            let record = try RunRecord.read(directory: run.directory)
            XCTAssertEqual(record.status, .failed)
            XCTAssertEqual(record.error, "loss is NaN at step 2")
        }
        let run = try Run.open(zoo: zoo, id: id, expectedKind: "align", progress: RunTestSupport.quiet(3))
        XCTAssertEqual(run.status, .running)
        XCTAssertNil(run.runRecord.error)
    }

    /// Resuming with the wrong command (`bissl align --resume <finetune run>`) is refused before anything
    /// in the run directory changes: run.json (status, segments, commands), log.jsonl and the lock
    /// file are byte for byte as before, also for a failed run. The right kind resumes the failed run
    /// and its note shows the earlier error.
    func testOpenRefusesAnotherKindWithoutWriting() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        var id = ""
        var dir: URL!
        do {
            let run = try Run.create(zoo: zoo, kind: "finetune", config: [:], commandLine: ["x"], totalSteps: 4, progress: RunTestSupport.quiet(4))
            id = run.id; dir = run.directory
            run.log(step: 1, phase: "train", ["loss": 2])
            run.log(step: 2, phase: "train", ["loss": 1.5])   // after the saved state: open would rewind it
            try run.saveState(TrainingState(step: 1))
            run.fail(CheckpointError.invalid("disk full"))
        }
        func files() throws -> [String: Data] {
            var out: [String: Data] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
                out[name] = try Data(contentsOf: dir.appendingPathComponent(name))
            }
            return out
        }
        let before = try files()
        XCTAssertThrowsError(try Run.open(zoo: zoo, id: id, expectedKind: "align", commandLine: ["bissl", "align", "--resume", id],
                                          progress: RunTestSupport.quiet(4))) { error in
            XCTAssertEqual("\(error)", "run \(id) is a 'finetune' run, not 'align'; resume it with bissl finetune --resume \(id)")
        }
        XCTAssertEqual(try files(), before, "nothing written")
        XCTAssertEqual(try RunRecord.read(directory: dir).status, .failed)

        var shown = ""
        let progress = ProgressReporter(total: 4, mode: .plain, write: { shown += $0 }, now: { 0 })
        let run = try Run.open(zoo: zoo, id: id, expectedKind: "finetune", commandLine: ["bissl", "finetune", "--resume", id], progress: progress)
        XCTAssertEqual(run.status, .running)
        XCTAssertEqual(run.runRecord.segments, 2)
        XCTAssertEqual(run.runRecord.resumeCommandLines, [["bissl", "finetune", "--resume", id]])
        XCTAssertTrue(shown.contains("resuming failed run \(id) from step 1/4; it had failed with: disk full"), shown)
    }

    /// A name another entry took while the run trained does not lose the work: finish adds the entry
    /// without it, prints a warning and completes the run. An invalid name is treated the same way.
    /// Two runs with the same --name finishing at once: the other run's entry takes the name after this
    /// run found it free and before it adds its entry. The run still completes, unnamed, with the warning.
    func testFinishWhenTheNameIsTakenDuringTheAddAddsTheEntryUnnamed() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        var shown = ""
        let progress = ProgressReporter(total: 1, mode: .plain, write: { shown += $0 }, now: { 0 })
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["x"], totalSteps: 1, progress: progress)
        let job = try ToyJob(seed: 9, totalSteps: 2)
        try run.saveState(job.capture(step: 1))
        let other = try ToyJob(seed: 8, totalSteps: 2)
        var otherID = ""
        Run.beforeNamedAdd = {
            otherID = (try? zoo.add(other.net.checkpoint(provenance: Provenance(stage: "pretext")), name: "same").id) ?? ""
        }
        defer { Run.beforeNamedAdd = nil }
        let result = try run.finish(job.net.checkpoint(provenance: run.provenance(stage: "pretext", method: nil)), name: "same")
        XCTAssertFalse(otherID.isEmpty)
        XCTAssertTrue(result.added)
        XCTAssertNil(result.name)
        XCTAssertEqual(try zoo.resolve("same"), otherID, "the name stays with the run that added first")
        XCTAssertEqual(try zoo.list().count, 2)
        XCTAssertEqual(run.status, .completed)
        XCTAssertEqual(try RunRecord.read(directory: run.directory).entryId, result.id)
        XCTAssertTrue(shown.contains("warning: entry \(result.id.prefix(12)) added without the name 'same': 'same' is already the name of entry \(otherID.prefix(12)); name it with bissl tag \(result.id.prefix(12)) <label>"), shown)
    }

    func testFinishWithATakenNameAddsTheEntryUnnamed() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let other = try ToyJob(seed: 8, totalSteps: 2)
        let otherID = try zoo.add(other.net.checkpoint(provenance: Provenance(stage: "pretext")), name: "taken").id
        var shown = ""
        let progress = ProgressReporter(total: 1, mode: .plain, write: { shown += $0 }, now: { 0 })
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["x"], totalSteps: 1, progress: progress)
        let job = try ToyJob(seed: 9, totalSteps: 2)
        try run.saveState(job.capture(step: 1))
        let result = try run.finish(job.net.checkpoint(provenance: run.provenance(stage: "pretext", method: nil)), name: "taken")
        XCTAssertTrue(result.added)
        XCTAssertNil(result.name)
        XCTAssertEqual(try zoo.resolve("taken"), otherID, "the name stays with its owner")
        XCTAssertEqual(try zoo.list().count, 2)
        XCTAssertEqual(run.status, .completed)
        XCTAssertEqual(try RunRecord.read(directory: run.directory).entryId, result.id)
        XCTAssertTrue(shown.contains("warning: entry \(result.id.prefix(12)) added without the name 'taken': 'taken' is already the name of entry \(otherID.prefix(12))"), shown)

        let run2 = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["x"], totalSteps: 1, progress: RunTestSupport.quiet(1))
        let job2 = try ToyJob(seed: 10, totalSteps: 2)
        let result2 = try run2.finish(job2.net.checkpoint(provenance: Provenance(stage: "pretext")), name: "bad name")
        XCTAssertNil(result2.name)
        XCTAssertEqual(run2.status, .completed)
    }

    /// The provenance of a resumed run records how many segments it had and each resume's argv
    /// (under hyperparameters: the schema has no top-level field for it); an uninterrupted run's does not.
    func testProvenanceOfAResumedRunRecordsItsSegments() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        var id = ""
        do {
            let run = try Run.create(zoo: zoo, kind: "align", config: ["lr": .double(0.03)], commandLine: ["bissl", "align", "r"],
                                     totalSteps: 3, progress: RunTestSupport.quiet(3))
            id = run.id
            XCTAssertEqual(run.provenance(stage: "bissl", method: nil).hyperparameters.filter { $0.key != "run.engine" }, ["lr": .double(0.03)])
        }
        for _ in 0..<2 { _ = try Run.open(zoo: zoo, id: id, expectedKind: "align", commandLine: ["bissl", "align", "--resume", id], progress: RunTestSupport.quiet(3)) }
        let run = try Run.open(zoo: zoo, id: id, expectedKind: "align", commandLine: ["bissl", "align", "--resume", "x"], progress: RunTestSupport.quiet(3))
        let p = run.provenance(stage: "bissl", method: "simclr")
        XCTAssertEqual(p.hyperparameters["lr"], .double(0.03))
        XCTAssertEqual(p.hyperparameters["run.segments"], .int(4))
        let resume: JSONValue = .array([.string("bissl"), .string("align"), .string("--resume"), .string(id)])
        XCTAssertEqual(p.hyperparameters["run.resumeCommandLines"],
                       .array([resume, resume, .array([.string("bissl"), .string("align"), .string("--resume"), .string("x")])]))
        XCTAssertEqual(p.commandLine, ["bissl", "align", "r"])
        XCTAssertTrue(ProvenanceCheck.violations(p).isEmpty, "\(ProvenanceCheck.violations(p))")
    }

    /// A run started on 2 ranks, stopped at step 87 of 213 and resumed by one process: run.json keeps
    /// each segment's ranks and threads, the entry's `ranks` says the steps were mixed (it said 2, the
    /// start's, before), `run.parallelism` lists the segments with their steps; work redone after a
    /// resume counts once. The 2-rank start is written into run.json as `Run.create` under `mpirun -np
    /// 2` writes it (this test runs as one process).
    func testAResumeOnAnotherNumberOfRanksIsRecordedAsMixed() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let threads = EngineEnvironment.threads
        var id = ""
        do {
            let run = try Run.create(zoo: zoo, kind: "align", config: ["ranks": .int(2)], commandLine: ["mpirun", "bissl", "align", "r"],
                                     totalSteps: 213, progress: RunTestSupport.quiet(213))
            id = run.id
            XCTAssertEqual(run.runRecord.parallelism, [RunRecord.Parallelism(fromStep: 1, ranks: 1, threads: threads)])
            try run.saveState(TrainingState(step: 87))
        }
        let url = zoo.layout.runs.appendingPathComponent(id)
        var record = try RunRecord.read(directory: url)
        record.parallelism = [RunRecord.Parallelism(fromStep: 1, ranks: 2, threads: 1)]
        try record.write(directory: url)
        do {
            // Resumed, killed before its first save (its steps are redone by the next segment).
            let run = try Run.open(zoo: zoo, id: id, expectedKind: "align", commandLine: ["bissl", "align", "--resume", id], progress: RunTestSupport.quiet(213))
            XCTAssertEqual(run.runRecord.parallelism?.last, RunRecord.Parallelism(fromStep: 88, ranks: 1, threads: threads))
        }
        let lines = JobFailureTests.Lines()
        let run = try Run.open(zoo: zoo, id: id, expectedKind: "align", commandLine: ["bissl", "align", "--resume", id],
                               progress: ProgressReporter(total: 213, mode: .none, write: { lines.text += $0 }, now: { 0 }))
        XCTAssertTrue(lines.text.contains("; it trained on 2 ranks before, on 1 from step 88 ("), lines.text)
        try run.saveState(TrainingState(step: 213))
        XCTAssertEqual(try RunRecord.read(directory: url).mixedRanks(through: 213), "mixed: steps 1-87 on 2 ranks, 88-213 on 1 rank")
        let p = run.provenance(stage: "bissl", method: "simclr")
        XCTAssertEqual(p.hyperparameters["ranks"], .string("mixed: steps 1-87 on 2 ranks, 88-213 on 1 rank"))
        XCTAssertEqual(p.hyperparameters["run.parallelism"], .array([
            .object(["steps": .string("1-87"), "ranks": .int(2), "threads": .int(1)]),
            .object(["steps": .string("88-213"), "ranks": .int(1), "threads": .int(Int64(threads))]),
        ]))
        XCTAssertTrue(ProvenanceCheck.violations(p).isEmpty, "\(ProvenanceCheck.violations(p))")

        // Same ranks throughout: a number (absent on one process), as an uninterrupted run records it.
        var same = record
        same.parallelism = [RunRecord.Parallelism(fromStep: 1, ranks: 2, threads: 1), RunRecord.Parallelism(fromStep: 50, ranks: 2, threads: 2)]
        XCTAssertNil(same.mixedRanks(through: 213))
        XCTAssertEqual(same.parallelHistory(through: 213).map(\.steps), [1...49, 50...213])
        same.parallelism = nil
        XCTAssertTrue(same.parallelHistory(through: 213).isEmpty, "a record from before the history was kept")
        // A record written before `parallelism` existed still reads.
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url.appendingPathComponent("run.json"))) as! [String: Any]
        json["parallelism"] = nil
        try JSONSerialization.data(withJSONObject: json).write(to: url.appendingPathComponent("run.json"))
        XCTAssertNil(try RunRecord.read(directory: url).parallelism)
    }

    func testStateDueEveryNStepsOrAfterTwoMinutesOfWork() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["x"], totalSteps: 10, progress: RunTestSupport.quiet(10))
        let now = RunClock.monotonic()
        XCTAssertEqual((1...10).filter { run.decide(step: $0, every: 4, save: false, now: now).save }, [4, 8])
        // The loop's own saves (epoch ends, the last step) whatever the interval.
        XCTAssertEqual((1...10).filter { run.decide(step: $0, every: 4, save: $0 % 5 == 0, now: now).save }, [4, 5, 8, 10])
        XCTAssertNil(run.decide(step: 4, every: 4, save: false, now: now).stop)
        let start = RunClock.monotonic()
        XCTAssertFalse(run.decide(step: 1, every: nil, save: false, now: start + 119).save)
        XCTAssertTrue(run.decide(step: 1, every: nil, save: false, now: start + 121).save)
        // One call per boundary: a boundary that is due saves, and the next interval counts from there.
        var states = 0
        try run.boundary(step: 1, every: 1) { states += 1; return TrainingState(step: 1) }
        try run.boundary(step: 2, every: 4) { states += 1; return TrainingState(step: 2) }
        XCTAssertEqual(states, 1, "the state is captured only when it is saved")
        XCTAssertEqual(try run.loadState()?.step, 1)
        XCTAssertFalse(run.decide(step: 2, every: nil, save: false, now: RunClock.monotonic() + 119).save)
    }

    func testRunIDAndUnknownOrBrokenRuns() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let run = try Run.create(zoo: zoo, kind: "finetune", config: [:], commandLine: ["x"], totalSteps: 3, progress: RunTestSupport.quiet(3))
        // finetune-yyyyMMdd-HHmmss-xxxxxx
        let parts = run.id.split(separator: "-")
        XCTAssertEqual(parts.count, 4)
        XCTAssertEqual(parts[0], "finetune")
        XCTAssertEqual(parts[1].count, 8)
        XCTAssertEqual(parts[2].count, 6)
        XCTAssertEqual(parts[3].count, 6)
        XCTAssertTrue(ZooLayout.isHex(String(parts[3])))
        XCTAssertEqual(run.directory.deletingLastPathComponent().standardizedFileURL, zoo.layout.runs.standardizedFileURL)
        // Open while another holder has the lock.
        XCTAssertThrowsError(try Run.open(zoo: zoo, id: run.id, expectedKind: "finetune", progress: RunTestSupport.quiet(3))) { error in
            XCTAssertTrue("\(error)".contains("in use"), "\(error)")
        }
        XCTAssertTrue(Run.isActive(directory: run.directory))
        XCTAssertThrowsError(try Run.open(zoo: zoo, id: "nope", expectedKind: "pretrain", progress: RunTestSupport.quiet(3))) { error in
            XCTAssertTrue("\(error)".hasPrefix("unknown run 'nope'"), "\(error)")
        }
        XCTAssertThrowsError(try Run.create(zoo: zoo, kind: "Bad Kind", config: [:], commandLine: [], totalSteps: 1))

        let gone = zoo.layout.runs.appendingPathComponent("pretrain-20260101-000000-abcdef").path
        XCTAssertThrowsError(try Run.open(zoo: zoo, id: gone, expectedKind: "pretrain", progress: RunTestSupport.quiet(3))) { error in
            XCTAssertTrue("\(error)".contains("is gone"), "\(error)")
        }
        let broken = zoo.layout.runs.appendingPathComponent("pretrain-20260101-000000-123456")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        try Data("{not json".utf8).write(to: broken.appendingPathComponent("run.json"))
        XCTAssertThrowsError(try Run.open(zoo: zoo, id: "pretrain-20260101-000000-123456", expectedKind: "pretrain", progress: RunTestSupport.quiet(3))) { error in
            XCTAssertTrue("\(error)".contains("unreadable"), "\(error)")
            XCTAssertFalse("\(error)".contains("\n"))
        }
    }
}
