@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// The conversion path's overlap and memory: the source's SHA-256 completed after the tensors are
/// written (`SourceDigest`), and the mapped source's pages given back once used (`MappedPages`).
final class ConversionPipelineTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.scratch() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A `.pth` of plain tensors (no ResNet keys), one of them larger than a few pages.
    private func source() throws -> URL {
        let url = dir.appendingPathComponent("plain.pth")
        let big = (0..<50_000).map { Float($0) * 0.5 }
        try PyTorchFile.write(["big": Tensor(float32: big, shape: [50_000]), "small": Tensor(float32: [1, 2, 3], shape: [3])], to: url)
        return url
    }

    func testDeferredDigestIsWrittenIntoProvenanceAndIndex() throws {
        let url = try source()
        let (checkpoint, digest) = try Interchange.loadDeferringDigest(url, options: LayoutOptions(), allowPlainTensors: true)
        XCTAssertEqual(checkpoint.provenance.source?.sha256, SourceDigest.placeholder)
        let out = dir.appendingPathComponent("plain.h5")
        try CheckpointFile.write(checkpoint, to: out, sourceDigest: try XCTUnwrap(digest))

        let expected = try FileSHA256.digest(of: url).sha256
        let read = try CheckpointFile.read(out, verifyContentID: true)
        XCTAssertEqual(read.provenance.source?.sha256, expected)
        // The index's copy of the provenance is the file's `/provenance`, byte for byte.
        let fd = open(out.path, O_RDONLY)
        defer { close(fd) }
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: out.path)[.size] as? Int)
        let index = try XCTUnwrap(TensorIndex.read(descriptor: fd, fileSize: Int64(size), fileName: out.lastPathComponent))
        XCTAssertEqual(index.provenanceJSON, try CheckpointFile.provenanceJSON(read.provenance))
        XCTAssertTrue(index.provenanceJSON.contains(expected))
        // `load` waits for the digest itself.
        XCTAssertEqual(try Interchange.load(url, options: LayoutOptions(), allowPlainTensors: true).provenance.source?.sha256, expected)
    }

    #if os(Linux)   // /proc/self/pagemap
    func testReleasedPagesReadAsTheFileAndModifiedPagesStay() throws {
        let page = MappedPages.pageSize
        let url = dir.appendingPathComponent("pages.bin")
        let content = Data((0..<(4 * page)).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) })
        try content.write(to: url)
        let file = try MappedFile(url)
        let all = file.bytes(0, file.size)
        XCTAssertEqual(Data(all), content)   // every page faulted in
        // Page 2 modified through the private mapping (copy-on-write): the file keeps its bytes.
        UnsafeMutableRawPointer(mutating: all.baseAddress!).storeBytes(of: 0xAB, toByteOffset: 2 * page + 5, as: UInt8.self)
        XCTAssertEqual(present(all, pages: 4), [true, true, true, true])

        MappedPages.release(all)

        XCTAssertEqual(present(all, pages: 4), [false, false, true, false], "unmodified pages released, the modified one kept")
        var expected = content
        expected[2 * page + 5] = 0xAB
        XCTAssertEqual(Data(all), expected, "released pages read the file's bytes again; the modified page keeps its change")
        XCTAssertEqual(try Data(contentsOf: url), content)
    }

    func testMemoryOutsideAMappedFileIsNeverReleased() {
        let page = MappedPages.pageSize
        let heap = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 * page, alignment: page)
        defer { heap.deallocate() }
        for i in 0..<heap.count { heap[i] = 0x5A }
        MappedPages.release(UnsafeRawBufferPointer(heap))
        XCTAssertTrue(heap.allSatisfy { $0 == 0x5A }, "MADV_DONTNEED on private anonymous memory would have zeroed it")
    }

    /// Whether each of the first `pages` pages at `bytes` is present in this process (pagemap bit 63).
    private func present(_ bytes: UnsafeRawBufferPointer, pages: Int) -> [Bool] {
        let page = UInt(MappedPages.pageSize)
        let fd = open("/proc/self/pagemap", O_RDONLY)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var entries = [UInt64](repeating: 0, count: pages)
        let start = UInt(bitPattern: bytes.baseAddress!) / page
        _ = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start * 8)) }
        return entries.map { $0 >> 63 == 1 }
    }
    #endif
}
