import Foundation
import XCTest
@testable import Datasets
import TestSupport

/// Damaged and inconsistent inputs give one-line errors or counted skips, never a crash.
final class BadInputTests: XCTestCase {
    private let root = Fixtures.url("datasets").path

    func testCorruptImagesAreSkippedAndNamed() throws {
        let dataset = try ImageDataset(parsing: "folder:\(root)/bad")
        XCTAssertEqual(dataset.count, 6)
        let summary = try dataset.scan(onCorrupt: .skip)
        let e = Expected.entry("bad")
        let skipped = summary.skipped.map { String($0.name.split(separator: "/bad/").last!) }
        XCTAssertEqual(skipped.sorted(), (e["skipped"] as! [String]).sorted())
        XCTAssertEqual(dataset.count, 2)
        XCTAssertEqual(summary.countsPerClass, [1, 1])
        XCTAssertTrue(dataset.name(0).hasSuffix("a/good.png") && dataset.name(1).hasSuffix("b/ok.png"))
        XCTAssertEqual(try dataset.fingerprint(), e["fingerprint"] as! String)
        let reasons = Dictionary(uniqueKeysWithValues: summary.skipped.map { ($0.name.split(separator: "/").last!, $0.reason) })
        XCTAssertTrue(reasons["truncated.png"]!.contains("truncated"), reasons["truncated.png"]!)
        XCTAssertTrue(reasons["truncated.jpg"]!.contains("truncated"), reasons["truncated.jpg"]!)
        XCTAssertTrue(reasons["cmyk.jpg"]!.contains("CMYK"), reasons["cmyk.jpg"]!)
        XCTAssertTrue(reasons["not_an_image.jpg"]!.contains("not a PNG or JPEG"), reasons["not_an_image.jpg"]!)
    }

    func testCorruptImageIsFatalWithPolicyFail() throws {
        let dataset = try ImageDataset(parsing: "folder:\(root)/bad")
        assertDatasetError(try dataset.scan(onCorrupt: .fail), contains: ["bad/a/truncated.png", "damaged PNG"])
        assertDatasetError(try dataset.image(5), contains: ["truncated.jpg", "truncated"])
    }

    func testDecoderRejectsEveryPrefixOfAPNGAndAJPEG() throws {
        for file in ["folder/cat/rgb.png", "folder/dog/photo.jpg", "folder/cat/palette_trns.png"] {
            let data = try Data(contentsOf: Fixtures.url("datasets/" + file))
            XCTAssertNoThrow(try ImageDecoder.decode(data, name: file))
            for cut in stride(from: 0, to: data.count - 2, by: 7) {
                XCTAssertThrowsError(try ImageDecoder.decode(data.prefix(cut), name: file), "\(file) cut at \(cut)")
            }
        }
    }

    func testFlippedBytesNeverCrash() throws {
        var data = try Data(contentsOf: Fixtures.url("datasets/folder/dog/photo.jpg"))
        var generator = SplitMix(seed: 44)   // seeded: a failure names inputs that can be replayed
        for _ in 0..<200 {
            var copy = data
            let k = Int.random(in: 3..<copy.count, using: &generator)
            copy[k] ^= UInt8.random(in: 1...255, using: &generator)
            _ = try? ImageDecoder.decode(copy, name: "photo.jpg")
        }
        data = try Data(contentsOf: Fixtures.url("datasets/folder/cat/rgb.png"))
        for k in 8..<data.count {
            var copy = data
            copy[k] ^= 0x5A
            _ = try? ImageDecoder.decode(copy, name: "rgb.png")  // must return or throw, never crash
        }
    }

