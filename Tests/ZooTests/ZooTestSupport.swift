import Checkpoint
import Collections
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// Builders and helpers shared by the zoo tests.
enum ZooTestSupport {
    /// A fresh empty directory under the system temp dir, removed by the caller's `addTeardownBlock`.
    static func tempDir(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// A small checkpoint in torchvision BatchNorm naming (`conv1.weight`, `bn1.weight`, `bn1.bias`,
    /// `bn1.running_mean`, `bn1.running_var`, `bn1.num_batches_tracked`, `fc.weight`, `fc.bias`) whose
    /// values depend on `seed`, so different seeds give different content ids.
    /// - Parameters:
    ///   - extraFloats: length of an extra `layer1.0.conv1.weight` tensor (for large files).
    ///   - zeroBNWeight: make `bn1.weight` all zero.
    static func checkpoint(seed: Int, stage: String = "imported", method: String? = nil, parents: [Provenance.Parent] = [],
                           metrics: [String: Double] = [:], datasets: [Provenance.Dataset] = [], extraFloats: Int = 0,
                           zeroBNWeight: Bool = false, endedAt: String = "2026-11-29T10:00:00Z") -> Checkpoint {
        var rng = SplitMix(seed: UInt64(seed))
        func floats(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.next() % 2000) / 1000 - 1 } }
        var backbone = StateDict()
        backbone["conv1.weight"] = Tensor(float32: floats(4 * 3 * 3 * 3), shape: [4, 3, 3, 3])
        backbone["bn1.weight"] = Tensor(float32: zeroBNWeight ? [0, 0, 0, 0] : floats(4).map { $0 + 2 }, shape: [4])
        backbone["bn1.bias"] = Tensor(float32: floats(4), shape: [4])
        backbone["bn1.running_mean"] = Tensor(float32: floats(4), shape: [4])
        backbone["bn1.running_var"] = Tensor(float32: floats(4).map { abs($0) + 0.5 }, shape: [4])
        backbone["bn1.num_batches_tracked"] = Tensor(int64: Int64(seed))
        if extraFloats > 0 {
            // A cheap pattern (large tensors would take seconds through the generator in debug builds).
            let offset = Float(seed)
            backbone["layer1.0.conv1.weight"] = Tensor(float32: (0..<extraFloats).map { Float($0 % 997) * 0.001 + offset }, shape: [extraFloats])
        }
        var classifier = StateDict()
        classifier["fc.weight"] = Tensor(float32: floats(3 * 4), shape: [3, 4])
        classifier["fc.bias"] = Tensor(float32: floats(3), shape: [3])
        let provenance = Provenance(
            stage: stage, method: method, parents: parents, datasets: datasets, metrics: metrics,
            commandLine: ["zoo-tests", "seed=\(seed)"], startedAt: "2026-11-29T09:00:00Z", endedAt: endedAt)
        return Checkpoint(components: ["backbone": backbone, "classifier": classifier], architecture: nil, provenance: provenance)
    }

    /// A file under Tests/Fixtures (e.g. `diff/c18_a.pth`).
    static func fixture(_ relative: String) -> URL { Fixtures.url(relative) }

    /// SHA-256 fingerprint-shaped hex string for dataset records.
    static let fingerprint = String(repeating: "ab", count: 32)

    /// Writes `checkpoint` as a bissl .h5 file.
    @discardableResult
    static func writeH5(_ checkpoint: Checkpoint, to url: URL) throws -> URL {
        try CheckpointFile.write(checkpoint, to: url)
        return url
    }

    /// Every regular file under `root` with its bytes' SHA-256-free fingerprint (size + contents hash).
    static func snapshot(_ root: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        guard let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return out }
        for case let url as URL in e where (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
            let rel = String(url.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count))
            // -shm is SQLite's shared-memory index, rewritten by any reader; it holds no data.
            if rel.hasSuffix("-shm") { continue }
            out[rel] = try Data(contentsOf: url)
        }
        return out
    }
}
