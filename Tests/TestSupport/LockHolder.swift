import Foundation
import XCTest

/// Another process holding a shared record lock on a file or folder, as a writer running in another
/// pid namespace (a container sharing the volume) or on another NFS client holds one on its
/// temporary: its pid is not the one the temporary's name carries. Python's `fcntl.lockf` takes a
/// POSIX record lock (`F_SETLK`, `F_RDLCK`, whole file), which conflicts with the open-file-description
/// locks of `TemporaryFileLock` as a writer's would (fcntl(2): the two kinds conflict; `flock(2)` locks
/// conflict with neither). The process keeps it until `stop()` or deinit kills it.
public final class LockHolder {
    private let process = Process()

    /// Starts the holder and returns once the lock is held (at most 20 s).
    /// - Throws: `XCTSkip` when `python3` is missing; an error when the lock is not taken.
    public init(_ url: URL) throws {
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("python3 is needed to hold a lock from another process")
        }
        let out = Pipe()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", """
            import fcntl, os, sys, time
            fd = os.open(sys.argv[1], os.O_RDONLY)
            fcntl.lockf(fd, fcntl.LOCK_SH)
            print("locked", flush=True)
            time.sleep(600)
            """, url.path]
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
