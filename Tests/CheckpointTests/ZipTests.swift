@testable import Checkpoint
import Crypto
import Foundation
import XCTest
import TestSupport

/// The ZIP reader against archives written by Python's `zipfile` (expected names, CRCs, sizes and
/// SHA-256 computed by Python in tools/fixtures/make_pth_fixtures.py), and the writer read back
/// by the reader and by Python (tools/interop/test_pth.py).
final class ZipTests: XCTestCase {
    private struct Expected: Decodable {
        var name: String
        var method: Int
        var crc32: UInt32
        var size: Int
        var compressed_size: Int
        var header_offset: Int
        var sha256: String
    }

    private func expected(_ file: String) throws -> [Expected] {
        try JSONDecoder().decode([Expected].self, from: Data(contentsOf: Fixtures.url("pth/\(file)")))
    }

    private func assertMatches(_ archive: ZipArchive, _ rows: [Expected], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(archive.entries.map(\.name), rows.map(\.name), file: file, line: line)
        for (entry, row) in zip(archive.entries, rows) {
            XCTAssertEqual(Int(entry.method), row.method, entry.name, file: file, line: line)
            XCTAssertEqual(entry.crc32, row.crc32, entry.name, file: file, line: line)
            XCTAssertEqual(entry.uncompressedSize, row.size, entry.name, file: file, line: line)
            XCTAssertEqual(entry.compressedSize, row.compressed_size, entry.name, file: file, line: line)
            XCTAssertEqual(entry.localHeaderOffset, row.header_offset, entry.name, file: file, line: line)
            XCTAssertEqual(sha256(try archive.data(for: entry)), row.sha256, entry.name, file: file, line: line)
        }
    }

    func testReadsStoredDeflatedEmptyAndUTF8NamedRecordsWrittenByPython() throws {
        let archive = try ZipArchive(url: Fixtures.url("pth/zip_mixed.zip"))
        try assertMatches(archive, try expected("zip_mixed.expected.json"))
        XCTAssertEqual(archive.entries.map(\.name), ["a.txt", "dir/b.bin", "empty", "café.txt"])
        XCTAssertEqual(try archive.data(for: archive.entry(named: "a.txt")!), Data("hello\n".utf8))
    }

    func testReadsZip64DirectoryAndExtraFields() throws {
        let archive = try ZipArchive(url: Fixtures.url("pth/zip_zip64.zip"))
        try assertMatches(archive, try expected("zip_zip64.expected.json"))
    }

    func testFlippedByteIsACRCMismatchNamingTheRecord() throws {
        let archive = try ZipArchive(url: Fixtures.url("pth/zip_flipped.zip"))
        XCTAssertThrowsError(try archive.data(for: archive.entry(named: "a.txt")!)) { error in
            XCTAssertEqual(error as? CheckpointError,
                           .corrupt("CRC mismatch in a.txt: corrupted, or written with CRC disabled"))
        }
        // The other records are intact.
        XCTAssertNoThrow(try archive.data(for: archive.entry(named: "dir/b.bin")!))
    }

    /// Sizes and offsets of a zip64 directory are 64-bit file values: one at 2^64 - 1 (clamped to
    /// Int.max) must be refused with an error, not trap in the arithmetic that checks it.
    func testZip64OffsetsAtTheLimitAreRefusedWithoutTrapping() {
        func archive(record: [UInt8], recordAt: UInt64) -> Data {
            var b = record
            func u16(_ v: UInt16) { b += withUnsafeBytes(of: v.littleEndian, Array.init) }
            func u32(_ v: UInt32) { b += withUnsafeBytes(of: v.littleEndian, Array.init) }
            func u64(_ v: UInt64) { b += withUnsafeBytes(of: v.littleEndian, Array.init) }
            u32(0x0706_4b50); u32(0); u64(recordAt); u32(1)                   // zip64 locator (APPNOTE 4.3.15)
            u32(0x0605_4b50); u16(0); u16(0); u16(0xffff); u16(0xffff); u32(.max); u32(.max); u16(0)  // EOCD (4.3.16)
            return Data(b)
        }
        // The locator points at byte 2^64 - 1.
        XCTAssertThrowsError(try ZipArchive(data: archive(record: [], recordAt: .max))) { XCTAssertTrue($0 is CheckpointError, "\($0)") }
        // A zip64 record at byte 0 whose central directory offset is 2^64 - 1 (APPNOTE 4.3.14).
        var record: [UInt8] = []
        func put64(_ v: UInt64) { record += withUnsafeBytes(of: v.littleEndian, Array.init) }
        record += withUnsafeBytes(of: UInt32(0x0606_4b50).littleEndian, Array.init)
        put64(44)
        record += [45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]                    // versions, disk numbers
        put64(1); put64(1); put64(46); put64(.max)                         // entries, entries, size, offset
        XCTAssertThrowsError(try ZipArchive(data: archive(record: record, recordAt: 0))) { XCTAssertTrue($0 is CheckpointError, "\($0)") }
    }

