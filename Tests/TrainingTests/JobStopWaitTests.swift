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
}
