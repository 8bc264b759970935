@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// Damaged input never crashes the reader: cut or corrupt torch-written files at many positions and
/// require either a successful read or a `CheckpointError` (a trap would end the test process).
final class PyTorchDamageTests: XCTestCase {
    /// Deterministic positions (a fixed LCG, so failures reproduce).
    private func positions(_ count: Int, below limit: Int, seed: UInt64) -> [Int] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(state >> 33) % limit
        }
    }

    private func readOutcome(_ data: Data, in dir: URL, name: String) -> String {
        let url = dir.appendingPathComponent(name)
        do {
            try data.write(to: url)
            _ = try PyTorchFile.read(url)
            return "ok"
        } catch let error as CheckpointError {
            return String(describing: error)
        } catch {
            XCTFail("\(name): non-checkpoint error \(error)")
            return "?"
        }
    }

    func testTruncatedFilesThrowCheckpointErrors() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        for fixture in ["resnet18_w2.pth", "resnet18_w2_legacy.pth", "training_ckpt.pth"] {
            let full = try Data(contentsOf: Fixtures.url("pth/\(fixture)"))
            for cut in positions(60, below: full.count, seed: 7) {
                let outcome = readOutcome(full.prefix(cut), in: dir, name: "cut-\(cut)-\(fixture)")
                XCTAssertNotEqual(outcome, "ok", "\(fixture) cut at \(cut) was accepted")
            }
        }
    }

    func testFlippedBytesInHeadersAndPicklesNeverCrash() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        for fixture in ["resnet18_w2.pth", "resnet18_w2_legacy.pth", "training_ckpt.pth", "c6_alias.pth"] {
            let full = try Data(contentsOf: Fixtures.url("pth/\(fixture)"))
            // The pickle sits at the start of both containers; the zip directory at the end.
            let spots = positions(80, below: min(full.count, 4096), seed: 11)
                + positions(40, below: min(full.count, 8192), seed: 13).map { full.count - 1 - $0 }
            for (i, at) in spots.enumerated() {
                var damaged = full
                damaged[at] ^= UInt8(truncatingIfNeeded: 0x5A &+ i)
                _ = readOutcome(damaged, in: dir, name: "flip-\(i)-\(fixture)")
            }
        }
    }

    func testAbsurdSizesInAPickleAreRefused() throws {
        // _rebuild_tensor_v2 with a size whose element count overflows Int64.
        let huge = Int64(1) << 40
        let pickle = PickleWriter.pickle(.orderedDict([(.string("w"), .reduce(
            .global(module: "torch._utils", name: "_rebuild_tensor_v2"),
            [.persistent(.tuple([.string("storage"), .global(module: "torch", name: "FloatStorage"), .string("0"), .string("cpu"), .int(4)])),
             .int(0), .tuple([.int(huge), .int(huge)]), .tuple([.int(huge), .int(1)]), .bool(false), .orderedDict([], state: nil)]))],
            state: nil))
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("absurd.pth")
        var writer = ZipWriter(url: url, alignment: 64)
        try writer.add(name: "absurd/data.pkl", data: pickle)
        try writer.add(name: "absurd/data/0", data: Data(count: 16))
        try writer.add(name: "absurd/version", data: Data("3\n".utf8))
        try writer.finish()
        XCTAssertThrowsError(try PyTorchFile.read(url)) { error in
            guard case .corrupt(let m)? = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("too large"), m)
        }
    }
}