    /// Central directory entries that point at the same record (an "overlapping" zip bomb: one
    /// deflated record inflated once per entry) are refused when the archive is opened.
    func testRecordsThatShareBytesAreRefused() throws {
        var b: [UInt8] = []
        func u16(_ v: UInt16) { b += withUnsafeBytes(of: v.littleEndian, Array.init) }
        func u32(_ v: UInt32) { b += withUnsafeBytes(of: v.littleEndian, Array.init) }
        let payload = Data("hello".utf8)
        let crc = ZipCodec.crc32(payload)
        // One stored record "a" at byte 0 (APPNOTE 4.3.7).
        u32(0x0403_4b50); u16(20); u16(0); u16(0); u16(0); u16(0); u32(crc); u32(5); u32(5); u16(1); u16(0)
        b += Array("a".utf8) + Array(payload)
        let cdStart = b.count
        // Two directory entries (4.3.12), "a" and "b", both at byte 0.
        for name in ["a", "b"] {
            u32(0x0201_4b50); u16(20); u16(20); u16(0); u16(0); u16(0); u16(0); u32(crc); u32(5); u32(5)
            u16(1); u16(0); u16(0); u16(0); u16(0); u32(0); u32(0)
            b += Array(name.utf8)
        }
        let cdSize = b.count - cdStart
        u32(0x0605_4b50); u16(0); u16(0); u16(2); u16(2); u32(UInt32(cdSize)); u32(UInt32(cdStart)); u16(0)
        XCTAssertThrowsError(try ZipArchive(data: Data(b))) { error in
            XCTAssertEqual(error as? CheckpointError, .corrupt("damaged ZIP: records a (byte 0, 5 bytes) and b (byte 0) share bytes"))
        }
        // Read from a file, the message names it as every other directory error does.
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("overlap.pth")
        try Data(b).write(to: url)
        XCTAssertThrowsError(try ZipArchive(url: url)) { error in
            XCTAssertEqual(error as? CheckpointError, .corrupt("overlap.pth: damaged ZIP: records a (byte 0, 5 bytes) and b (byte 0) share bytes"))
        }
        // The same archive with one entry reads.
        XCTAssertNoThrow(try ZipArchive(data: Data(b[..<(cdStart + 47)] + [0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 1, 0, 1, 0, 47, 0, 0, 0]
                                                  + withUnsafeBytes(of: UInt32(cdStart).littleEndian, Array.init) + [0, 0])))
    }