    func testEmptyClassFolder() throws {
        let scratch = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.copyItem(atPath: "\(root)/folder", toPath: scratch.appendingPathComponent("f").path)
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("f/empty_class"), withIntermediateDirectories: true)
        try Data("x".utf8).write(to: scratch.appendingPathComponent("f/empty_class/notes.txt"))
        assertDatasetError(try ImageDataset(parsing: "folder:\(scratch.path)/f"), contains: ["class folder 'empty_class'", "no PNG or JPEG"])
    }

    func testLabelCountMismatch() throws {
        assertDatasetError(try ImageDataset(parsing: "h5:\(root)/h5/mismatch.h5"), contains: ["3 images but 2 labels"])
        let scratch = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let fm = FileManager.default
        try fm.copyItem(atPath: "\(root)/idx/t10k-images-idx3-ubyte", toPath: scratch.appendingPathComponent("t10k-images-idx3-ubyte").path)
        try fm.copyItem(atPath: "\(root)/idx/train-labels-idx1-ubyte.gz", toPath: scratch.appendingPathComponent("t10k-labels-idx1-ubyte.gz").path)
        assertDatasetError(try ImageDataset(parsing: "idx:\(scratch.path)#test"), contains: ["3 images", "5 labels"])
    }

    func testSplitFileErrors() {
        assertDatasetError(try ImageDataset(parsing: "idx:\(root)/idx#split=\(root)/splits/out_of_range.txt"),
                           contains: ["out_of_range.txt line 3", "index 5 is out of range", "5 images"])
        assertDatasetError(try ImageDataset(parsing: "idx:\(root)/idx#split=\(root)/splits/not_a_number.txt"),
                           contains: ["line 2", "'seven'"])
        assertDatasetError(try ImageDataset(parsing: "idx:\(root)/idx#split=\(root)/splits/nope.txt"),
                           contains: ["cannot read /", "/splits/nope.txt: no such file"])
    }

    func testMissingFilesAndFolders() {
        assertDatasetError(try ImageDataset(parsing: "idx:\(root)/nope"), contains: ["idx: cannot read ", "/nope: no such folder"])
        assertDatasetError(try ImageDataset(parsing: "idx:\(root)/cifar10"), contains: ["no train images file"])
        assertDatasetError(try ImageDataset(parsing: "cifar:\(root)/idx"), contains: ["no data_batch_N.bin"])
        assertDatasetError(try ImageDataset(parsing: "h5:\(root)/h5/none.h5"), contains: ["cannot read /", "/h5/none.h5: no such file"])
        assertDatasetError(try ImageDataset(parsing: "h5:\(root)/splits/ok.txt"), contains: ["not a readable HDF5 file"])
        assertDatasetError(try ImageDataset(parsing: "h5:\(root)/h5/gray.h5#test"), contains: ["no test part"])
        assertDatasetError(try ImageDataset(parsing: "folder:\(root)/idx"), contains: ["no class sub-folders"])
    }

    func testTruncatedContainers() throws {
        let scratch = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let fm = FileManager.default
        // gzip cut in the middle
        let gz = try Data(contentsOf: URL(fileURLWithPath: "\(root)/idx/train-images-idx3-ubyte.gz"))
        try gz.prefix(gz.count - 12).write(to: scratch.appendingPathComponent("train-images-idx3-ubyte.gz"))
        try fm.copyItem(atPath: "\(root)/idx/train-labels-idx1-ubyte.gz", toPath: scratch.appendingPathComponent("train-labels-idx1-ubyte.gz").path)
        assertDatasetError(try ImageDataset(parsing: "idx:\(scratch.path)"), contains: ["train-images-idx3-ubyte.gz", "truncated"])
        // uncompressed IDX one byte short
        let idx = scratch.appendingPathComponent("idx2")
        try fm.createDirectory(at: idx, withIntermediateDirectories: true)
        let raw = try Data(contentsOf: URL(fileURLWithPath: "\(root)/idx/t10k-images-idx3-ubyte"))
        try raw.dropLast().write(to: idx.appendingPathComponent("t10k-images-idx3-ubyte"))
        try fm.copyItem(atPath: "\(root)/idx/t10k-labels-idx1-ubyte", toPath: idx.appendingPathComponent("t10k-labels-idx1-ubyte").path)
        assertDatasetError(try ImageDataset(parsing: "idx:\(idx.path)#test"), contains: ["header says [3, 4, 3]", "35 data bytes"])
        // CIFAR batch not a whole number of records
        let cifar = scratch.appendingPathComponent("c")
        try fm.createDirectory(at: cifar, withIntermediateDirectories: true)
        let batch = try Data(contentsOf: URL(fileURLWithPath: "\(root)/cifar10/test_batch.bin"))
        try batch.dropLast(100).write(to: cifar.appendingPathComponent("test_batch.bin"))
        try batch.write(to: cifar.appendingPathComponent("data_batch_1.bin"))
        assertDatasetError(try ImageDataset(parsing: "cifar:\(cifar.path)#test"), contains: ["test_batch.bin", "3073-byte"])
    }

    func testURIErrors() {
        assertDatasetError(try DatasetURI(parsing: "/data/x"), contains: ["no scheme"])
        assertDatasetError(try DatasetURI(parsing: "png:/x"), contains: ["unknown dataset scheme 'png:'"])
        assertDatasetError(try DatasetURI(parsing: "idx:"), contains: ["empty path"])
        assertDatasetError(try DatasetURI(parsing: "idx:/x#val"), contains: ["unknown dataset option 'val'"])
        assertDatasetError(try DatasetURI(parsing: "idx:/x#part=val"), contains: ["train or test"])
        assertDatasetError(try DatasetURI(parsing: "idx:/x#test&part=train"), contains: ["'part' given twice"])
        assertDatasetError(try DatasetURI(parsing: "folder:/x#test"), contains: ["no test part"])
    }

    func testURIParsing() throws {
        let uri = try DatasetURI(parsing: "cifar:/d/c10#part=test&split=/s/val.txt")
        XCTAssertEqual(uri.scheme, .cifar)
        XCTAssertEqual(uri.path, "/d/c10")
        XCTAssertEqual(uri.part, .test)
        XCTAssertEqual(uri.splitFile, "/s/val.txt")
        XCTAssertEqual(uri.description, "cifar:/d/c10#part=test&split=/s/val.txt")
        let plain = try DatasetURI(parsing: "h5:/a/b.h5")
        XCTAssertEqual(plain.part, .train)
        XCTAssertNil(plain.splitFile)
        XCTAssertEqual(plain.description, "h5:/a/b.h5")
    }
}
