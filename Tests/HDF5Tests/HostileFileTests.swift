import Foundation
@testable import HDF5
import XCTest

/// Sizes declared by hostile files (tools/fixtures/make_hostile_fixtures.py) are checked before use,
/// and the HDF5 reader process's failures become one-line errors.
final class HostileFileTests: XCTestCase {
    private func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/hostile/\(name)").path
    }

    private func assertHDF5Error<T>(_ body: @autoclosure () throws -> T, contains text: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard let e = error as? HDF5Error else { return XCTFail("\(error)", line: line) }
            XCTAssertTrue(e.message.contains(text), e.message, line: line)
            XCTAssertFalse(e.message.contains("\n"), e.message, line: line)
        }
    }

    func testADataspaceWhoseElementCountOverflowsIsRefusedAtOpen() throws {
        // (2^40, 2^40) float32: 2^80 elements.
        let file = try File.open(fixture("space_overflow.h5"))
        assertHDF5Error(try file.openDataset("x"), contains: "more than fit in a 64-bit count")
    }

    func testADatasetLargerThanItsStorageCanHoldIsNotAllocated() throws {
        // 1,400 bytes of file declaring 2^34 float64 (128 GiB) that were never written.
        let file = try File.open(fixture("space_huge.h5"))
        let dataset = try file.openDataset("x")
        XCTAssertEqual(dataset.shape, [1 << 34])
        assertHDF5Error(try dataset.readData(), contains: "declares 137438953472 bytes but occupies 0 bytes in the file")
    }

    func testReadLimitsAllowWhatDeflateCanExpandTo() throws {
        XCTAssertEqual(try ReadLimits.checkedBytes(count: 1032 * 10, elementSize: 1, storedBytes: 10, what: "x"), 10_320)
        XCTAssertThrowsError(try ReadLimits.checkedBytes(count: 1032 * 100 + (1 << 16) + 1, elementSize: 1, storedBytes: 100, what: "x"))
        XCTAssertThrowsError(try ReadLimits.checkedBytes(count: Int.max / 2, elementSize: 8, storedBytes: .max, what: "x"))
        XCTAssertNil(ReadLimits.elementCount([1 << 40, 1 << 40]))
        XCTAssertNil(ReadLimits.elementCount([UInt64.max]))
        XCTAssertEqual(ReadLimits.elementCount([0, UInt64(Int.max)]), 0)
    }

    func testMessagesRoundTripAndDamagedOnesAreRefused() throws {
        let message = SandboxMessage(header: Data("{}".utf8), blobs: [Data([1, 2, 3]), Data()])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-msg-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: url.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: url) }
        let handle = try FileHandle(forWritingTo: url)
        try message.write(to: handle)
        try handle.close()
        let bytes = try Data(contentsOf: url)
        let back = try SandboxMessage(decoding: bytes)
        XCTAssertEqual(back.header, message.header)
        XCTAssertEqual(back.blobs, message.blobs)
        for cut in 0..<bytes.count { XCTAssertThrowsError(try SandboxMessage(decoding: bytes.prefix(cut)), "cut at \(cut)") }
        XCTAssertThrowsError(try SandboxMessage(decoding: bytes + Data([0])))
        // A blob count no message of this size can hold.
        var lying = bytes
        lying.replaceSubrange(18..<26, with: withUnsafeBytes(of: UInt64.max.littleEndian) { Data($0) })
        XCTAssertThrowsError(try SandboxMessage(decoding: lying))
    }

    func testACrashingOrSilentReaderProcessIsOneErrorLine() throws {
        defer { Sandbox.helper = nil }
        // Stand-ins for libhdf5 dying on a file: a process that segfaults, and one that exits without output.
        Sandbox.helper = ["/bin/sh", "-c", "kill -SEGV $$", "sh"]
        XCTAssertThrowsError(try Sandbox.run(["checkpoint", "x.h5"], fileName: "x.h5", fileSize: 0)) { error in
            XCTAssertEqual((error as? SandboxError)?.message,
                           "x.h5: the HDF5 library crashed (signal 11) reading this file; it is damaged or hostile")
        }
        Sandbox.helper = ["/bin/sh", "-c", "echo partial; exit 3", "sh"]
        XCTAssertThrowsError(try Sandbox.run(["checkpoint", "x.h5"], fileName: "x.h5", fileSize: 0)) { error in
            XCTAssertEqual((error as? SandboxError)?.message,
                           "x.h5: the HDF5 reader process ended (status 3) without a result; the file is damaged or hostile")
        }
    }

    func testAStartedReaderReadsOnlyOnceFinished() throws {
        defer { Sandbox.helper = nil }
        // A stand-in child: waits for the end of its standard input, then sends the file its argument names.
        Sandbox.helper = ["/bin/sh", "-c", "cat > /dev/null; cat \"$1\"", "sh"]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-started-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: url) }
        let started = try Sandbox.start([url.path], fileName: "x.h5")
        // Written after the child started (a download): the child must read it only now.
        let message = SandboxMessage(header: Data("{}".utf8), blobs: [Data([7, 8])])
        FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        try message.write(to: handle)
        try handle.close()
        let back = try started.finish(fileSize: 0)
        XCTAssertEqual(back.header, message.header)
        XCTAssertEqual(back.blobs, message.blobs)
        // One never finished (a failed download) is stopped when released, not left waiting.
        _ = try Sandbox.start([url.path], fileName: "x.h5")
    }

    func testASignalDuringTheReadIsNotAFailure() throws {
        defer { Sandbox.helper = nil }
        // A slow stand-in child, read while a SIGALRM handler installed without SA_RESTART fires every
        // 5 ms (as libFuzzer's -timeout timer does): every read the signal interrupts fails with
        // EINTR and must be read again, not end the process or the read.
        Sandbox.helper = ["/bin/sh", "-c", "cat > /dev/null; sleep 0.3; cat \"$1\"", "sh"]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-eintr-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: url) }
        let message = SandboxMessage(header: Data("{}".utf8), blobs: [Data(repeating: 3, count: 1 << 20)])
        FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        try message.write(to: handle)
        try handle.close()

        var action = sigaction(), previous = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0
        XCTAssertEqual(sigaction(SIGALRM, &action, &previous), 0)
        defer { sigaction(SIGALRM, &previous, nil) }
        var timer = itimerval(it_interval: timeval(tv_sec: 0, tv_usec: 5000), it_value: timeval(tv_sec: 0, tv_usec: 5000))
        var stopped = itimerval()
        let started = try Sandbox.start([url.path], fileName: "x.h5")
        XCTAssertEqual(setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &timer, nil), 0)
        defer { setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &stopped, nil) }
        let back = try started.finish(fileSize: 0)
        XCTAssertEqual(back.header, message.header)
        XCTAssertEqual(back.blobs, message.blobs)
    }

    func testNothingTheReaderProcessLeavesRunningHoldsTheRead() throws {
        defer { Sandbox.helper = nil }
        // A stand-in child that leaves a process holding its standard output (as the Swift runtime's
        // backtracer did when the child crashed) and exits without a result; it records that
        // process's id and the backtracer setting it was given.
        Sandbox.helper = ["/bin/sh", "-c", "sleep 60 & echo \"$! $SWIFT_BACKTRACE\" > \"$1\"; exit 3", "sh"]
        let record = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-left-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: record) }
        XCTAssertThrowsError(try Sandbox.run([record.path], fileName: "x.h5", fileSize: 0)) { error in
            XCTAssertEqual("\(error)", "x.h5: the HDF5 reader process ended (status 3) without a result; the file is damaged or hostile")
        }
        let fields = try String(contentsOf: record, encoding: .utf8).split(separator: " ")
        let left = try XCTUnwrap(fields.first.flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
        defer { kill(left, SIGKILL) }
        // The read ended with the child, not when the process it left (60 s) closed the pipe: that
        // process still runs (a zombie, state Z, or no entry once it has ended).
        let stat = (try? String(contentsOfFile: "/proc/\(left)/stat", encoding: .utf8)) ?? ""
        let state = stat.split(separator: ")").last?.split(separator: " ").first
        XCTAssertTrue(state == "S" || state == "R", "the read waited for the process the child left behind: \(stat)")
        XCTAssertEqual(fields.dropFirst().joined(separator: " ").trimmingCharacters(in: .whitespacesAndNewlines), "enable=no")
    }

    func testTheReadStopsAtItsOutputLimit() throws {
        // A stand-in child writing 2 MiB: read whole under a 3 MiB limit, refused under a 1 MiB one
        // (finish() reads under Limits.output, the child's address-space allowance, and kills it).
        for (limit, fits) in [(3 << 20, true), (1 << 20, false)] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "exec head -c 2097152 /dev/zero"]  // exec: no grandchild holding the pipe
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            defer {
                try? pipe.fileHandleForReading.close()  // a writer still blocked on the pipe gets EPIPE
                process.terminate()
                process.waitUntilExit()
            }
            let pid = process.processIdentifier
            let read = { try Sandbox.readToEnd(pipe.fileHandleForReading.fileDescriptor, limit: limit) { Sandbox.ending(of: pid, wait: false) != .running } }
            if fits {
                XCTAssertEqual(try read().count, 2 << 20)
            } else {
                XCTAssertThrowsError(try read()) { XCTAssertTrue($0 is Sandbox.OutputLimitExceeded, "\($0)") }
            }
        }
        XCTAssertEqual(Sandbox.Limits.forFile(bytes: 1000).output, (1 << 30) + 4000)
    }

    func testChildLimitsScaleWithTheFile() {
        XCTAssertEqual(Sandbox.Limits.forFile(bytes: 0), .init(addressSpace: 1 << 30, cpuSeconds: 20))
        XCTAssertEqual(Sandbox.Limits.forFile(bytes: 100_000_000), .init(addressSpace: (1 << 30) + 400_000_000, cpuSeconds: 30))
    }
}
