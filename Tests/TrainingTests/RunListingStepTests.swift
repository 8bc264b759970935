import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// The STEP of `bissl runs`: the last logged step and the last saved one, both in the JSON.
final class RunListingStepTests: XCTestCase {
    func testLoggedAndSavedSteps() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["a"], totalSteps: 102, progress: RunTestSupport.quiet(102))
        var summary = RunSummary.summary(directory: run.directory)
        XCTAssertEqual(summary.savedStep, 0)
        XCTAssertNil(summary.loggedStep, "nothing logged yet")
        XCTAssertEqual(summary.stepText, "0/102")

        for step in 1...17 { run.log(step: step, phase: "pretext", ["loss": 1]) }
        summary = RunSummary.summary(directory: run.directory)
        XCTAssertEqual(summary.savedStep, 0)
        XCTAssertEqual(summary.loggedStep, 17)
        XCTAssertEqual(summary.stepText, "17/102 (saved 0)")

        try run.saveState(TrainingState(step: 17))
        summary = RunSummary.summary(directory: run.directory)
        XCTAssertEqual(summary.savedStep, 17)
        XCTAssertEqual(summary.stepText, "17/102")

        // A torn last line (SIGKILL mid-write) does not count.
        let log = try FileHandle(forWritingTo: run.directory.appendingPathComponent("log.jsonl"))
        log.seekToEndOfFile()
        log.write(Data(#"{"step":18,"time":1.0,"pha"#.utf8))
        try log.close()
        XCTAssertEqual(RunSummary.lastLoggedStep(directory: run.directory), 17)

        let json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(RunSummary.summary(directory: run.directory))) as! [String: Any]
        XCTAssertEqual(json["loggedStep"] as? Int, 17)
        XCTAssertEqual(json["savedStep"] as? Int, 17)
    }
}
