import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training

/// What `TrainingJob.start` says when the training fails after the run started: a failure a resume
/// gets past (a full disk) names the step and the command that resumes it, besides the error itself;
/// a refusal (`TrainingError.invalid`) does not offer a resume that would fail the same way.
final class JobFailureTests: XCTestCase {
    struct ToyOptions: JobOptions {
        var name: String?
        var syncBn = false
    }

    struct ToyConfig: Codable { var steps: Int }

    /// Saves its state at step 2 of 5, then fails with `ToyJob.failure`.
    struct ToyJob: TrainingJob {
        nonisolated(unsafe) static var failure: Error = TrainingError.io("cannot write state.h5: No space left on device")
        static var kind: String { "toy" }
        let config: ToyConfig
        static func resolve(_ options: ToyOptions, zoo: Zoo) throws -> ToyConfig { ToyConfig(steps: 5) }
        init(config: ToyConfig, zoo: Zoo, resuming run: Run?) throws { self.config = config }
        var totalSteps: Int { config.steps }
        var entryName: String? { nil }
        func startMessage(run: Run, commandLine: [String]) -> String { "run \(run.id)" }
        func train(on run: Run) throws -> Checkpoint {
            for step in 1...2 { run.log(step: step, phase: "train", ["loss": 1]) }
            try run.saveState(TrainingState(step: 2))
            throw Self.failure
        }
    }

    final class Lines: @unchecked Sendable {
        var text = ""
    }

    func start(_ zoo: Zoo) -> (error: Error?, said: String) {
        let lines = Lines()
        let progress = ProgressReporter(total: 5, mode: .none, write: { lines.text += $0 }, now: { 0 })
        do {
            _ = try ToyJob.start(zoo: zoo, options: ToyOptions(), commandLine: ["bissl", "toy", "--zoo", "rel-zoo"], progress: progress)
            return (nil, lines.text)
        } catch {
            return (error, lines.text)
        }
    }

    func testAFailureAResumeGetsPastNamesTheStepAndTheResumeCommand() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        ToyJob.failure = TrainingError.io("cannot write state.h5: No space left on device")
        let (error, said) = start(zoo)
        XCTAssertEqual(error as? TrainingError, ToyJob.failure as? TrainingError)
        let run = try XCTUnwrap(RunSummary.all(zoo.layout).first)
        XCTAssertEqual(run.state, "failed")
        // The --zoo of the command line, relative, is given absolute (the command works from any folder).
        let zooPath = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("rel-zoo").standardizedFileURL.path
        XCTAssertTrue(said.contains("run \(run.id) failed; it resumes from step 2/5, its last saved state: bissl toy --resume \(run.id) --zoo \(zooPath)\n"), said)
    }

    func testARefusalOffersNoResume() throws {
        let zoo = try RunTestSupport.tempZoo(self)
        ToyJob.failure = TrainingError.invalid("run diverged: no entry written (try a lower learning rate)")
        defer { ToyJob.failure = TrainingError.io("cannot write state.h5: No space left on device") }
        let (error, said) = start(zoo)
        XCTAssertNotNil(error)
        XCTAssertFalse(said.contains("resumes from"), said)
    }
}
