import Checkpoint
import Foundation

/// Runs the built `bissl` executable (process-level tests).
///
/// The binary is `$BISSL_BIN`, else the one next to the test bundle or test binary (`swift build
/// [-c release] --build-tests` builds both, so `swift test --skip-build` after it finds it), else
/// `.build/debug/bissl`.
public enum BisslBinary {
    public static var url: URL? {
        if let env = ProcessInfo.processInfo.environment["BISSL_BIN"], FileManager.default.isExecutableFile(atPath: env) {
            return URL(fileURLWithPath: env)
        }
        var candidates = Bundle.allBundles.filter { $0.bundlePath.hasSuffix(".xctest") }
            .map { $0.bundleURL.deletingLastPathComponent().appendingPathComponent("bissl") }
        candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("bissl"))
        candidates.append(Fixtures.repository.appendingPathComponent(".build/debug/bissl"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `bissl args...` to completion (or `executable args...`, e.g. `setpriv ... bissl ...`).
    ///
    /// Both pipes are drained at once (stderr on its own thread), so a child writing more than a pipe's
    /// buffer to one stream while the other is still open cannot block the test. A child still running
    /// after `timeout` seconds is killed (SIGKILL) and the result's stderr says so: a hung command fails its
    /// test instead of holding the whole suite.
    /// - Throws: `CheckpointError.io` when no binary is built; the process's launch error.
    public static func run(_ args: [String], environment: [String: String]? = nil, executable: URL? = nil,
                           timeout: TimeInterval = 600) throws -> Result {
        guard let url else { throw CheckpointError.io("bissl binary not found next to the test bundle: run swift build --build-tests first or set BISSL_BIN") }
        let process = Process()
        process.executableURL = executable ?? url
        process.arguments = args
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let killed = KilledFlag()
        let watchdog = DispatchWorkItem { [process] in
            if process.isRunning { killed.set(); kill(process.processIdentifier, SIGKILL) }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        let errData = Drained()
        let errDone = DispatchSemaphore(value: 0)
        let errHandle = err.fileHandleForReading
        Thread.detachNewThread {
            errData.data = errHandle.readDataToEndOfFile()
            errDone.signal()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        process.waitUntilExit()
        watchdog.cancel()
        var stderr = String(decoding: errData.data, as: UTF8.self)
        if killed.isSet {
            stderr += "\n[test harness: killed after \(Int(timeout)) s]"
        }
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: stderr)
    }
}

/// One stream's bytes, written by its reader thread before it signals, read after the wait.
private final class Drained: @unchecked Sendable { var data = Data() }

/// Whether the watchdog killed the child (set on the watchdog's queue, read after the child exited).
private final class KilledFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

extension Fixtures {
    /// `BisslBinary.run` as (exit status, stdout, stderr).
    public static func runBissl(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try BisslBinary.run(args)
        return (r.status, r.stdout, r.stderr)
    }
}
