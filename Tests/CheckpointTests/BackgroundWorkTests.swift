import Foundation
import XCTest
@testable import Checkpoint

/// `BackgroundWork.finish(within:)`: what a failing command waits for before `exit`, so no worker is
/// inside a library while `exit` runs its destructors (a `pull` that failed its object check crashed
/// after its error line about once in 12 runs while its label listing was still on the network).
final class BackgroundWorkTests: XCTestCase {
    func testFinishWaitsForAWorkerItsCallerLeftBehind() {
        let finished = Flag()
        // A caller that leaves early (an error) drops the handle without asking for the value.
        _ = Background { () -> Int in
            Thread.sleep(forTimeInterval: 0.3)
            finished.set()
            return 1
        }
        XCTAssertTrue(BackgroundWork.finish(within: 30))
        XCTAssertTrue(finished.isSet)
    }

    func testFinishGivesUpAfterItsTime() {
        let release = DispatchSemaphore(value: 0)
        _ = Background { () -> Int in release.wait(); return 1 }
        XCTAssertFalse(BackgroundWork.finish(within: 0.2))
        release.signal()
        XCTAssertTrue(BackgroundWork.finish(within: 30))
    }
}

/// A Bool set by one thread and read by another.
private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
