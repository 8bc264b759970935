import Checkpoint
import Foundation
import XCTest
import Engine
@testable import Training

/// Committed fixtures under `Tests/Fixtures` (each area written by its script in tools/fixtures/).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    /// The `bissl` executable built with the tests (`swift build [-c release] --build-tests`):
    /// `$BISSL_BIN`, else next to the test bundle or test binary (debug or release build folder),
    /// else `.build/debug/bissl`; nil when none is executable.
    static var bisslBinary: URL? {
        if let env = ProcessInfo.processInfo.environment["BISSL_BIN"], FileManager.default.isExecutableFile(atPath: env) {
            return URL(fileURLWithPath: env)
        }
        var candidates = Bundle.allBundles.filter { $0.bundlePath.hasSuffix(".xctest") }
            .map { $0.bundleURL.deletingLastPathComponent().appendingPathComponent("bissl") }
        candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("bissl"))
        candidates.append(root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/bissl"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// Runs `bisslBinary` with `args` and waits for it: (exit status, stdout, stderr).
    /// - Throws: when no binary is built (`swift build --build-tests`) or it cannot be started.
    static func runBissl(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let binary = try XCTUnwrap(bisslBinary, "bissl binary not found: run swift build --build-tests first or set BISSL_BIN")
        let process = Process()
        process.executableURL = binary
        process.arguments = args
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// The arrays of `<area>/<name>.npz` by key, in archive order.
    static func npz(_ name: String, area: String) throws -> StateDict {
        let doc = try NumPyArchive.read(url("\(area)/\(name).npz"))
        guard case .dict(let entries) = doc.root else { throw CheckpointError.invalid("\(name): not a dict") }
        var out = StateDict()
        for e in entries {
            guard let key = e.key.stringValue, case .tensor(let t) = e.value else { continue }
            out[key] = t.tensor
        }
        return out
    }
}

extension StateDict {
    /// Float values of `key`, failing the test when it is missing.
    func floats(_ key: String, file: StaticString = #filePath, line: UInt = #line) -> [Float] {
        guard let t = self[key] else {
            XCTFail("fixture has no '\(key)'", file: file, line: line)
            return []
        }
        return t.floats()
    }

    /// Tensors whose key starts with `prefix`, with the prefix removed.
    func stripping(_ prefix: String) -> StateDict {
        var out = StateDict()
        for (k, v) in self where k.hasPrefix(prefix) { out[String(k.dropFirst(prefix.count))] = v }
        return out
    }

    /// Tensors whose key does not start with `prefix`.
    func excluding(_ prefix: String) -> StateDict {
        var out = StateDict()
        for (k, v) in self where !k.hasPrefix(prefix) { out[k] = v }
        return out
    }
}

/// Asserts `max |actual - expected| <= tolerance * max |expected|` (the relative-to-largest rule).
func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(what): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return
    }
    var err: Float = 0, scale: Float = 0
    for (a, e) in zip(actual, expected) {
        err = max(err, abs(a - e))
        scale = max(scale, abs(e))
        if a.isNaN { err = .infinity }
    }
    XCTAssertLessThanOrEqual(err, tolerance * max(scale, 1e-30),
                             "\(what): max error \(err), largest magnitude \(scale)", file: file, line: line)
}