    func testTruncatedArchiveReportsItsSize() throws {
        let url = Fixtures.url("pth/zip_truncated.zip")
        let size = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int
        XCTAssertThrowsError(try ZipArchive(url: url)) { error in
            guard case .corrupt(let message)? = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("zip_truncated.zip: truncated ZIP: file is \(size) bytes"), message)
        }
    }

    func testTruncationInsideARecordNamesTheRecordAndTheSizeItNeeds() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let full = try Data(contentsOf: Fixtures.url("pth/zip_mixed.zip"))
        let rows = try expected("zip_mixed.expected.json")
        // Cut in the middle of dir/b.bin's data: its record ends at offset + 30 + name + data.
        let b = rows[1]
        let cut = b.header_offset + 30 + 9 + 10
        let url = dir.appendingPathComponent("cut.zip")
        try full.prefix(cut).write(to: url)
        XCTAssertThrowsError(try ZipArchive(url: url)) { error in
            XCTAssertEqual(error as? CheckpointError,
                           .corrupt("cut.zip: truncated ZIP: file is \(cut) bytes, record dir/b.bin runs past its end (it expects \(b.header_offset + 30 + 9 + b.compressed_size))"))
        }
    }

    func testNotAZip() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("x.bin")
        try Data(repeating: 0x41, count: 100).write(to: url)
        XCTAssertThrowsError(try ZipArchive(url: url)) { error in
            guard case .notACheckpoint? = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    func testWriterRoundTripWithAlignmentCompressionAndCRC() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("w.zip")
        let big = Data((0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 >> 3) })
        var writer = ZipWriter(url: url, alignment: 64)
        try writer.add(name: "archive/data.pkl", data: Data("pickle".utf8))
        try writer.add(name: "archive/data/0", data: big)
        try writer.add(name: "archive/deflated", data: big, compress: true)
        try writer.add(name: "archive/empty", data: Data())
        XCTAssertThrowsError(try writer.add(name: "archive/empty", data: Data()))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path), "nothing published before finish()")
        try writer.finish()
        // No temporary files left next to it.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["w.zip"])

        let archive = try ZipArchive(url: url)
        XCTAssertEqual(archive.entries.map(\.name), ["archive/data.pkl", "archive/data/0", "archive/deflated", "archive/empty"])
        for entry in archive.entries {
            XCTAssertEqual(try archive.dataOffset(for: entry) % 64, 0, entry.name)
        }
        XCTAssertEqual(try archive.data(for: archive.entries[1]), big)
        XCTAssertEqual(try archive.data(for: archive.entries[2]), big)
        XCTAssertEqual(archive.entries[2].method, 8)
        XCTAssertLessThan(archive.entries[2].compressedSize, big.count)
        XCTAssertEqual(try archive.data(for: archive.entries[3]), Data())
        // CRC-32 of "pickle" as Python computes it: zlib.crc32(b"pickle") == 0xb743740e.
        XCTAssertEqual(archive.entries[0].crc32, 0xB743_740E)
    }

    func testWriterZip64PathsWithLoweredLimits() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("z64.zip")
        var writer = ZipWriter(url: url, alignment: 64, zip64Limit: 100, countLimit: 3)
        let payloads = (0..<5).map { i in Data((0..<(150 + 40 * i)).map { UInt8(truncatingIfNeeded: $0 * (i + 3)) }) }
        for (i, p) in payloads.enumerated() { try writer.add(name: "r\(i)", data: p, compress: i % 2 == 1) }
        try writer.finish()
        let bytes = try Data(contentsOf: url)
        // zip64 end-of-central-directory record and locator are present.
        XCTAssertNotNil(bytes.range(of: Data([0x50, 0x4b, 0x06, 0x06])))
        XCTAssertNotNil(bytes.range(of: Data([0x50, 0x4b, 0x06, 0x07])))
        let archive = try ZipArchive(url: url)
        XCTAssertEqual(archive.entries.count, 5)
        for (entry, p) in zip(archive.entries, payloads) {
            XCTAssertEqual(try archive.data(for: entry), p, entry.name)
            XCTAssertEqual(try archive.dataOffset(for: entry) % 64, 0, entry.name)
        }
    }

    /// Python's zipfile as an independent reader: `testzip()` re-reads every record and checks its
    /// CRC; returns name -> SHA-256 of the content. Skips when python3 is not installed.
    private func pythonRead(_ url: URL) throws -> [String: String] {
        let script = """
        import hashlib, json, sys, zipfile
        z = zipfile.ZipFile(sys.argv[1])
        assert z.testzip() is None
        print(json.dumps({i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist()}))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, url.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch { throw XCTSkip("python3 not available: \(error)") }
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "python zipfile rejected \(url.lastPathComponent)")
        return try JSONDecoder().decode([String: String].self, from: out)
    }

    func testPythonZipfileAcceptsWriterOutput() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let payloads = (0..<5).map { i in Data((0..<(150 + 40 * i)).map { UInt8(truncatingIfNeeded: $0 * (i + 3)) }) }
        for (label, limit) in [("plain", 0xFFFF_FFFF), ("zip64", 100)] {
            let url = dir.appendingPathComponent("\(label).zip")
            var writer = ZipWriter(url: url, alignment: 64, zip64Limit: limit, countLimit: limit == 100 ? 3 : 0xFFFF)
            for (i, p) in payloads.enumerated() { try writer.add(name: "d/r\(i)", data: p, compress: i % 2 == 1) }
            try writer.finish()
            let read = try pythonRead(url)
            XCTAssertEqual(read.count, 5, label)
            for (i, p) in payloads.enumerated() { XCTAssertEqual(read["d/r\(i)"], sha256(p), label) }
        }
    }

    func testAbandonedWriterLeavesNothing() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            var writer = ZipWriter(url: dir.appendingPathComponent("never.zip"))
            try writer.add(name: "x", data: Data([1, 2, 3]))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }
}
