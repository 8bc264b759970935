import Foundation
import XCTest
import TestSupport
import BisslCore
@testable import Datasets

/// Small files that claim huge contents (tools/fixtures/make_hostile_fixtures.py): each reader
/// refuses them from the header, before it allocates or inflates what they claim.
final class HostileInputTests: XCTestCase {
    private let root = Fixtures.url("hostile").path

    func testQuotedInputCannotSplitTheErrorLine() {
        // Found by the uri fuzz target: an unknown option holding a line break was quoted as it was,
        // so the error was two lines. Control characters are now written as escapes.
        let uri = "idx:ac#/../bx:ac#/..idcifax:/dar:data/cifa\n1\u{1B}[2J"
        XCTAssertThrowsError(try DatasetURI(parsing: uri, relativeTo: "/fuzz")) { error in
            let text = String(describing: error)
            XCTAssertFalse(text.unicodeScalars.contains { $0.properties.generalCategory == .control }, text)
            XCTAssertTrue(text.contains("cifa\\n1\\u{1B}[2J"), text)
        }
    }

    func testEscapingTheErrorLineIsLinearInItsLength() {
        // Found by the npz fuzz target (three quarters of its time): the escaping appended to a
        // String.UnicodeScalarView, which reallocated on every append, so an error quoting a
        // 256 K-character name from a file took 13 s. A complexity check, not a speed figure: both
        // sizes are timed in this process (the fastest of a few runs each), and 16 times the text
        // must cost well under 16^2 = 256 times the time. Linear escaping measures 16-25x here; the
        // bound 64 leaves a factor of about 3 for timer noise and load on either side.
        func seconds(_ count: Int, runs: Int) -> Double {
            let text = String(repeating: "a\u{7}", count: count / 2)
            return (0..<runs).map { _ in
                let start = DispatchTime.now().uptimeNanoseconds
                XCTAssertEqual(text.escapingControlCharacters.utf8.count, count / 2 * 6)
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }.min()!
        }
        let small = seconds(1 << 14, runs: 7), large = seconds(1 << 18, runs: 3)
        XCTAssertLessThan(large / small, 64, "\(large) s for 256 K characters, \(small) s for 16 K")
    }

    func testJPEGFrameSizeIsCheckedBeforeTheDecoderAllocates() throws {
        // 521 bytes, progressive, claiming 34000x34000: libjpeg would allocate its 6.9 GB coefficient
        // buffer in jpeg_start_decompress; the refusal comes straight after jpeg_read_header.
        let data = try Data(contentsOf: Fixtures.url("hostile/progressive_34000.jpg"))
        assertDatasetError(try ImageDecoder.decode(data, name: "big.jpg"),
                           contains: ["big.jpg", "34000x34000", "larger than \(ImageDecoder.maxPixels) pixels"])
    }

    func testProgressiveJPEGScansAreLimitedByTheImageSize() throws {
        // 4096x4096, 300 scans (one AC scan repeated): under the 500-scan limit, but each scan walks
        // the whole coefficient buffer, and scans x pixels may be at most 2^32 (256 scans here).
        let data = try Data(contentsOf: Fixtures.url("hostile/progressive_scans.jpg"))
        assertDatasetError(try ImageDecoder.decode(data, name: "scans.jpg"),
                           contains: ["scans.jpg", "more than 256 scans for 4096x4096 pixels"])
    }

    func testPNGHeaderSizeIsCheckedBeforeTheImageIsAllocated() throws {
        // A real 4x6 PNG whose IHDR is rewritten to 20000x20000 (CRC recomputed, so libpng accepts it).
        var png = try Data(contentsOf: Fixtures.url("datasets/folder/cat/rgb.png"))
        let ihdr = 8 + 8   // signature, then length and type of the first chunk
        for (i, v) in [UInt32(20000), UInt32(20000)].enumerated() {
            withUnsafeBytes(of: v.bigEndian) { png.replaceSubrange((ihdr + 4 * i)..<(ihdr + 4 * i + 4), with: $0) }
        }
        let crc = png.subdata(in: (ihdr - 4)..<(ihdr + 13)).withUnsafeBytes { crc32Reference($0) }
        withUnsafeBytes(of: crc.bigEndian) { png.replaceSubrange((ihdr + 13)..<(ihdr + 17), with: $0) }
        assertDatasetError(try ImageDecoder.decode(png, name: "big.png"), contains: ["big.png", "20000x20000", "larger than"])
    }

