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

    /// A zip `.pth` of one float32 tensor `w` of 54 elements (storage `0`), whose `data/0` record is
    /// `record`, stored or deflated.
    private func zipWithRecord(_ record: Data, compress: Bool, numel: Int64 = 54, in dir: URL) throws -> URL {
        let pickle = PickleWriter.pickle(.orderedDict([(.string("w"), .reduce(
            .global(module: "torch._utils", name: "_rebuild_tensor_v2"),
            [.persistent(.tuple([.string("storage"), .global(module: "torch", name: "FloatStorage"), .string("0"), .string("cpu"), .int(numel)])),
             .int(0), .tuple([.int(54)]), .tuple([.int(1)]), .bool(false), .orderedDict([], state: nil)]))],
            state: nil))
        let url = dir.appendingPathComponent("record-\(record.count)-\(compress)-\(numel).pth")
        var writer = ZipWriter(url: url, alignment: 64)
        try writer.add(name: "w/data.pkl", data: pickle)
        try writer.add(name: "w/data/0", data: record, compress: compress)
        try writer.add(name: "w/version", data: Data("3\n".utf8))
        try writer.finish()
        return url
    }

    private func assertCorrupt(_ url: URL, contains text: String, line: UInt = #line) {
        XCTAssertThrowsError(try PyTorchFile.read(url), line: line) { error in
            guard case .corrupt(let m)? = error as? CheckpointError else { return XCTFail("\(error)", line: line) }
            XCTAssertTrue(m.contains(text), m, line: line)
        }
    }

    func testAStorageRecordMustHoldExactlyItsStorageBytes() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The exact size reads.
        let exact = try PyTorchFile.read(try zipWithRecord(Data(count: 216), compress: true, in: dir))
        XCTAssertEqual(exact.container, "pytorch-zip")
        // One float more, stored; 1 MiB deflated (refused on the size the zip declares, before it is
        // inflated); one float less.
        assertCorrupt(try zipWithRecord(Data(count: 220), compress: false, in: dir),
                      contains: "record w/data/0 holds 220 bytes, but tensor w declares its storage as 54 x float32 = 216 bytes")
        assertCorrupt(try zipWithRecord(Data(count: 1 << 20), compress: true, in: dir),
                      contains: "record w/data/0 holds 1048576 bytes, but tensor w declares its storage as 54 x float32 = 216 bytes")
        // (Refused before the record is looked at: no storage may need more bytes than all records hold.)
        assertCorrupt(try zipWithRecord(Data(count: 212), compress: false, in: dir),
                      contains: "storage 0 declares 54 float32 elements, more than the file's 212 bytes of storage data hold")
    }

    func testAStorageLargerThanTheFileSaysSo() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        assertCorrupt(try zipWithRecord(Data(count: 216), compress: false, numel: 1 << 40, in: dir),
                      contains: "storage 0 declares 1099511627776 float32 elements, more than the file's 216 bytes of storage data hold")
    }

    func testALegacyKeyListNamingAStorageTwiceIsRefused() throws {
        var out = Data([0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E])
        out.append(PickleWriter.pickle(.int(PyTorchLegacyReader.protocolVersion)))
        out.append(PickleWriter.pickle(.dict([(.string("little_endian"), .bool(true))])))
        out.append(PickleWriter.pickle(.orderedDict([(.string("w"), .reduce(
            .global(module: "torch._utils", name: "_rebuild_tensor_v2"),
            [.persistent(.tuple([.string("storage"), .global(module: "torch", name: "FloatStorage"), .string("0"), .string("cpu"), .int(2), .none])),
             .int(0), .tuple([.int(2)]), .tuple([.int(1)]), .bool(false), .orderedDict([], state: nil)]))],
            state: nil)))
        let body = { (keys: [String]) -> Data in
            var data = out
            data.append(PickleWriter.pickle(.list(keys.map { .string($0) })))
            for (i, _) in keys.enumerated() {
                withUnsafeBytes(of: Int64(2).littleEndian) { data.append(contentsOf: $0) }
                [Float(i + 1), Float(i + 1)].withUnsafeBytes { data.append(contentsOf: $0) }
            }
            return data
        }
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = dir.appendingPathComponent("once.pth"), twice = dir.appendingPathComponent("twice.pth")
        try body(["0"]).write(to: good)
        try body(["0", "0"]).write(to: twice)
        XCTAssertEqual(try PyTorchFile.read(good).container, "pytorch-legacy")
        assertCorrupt(twice, contains: "the storage key list names storage 0 twice")
    }
}
