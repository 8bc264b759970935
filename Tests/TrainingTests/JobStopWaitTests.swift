import XCTest
import Foundation
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

/// The lines of a stop request in one process, and of a job that ends without a save.
final class StopLineTests: XCTestCase {
    /// While training: the stop at the next boundary; once the loop ended, what happens instead (the
    /// entry is being written and the run completes), not "stopping at the next step boundary".
    func testFirstSignalOfOneProcessSaysWhatHappens() {
        XCTAssertEqual(StopRequest.firstSignal(SIGINT, finishing: nil, wait: 60),
                       "SIGINT: stopping at the next step boundary with the state saved (at most 60 s; Ctrl-C again quits now)")
        XCTAssertEqual(StopRequest.firstSignal(SIGUSR1, finishing: nil, wait: 60),
                       "SIGUSR1: stopping at the next step boundary with the state saved (at most 60 s; SIGUSR1 again quits now)")
        let id = "pretrain-20261207-221500-abcdef"
        XCTAssertEqual(StopRequest.firstSignal(SIGINT, finishing: StopRequest.finishingLine(runID: id, steps: 40), wait: 60),
                       "SIGINT: run \(id) has done its 40 steps (state saved); its entry is being added to the zoo, then the run completes "
                       + "(Ctrl-C again quits now, without the entry)")
        XCTAssertEqual(RunInterrupted(step: 6, totalSteps: 10, signal: SIGUSR1, resumeCommand: "bissl pretrain --resume \(id)").description,
                       "stopped at step 6/10 (SIGUSR1), state saved; resume with: bissl pretrain --resume \(id)")
        XCTAssertEqual(RunInterrupted(step: 6, totalSteps: 10, signal: SIGUSR1, resumeCommand: "").exitStatus, 128 + SIGUSR1)
    }

    /// Rank 0's line when a job ends without a save: mpirun's SIGTERM, or a stop request (SIGINT,
    /// SIGUSR1) that found no boundary in time; a run with no saved state yet says a resume starts it over.
    func testEndLineOfAJob() {
        let id = "align-20261207-180648-c3f4dc", resume = "mpirun -np 2 bissl align --resume align-20261207-180648-c3f4dc"
        XCTAssertEqual(RankFailure.endLine(signal: SIGTERM, ranks: 2, runID: id, savedStep: 20, resume: resume),
                       "error: mpirun is ending this 2-rank MPI job (it was interrupted, or one of its ranks stopped); run \(id) resumes from step 20, its last saved state: \(resume)")
        XCTAssertEqual(RankFailure.endLine(signal: SIGTERM, ranks: 2, runID: id, savedStep: 0, resume: resume),
                       "error: mpirun is ending this 2-rank MPI job (it was interrupted, or one of its ranks stopped); run \(id) has no saved state yet (a resume starts it from step 0): \(resume)")
        XCTAssertEqual(RankFailure.endLine(signal: SIGUSR1, ranks: 3, runID: id, savedStep: 20, resume: resume),
                       "error: this 3-rank MPI job stops without saving (SIGUSR1: no step boundary in time, or a second signal); run \(id) resumes from step 20, its last saved state: \(resume)")
    }
}
