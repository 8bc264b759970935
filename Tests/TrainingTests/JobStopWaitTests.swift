import XCTest
@testable import Training

/// `StopRequest.jobStopWait`: how long a rank of an `mpirun` job waits, after SIGTERM, for a step
/// boundary the ranks agree on (docs/distributed.md, "Ctrl-C, and when a rank dies").
final class JobStopWaitTests: XCTestCase {
    func testHalfOfMpirunsKillTimeoutCappedByTheStopWait() {
        // mpirun's default (no parameter, or 1 s): no time for a save, quit at SIGTERM as before.
        XCTAssertEqual(StopRequest.jobStopWait(environment: [:]), 0)
        XCTAssertEqual(StopRequest.jobStopWait(environment: ["OMPI_MCA_odls_base_sigkill_timeout": "1"]), 0)
        XCTAssertEqual(StopRequest.jobStopWait(environment: ["OMPI_MCA_odls_base_sigkill_timeout": "junk"]), 0)
        // Half of the timeout: SIGKILL comes T s after SIGTERM, the save gets the other half.
        XCTAssertEqual(StopRequest.jobStopWait(environment: ["OMPI_MCA_odls_base_sigkill_timeout": "4"]), 2)
        XCTAssertEqual(StopRequest.jobStopWait(environment: ["OMPI_MCA_odls_base_sigkill_timeout": "60"]), 30)
        // At most the one-process wait (60 s, BISSL_STOP_WAIT).
        XCTAssertEqual(StopRequest.jobStopWait(environment: ["OMPI_MCA_odls_base_sigkill_timeout": "600"]), 60)
        XCTAssertEqual(StopRequest.jobStopWait(environment: ["OMPI_MCA_odls_base_sigkill_timeout": "60", "BISSL_STOP_WAIT": "10"]), 10)
    }

    /// The first signal to a rank of an `mpirun` job: during training rank 0 announces the stop at the
    /// next boundary; once the loop ended (the entry being added) rank 0 says so and the rank goes on,
    /// never with the one-process wording (60 s, "again quits now"); once the command is done, nothing.
    func testFirstSignalOfAJobByPhase() {
        let announce = "every rank of this 2-rank MPI job stops at the next step boundary with the state saved"
        let training = StopRequest.firstJobSignal("SIGTERM", phase: .training, announce: announce, wait: 2)
        XCTAssertEqual(training.line, "SIGTERM: \(announce) (at most 2 s)")
        XCTAssertFalse(training.quits)
        // Ranks other than 0 announce nothing.
        XCTAssertNil(StopRequest.firstJobSignal("SIGTERM", phase: .training, announce: nil, wait: 2).line)
        // mpirun's default 1 s timeout (wait 0): quit at once, in either phase.
        XCTAssertTrue(StopRequest.firstJobSignal("SIGTERM", phase: .training, announce: announce, wait: 0).quits)
        XCTAssertTrue(StopRequest.firstJobSignal("SIGTERM", phase: .finishing("x"), announce: announce, wait: 0).quits)

        let id = "pretrain-20261207-221500-abcdef"
        let text = RankFailure.finishingLine(runID: id, steps: 600, resume: "mpirun -np 2 bissl pretrain --resume \(id)")
        let finishing = StopRequest.firstJobSignal("SIGTERM", phase: .finishing(text), announce: announce, wait: 2.5)
        XCTAssertEqual(finishing.line, "SIGTERM: run \(id) has done its 600 steps (state saved); rank 0 is adding its entry to the zoo, "
                       + "then the job ends (if mpirun kills it first, no entry is added; resume with: mpirun -np 2 bissl pretrain --resume \(id))")
        XCTAssertFalse(finishing.quits)
        XCTAssertNil(StopRequest.firstJobSignal("SIGTERM", phase: .finishing(nil), announce: nil, wait: 2.5).line)

        for wait in [0.0, 30] {
            let ended = StopRequest.firstJobSignal("SIGINT", phase: .ended, announce: announce, wait: wait)
            XCTAssertNil(ended.line)
            XCTAssertFalse(ended.quits)
        }
    }
}
