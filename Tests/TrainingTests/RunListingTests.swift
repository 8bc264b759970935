import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// What `bissl runs` shows: states read from run.json and the run's lock, last metrics from the log.
final class RunListingTests: XCTestCase {
    func testStatesAndLastMetrics() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        XCTAssertEqual(RunSummary.all(zoo.layout), [])
        let open = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["a"], totalSteps: 10, progress: RunTestSupport.quiet(10))
        open.log(step: 1, phase: "train", ["loss": 2, "lr": 0.1])
        open.log(step: 2, phase: "train", ["loss": 1.5, "lr": 0.2])
        open.log(step: 2, phase: "eval", ["knn_top1": 0.4])
        var interruptedID = ""
        do {
            let run = try Run.create(zoo: zoo, kind: "finetune", config: [:], commandLine: ["b"], totalSteps: 4, progress: RunTestSupport.quiet(4))
            interruptedID = run.id
            try run.saveState(TrainingState(step: 3))
        }
        let failed = try Run.create(zoo: zoo, kind: "align", config: [:], commandLine: ["c"], totalSteps: 4, progress: RunTestSupport.quiet(4))
        failed.fail(CheckpointError.invalid("boom"))
        try FileManager.default.createDirectory(at: zoo.layout.runs.appendingPathComponent("junk"), withIntermediateDirectories: true)

        let all = Dictionary(uniqueKeysWithValues: RunSummary.all(zoo.layout).map { ($0.id, $0) })
        XCTAssertEqual(all.count, 4)
        XCTAssertEqual(all[open.id]?.state, "running")
        XCTAssertEqual(all[interruptedID]?.state, "interrupted")
        XCTAssertEqual(all[interruptedID]?.record?.step, 3)
        XCTAssertEqual(all[failed.id]?.state, "failed")
        XCTAssertEqual(all[failed.id]?.record?.error, "boom")
        XCTAssertEqual(all["junk"]?.state, "unreadable")
        XCTAssertTrue(all["junk"]?.problem?.contains("run.json is missing") ?? false, "\(String(describing: all["junk"]?.problem))")

        let last = try RunSummary.lastMetrics(directory: open.directory)
        XCTAssertEqual(last["loss"], .init(step: 2, phase: "train", value: 1.5))
        XCTAssertEqual(last["lr"], .init(step: 2, phase: "train", value: 0.2))
        XCTAssertEqual(last["knn_top1"], .init(step: 2, phase: "eval", value: 0.4))
        // Unique prefix and path resolve; an ambiguous prefix is refused.
        XCTAssertEqual(try Run.resolve(layout: zoo.layout, id: String(interruptedID.prefix(10))).lastPathComponent, interruptedID)
        XCTAssertEqual(try Run.resolve(layout: zoo.layout, id: open.directory.path).lastPathComponent, open.id)
        _ = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["d"], totalSteps: 1, progress: RunTestSupport.quiet(1))
        XCTAssertThrowsError(try Run.resolve(layout: zoo.layout, id: "pretrain-")) { XCTAssertTrue("\($0)".contains("ambiguous"), "\($0)") }
    }

    /// Log values survive the JSON line exactly (shortest round-trip form), non-finite ones as strings.
    func testLogLineRoundTrip() {
        let entry = RunLogEntry(step: 7, time: 1.25, phase: "up\"per", metrics: ["a": 0.1, "b": 1e-300, "c": .nan, "d": -.infinity, "e": 3])
        XCTAssertEqual(entry.jsonLine, #"{"step":7,"time":1.25,"phase":"up\"per","a":0.1,"b":1e-300,"c":"NaN","d":"-Infinity","e":3.0}"#)
        let back = RunLogEntry(jsonLine: Substring(entry.jsonLine))!
        XCTAssertEqual(back.step, 7)
        XCTAssertEqual(back.phase, "up\"per")
        XCTAssertEqual(back.metrics["a"], 0.1)
        XCTAssertEqual(back.metrics["b"], 1e-300)
        XCTAssertTrue(back.metrics["c"]!.isNaN)
        XCTAssertEqual(back.metrics["d"], -.infinity)
        XCTAssertEqual(back.metrics["e"], 3)
        XCTAssertNil(RunLogEntry(jsonLine: #"{"step":7,"time":1.25,"pha"#))
    }
}
