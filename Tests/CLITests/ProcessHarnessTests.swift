import Foundation
import TestSupport
import XCTest

/// The process runner every CLI test uses: it must not deadlock on a chatty child or wait on a hung one.
final class ProcessHarnessTests: XCTestCase {
    private let shell = URL(fileURLWithPath: "/bin/sh")

    /// 1 MiB on stderr while stdout stays open: 16 times a Linux pipe's 64 KiB buffer, so a runner that
    /// read stdout to its end before touching stderr would wait forever on a child blocked in write(2).
    func testDrainsBothStreamsAtOnce() throws {
        let r = try BisslBinary.run(["-c", "head -c 1048576 /dev/zero >&2; echo done"],
                                    executable: shell, timeout: 120)
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.stdout, "done\n")
        XCTAssertEqual(r.stderr.utf8.count, 1_048_576)
    }

    /// A child that never ends is killed at the timeout and the result says so.
    func testKillsAHungChildAtTheTimeout() throws {
        let start = Date()
        let r = try BisslBinary.run(["-c", "exec sleep 300"], executable: shell, timeout: 1)
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
        XCTAssertEqual(r.status, SIGKILL)
        XCTAssertTrue(r.stderr.contains("killed after 1 s"), r.stderr)
    }
}
