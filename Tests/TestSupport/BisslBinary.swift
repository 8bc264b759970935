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
    /// - Throws: `CheckpointError.io` when no binary is built; the process's launch error.
    public static func run(_ args: [String], environment: [String: String]? = nil, executable: URL? = nil) throws -> Result {
        guard let url else { throw CheckpointError.io("bissl binary not found next to the test bundle: run swift build --build-tests first or set BISSL_BIN") }
        let process = Process()
        process.executableURL = executable ?? url
        process.arguments = args
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}

extension Fixtures {
    /// `BisslBinary.run` as (exit status, stdout, stderr).
    public static func runBissl(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try BisslBinary.run(args)
        return (r.status, r.stdout, r.stderr)
    }
}
