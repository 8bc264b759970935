import Foundation
import XCTest

/// Another process holding a shared `flock(2)` on a file or folder, as a writer running in another
/// pid namespace (a container sharing the volume) or on another NFS client holds one on its
/// temporary: its pid is not the one the temporary's name carries. `/bin/sh` opens the path on
/// descriptor 9, util-linux `flock` locks it, and `sleep` (the same process, by `exec`) keeps it
/// until `stop()` or deinit kills it.
public final class LockHolder {
    private let process = Process()

    /// Starts the holder and returns once the lock is held (at most 20 s).
    /// - Throws: `XCTSkip` when `/usr/bin/flock` is missing; an error when the lock is not taken.
    public init(_ url: URL) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/flock") else {
            throw XCTSkip("/usr/bin/flock (util-linux) is needed to hold a lock from another process")
        }
        let out = Pipe()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec 9<\"$1\" && /usr/bin/flock -s 9 && echo locked && exec sleep 600", "sh", url.path]
        process.standardOutput = out
        try process.run()
        let line = String(decoding: out.fileHandleForReading.readData(ofLength: 7), as: UTF8.self)
        guard line == "locked\n" else {
            stop()
            throw NSError(domain: "LockHolder", code: 1, userInfo: [NSLocalizedDescriptionKey: "the lock holder for \(url.path) did not lock it"])
        }
    }

    /// Ends the holder (its lock goes with it).
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }

    /// A pid no process has: a child that ran and was reaped (pids are not reused within a test).
    public static func endedPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }
}
