@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// FileSniffer against files written by the real tools (torch, numpy, safetensors, h5py, pickle)
/// and hand-made bad downloads.
final class SnifferTests: XCTestCase {
    private func kind(_ name: String) throws -> FileKind {
        try FileSniffer.sniff(Fixtures.url("pth/\(name)"))
    }

    func testRecognisesEachFormatFromItsBytes() throws {
        XCTAssertEqual(try kind("resnet18_w2.pth"), .pytorchZip)
        XCTAssertEqual(try kind("buffer_saved.pth"), .pytorchZip)
        XCTAssertEqual(try kind("resnet18_w2_legacy.pth"), .pytorchLegacy)
        XCTAssertEqual(try kind("torchscript.pt"), .torchScript)
        XCTAssertEqual(try kind("sniff.npz"), .npz)
        XCTAssertEqual(try kind("sniff.safetensors"), .safetensors)
        XCTAssertEqual(try kind("sniff.h5"), .hdf5)
        XCTAssertEqual(try kind("c9_html.pth"), .html)
        XCTAssertEqual(try kind("zip_mixed.zip"), .zip(firstEntry: "a.txt"))
        // A truncated torch zip is still recognised from its first local header.
        XCTAssertEqual(try kind("c8_truncated.pth"), .pytorchZip)
    }

    func testGitLFSPointerGivesOidAndSize() throws {
        let expected = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: Fixtures.url("pth/c9.expected.json")))
        guard case .string(let oid)? = expected["oid"], case .int(let size)? = expected["size"] else { return XCTFail("fixture") }
        XCTAssertEqual(try kind("c9_lfs.pth"), .gitLFSPointer(oid: oid, size: Int(size)))
    }

    func testEmptyTextAndUnknownFiles() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        func sniff(_ data: Data) throws -> FileKind {
            let url = dir.appendingPathComponent(UUID().uuidString)
            try data.write(to: url)
            return try FileSniffer.sniff(url)
        }
        XCTAssertEqual(try sniff(Data()), .empty)
        XCTAssertEqual(try sniff(Data("404: Not Found\n".utf8)), .text(firstLine: "404: Not Found"))
        XCTAssertEqual(try sniff(Data([0x00, 0x01, 0x02, 0xFE])), .unknown(firstBytes: "00 01 02 fe"))
        XCTAssertEqual(try sniff(Data("  <html><body>x</body></html>".utf8)), .html)
    }

    func testDirectoryIsNamed() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try FileSniffer.sniff(dir)) { error in
            XCTAssertEqual(error as? CheckpointError, .io("\(dir.path) is a directory"))
        }
    }

    func testSingleNpyAndTruncatedSafetensorsAreNamed() throws {
        XCTAssertEqual(try kind("single.npy"), .npy)
        XCTAssertEqual(FileKind.npy.describe("single.npy"),
                       "single.npy is a single NumPy .npy array, not a checkpoint: use numpy.savez to make an .npz")
        let expected = try JSONDecoder().decode([String: Int].self, from: Data(contentsOf: Fixtures.url("pth/truncated_header.expected.json")))
        let header = try XCTUnwrap(expected["header_bytes"]), size = try XCTUnwrap(expected["file_bytes"])
        let k = try kind("truncated_header.safetensors")
        XCTAssertEqual(k, .truncatedSafetensors(headerBytes: UInt64(header), fileBytes: size))
        XCTAssertEqual(k.describe("t.safetensors"), "t.safetensors is a truncated safetensors file: header says \(header) bytes, file has \(size)")
        XCTAssertThrowsError(try Interchange.readSource(Fixtures.url("pth/single.npy"))) { error in
            XCTAssertEqual(error as? CheckpointError, .notACheckpoint(FileKind.npy.describe("single.npy")))
        }
    }

    func testDescriptionsAreOneLine() {
        let kinds: [FileKind] = [.pytorchZip, .pytorchLegacy, .pytorchTar, .torchScript, .rawPickle(globals: ["a.b"]),
                                 .safetensors, .hdf5, .npz, .zip(firstEntry: "x"), .html, .text(firstLine: "t"),
                                 .gitLFSPointer(oid: "ab", size: 3), .empty, .npy, .truncatedSafetensors(headerBytes: 9, fileBytes: 5),
                                 .unknown(firstBytes: "00")]
        for k in kinds {
            let d = k.describe("model.pth")
            XCTAssertTrue(d.hasPrefix("model.pth is "), d)
            XCTAssertFalse(d.contains("\n"), d)
        }
        XCTAssertEqual(FileKind.html.describe("model.pth"), "model.pth is an HTML page (a download that returned a web page?)")
    }
}