    func testGzipIDXIsInflatedOnlyUpToTheSizeItsHeaderDeclares() throws {
        // 4 KB of gzip holding a 784-byte image file followed by 4 MiB of zeros.
        assertDatasetError(try ImageDataset(parsing: "idx:\(root)/idx_bomb"),
                           contains: ["train-images-idx3-ubyte.gz", "decodes to more than the 800 bytes expected"])
        // 35 bytes of gzip cannot hold the 47 MB its header declares: refused before inflating.
        assertDatasetError(try ImageDataset(parsing: "idx:\(root)/idx_claims"),
                           contains: ["train-images-idx3-ubyte.gz", "cannot hold that much"])
    }

    func testIDXImagesLargerThanTheImageLimitAreRefusedFromTheHeader() throws {
        // 28 bytes declaring one 65535x65535 image (4 GB, under the 4 GiB data limit): refused from
        // the header, before the size of the data is even compared.
        assertDatasetError(try ImageDataset(parsing: "idx:\(root)/idx_wide"),
                           contains: ["train-images-idx3-ubyte", "65535x65535", "larger than \(ImageDecoder.maxPixels) pixels"])
    }

    func testGzipPrefixStopsEarly() throws {
        let raw = try Data(contentsOf: Fixtures.url("hostile/idx_bomb/train-images-idx3-ubyte.gz"))
        XCTAssertEqual(try Gzip.prefix(raw, count: 16, name: "x").count, 16)
        XCTAssertEqual(try Gzip.decompress(raw, name: "x", maxBytes: 784 + 16 + (4 << 20)).count, 16 + (4 << 20))
    }

    func testHDF5LabelsBeyondTheNumberedClassLimitAreRefusedBeforeNamesAreMade() throws {
        for file in ["labels_huge.h5", "labels_400m.h5"] {
            assertDatasetError(try ImageDataset(parsing: "h5:\(root)/\(file)"),
                               contains: [file, "outside 0..<\(ClassNames.maxNumbered)"])
        }
    }

    func testHDF5ImagesLargerThanTheirStorageAreRefusedBeforeAllocation() throws {
        // 1.7 KB declaring 1 TiB of never-written images.
        assertDatasetError(try ImageDataset(parsing: "h5:\(root)/images_huge.h5"),
                           contains: ["images", "occupies 0 bytes in the file; refusing to allocate it"])
    }

    func testImagesWithoutRowsOrColumnsAreRefusedWhenTheDatasetIsOpened() throws {
        // Every command opens its data here first: no crop, resize or network takes a 0xW image.
        for (file, size) in [("images_0x0.h5", "0x0"), ("images_4x0.h5", "4x0")] {
            assertDatasetError(try ImageDataset(parsing: "h5:\(root)/\(file)"),
                               contains: ["h5:\(root)/\(file)", "its images are \(size)", "at least one row and one column"])
        }
    }

    func testSandboxMessagesThatDisagreeWithThemselvesAreRefused() throws {
        let good = H5DatasetMessage.encode(.init(pixels: [1, 2, 3, 4], labels: [0], height: 2, width: 2, channels: 1, classNames: ["a"]))
        XCTAssertEqual(try H5DatasetMessage.decode(good, file: "f").pixels, [1, 2, 3, 4])
        var short = good
        short.blobs[0] = Data([1, 2, 3])
        assertDatasetError(try H5DatasetMessage.decode(short, file: "h5:f"), contains: ["h5:f", "malformed"])
        var huge = good
        huge.header = Data(#"{"count":4611686018427387904,"height":0,"width":2,"channels":1,"classNames":[]}"#.utf8)
        assertDatasetError(try H5DatasetMessage.decode(huge, file: "h5:f"), contains: ["malformed"])
    }

    /// CRC-32 (ISO-HDLC, as PNG chunks use), bitwise.
    private func crc32Reference(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return ~c
    }
}
