import Checkpoint
import Foundation
import XCTest

/// Committed test inputs under `Tests/Fixtures` (each area written by its script in `tools/fixtures/`).
public enum Fixtures {
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The repository's root folder.
    public static let repository = root.deletingLastPathComponent().deletingLastPathComponent()

    /// `data/digits/digits.h5` of the repository (scikit-learn's 1,797 labelled 8x8 digits).
    public static let digits = repository.appendingPathComponent("data/digits/digits.h5").path

    public static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    /// The JSON object in `<relative>` (an `expected.json` a fixture script wrote).
    /// - Throws: the read's error; fails (a programming error) when the file holds no JSON object.
    public static func jsonObject(_ relative: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(relative))) as! [String: Any]
    }

    /// A fresh empty folder for a test's outputs, removed by the caller's `defer`.
    public static func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The arrays of `<area>/<name>.npz` by key, in archive order.
    /// - Throws: `CheckpointError` when the archive cannot be read or is not a dict of arrays.
    public static func npz(_ name: String, area: String = "engine") throws -> StateDict {
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
    public func floats(_ key: String, file: StaticString = #filePath, line: UInt = #line) -> [Float] {
        guard let t = self[key] else {
            XCTFail("fixture has no '\(key)'", file: file, line: line)
            return []
        }
        return t.floats()
    }

    /// Tensors whose key starts with `prefix`, with the prefix removed.
    public func stripping(_ prefix: String) -> StateDict {
        var out = StateDict()
        for (k, v) in self where k.hasPrefix(prefix) { out[String(k.dropFirst(prefix.count))] = v }
        return out
    }

    /// Tensors whose key does not start with `prefix`.
    public func excluding(_ prefix: String) -> StateDict {
        var out = StateDict()
        for (k, v) in self where !k.hasPrefix(prefix) { out[k] = v }
        return out
    }
}

/// Asserts `max |actual - expected| <= tolerance * max |expected|`: the error relative to the largest
/// reference magnitude (float32 rounding grows with the values summed, not with each element).
public func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float, _ what: String,
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

/// Deterministic 64-bit generator for reproducible test inputs: `SeededGenerator` (SplitMix64) started
/// one step further, so `SplitMix(seed: s)` gives the sequence the zoo tests were written with.
public struct SplitMix: RandomNumberGenerator {
    private var base: SeededGenerator
    public init(seed: UInt64) { base = SeededGenerator(seed: seed &+ 0x9E37_79B9_7F4A_7C15) }
    public mutating func next() -> UInt64 { base.next() }
}

/// `‖a − b‖ / ‖b‖` and the cosine of a and b (flattened, accumulated in Double).
public func compareVectors(_ a: [Float], _ b: [Float]) -> (relative: Double, cosine: Double) {
    var d: Double = 0, ab: Double = 0, aa: Double = 0, bb: Double = 0
    for (x, y) in zip(a, b) {
        let x = Double(x), y = Double(y)
        d += (x - y) * (x - y); ab += x * y; aa += x * x; bb += y * y
    }
    return (d.squareRoot() / bb.squareRoot(), ab / (aa * bb).squareRoot())
}
