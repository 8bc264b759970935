import Foundation
import XCTest
@testable import Datasets
import TestSupport

/// The four readers on small files written by the real writers (Python's gzip, the CIFAR binary
/// layout, h5py, Pillow), compared with numpy / PIL values from expected.json.
final class ReaderTests: XCTestCase {
    private let root = Fixtures.url("datasets").path

    func testIDXGzippedTrainPart() throws {
        try Expected.check(try ImageDataset(parsing: "idx:\(root)/idx"), against: "idx_train")
    }

    func testIDXUncompressedTestPart() throws {
        try Expected.check(try ImageDataset(parsing: "idx:\(root)/idx#test"), against: "idx_test")
        try Expected.check(try ImageDataset(parsing: "idx:\(root)/idx#part=test"), against: "idx_test")
    }

    func testIDXSplitSelectsAndOrdersImages() throws {
        let dataset = try ImageDataset(parsing: "idx:\(root)/idx#split=\(root)/splits/ok.txt")
        try Expected.check(dataset, against: "idx_train_split")
        XCTAssertEqual(dataset.sourceIndices, [4, 0, 2])
    }

    func testCIFAR10BothParts() throws {
        try Expected.check(try ImageDataset(parsing: "cifar:\(root)/cifar10"), against: "cifar10_train")
        try Expected.check(try ImageDataset(parsing: "cifar:\(root)/cifar10#test"), against: "cifar10_test")
    }

    func testCIFAR100FineLabels() throws {
        try Expected.check(try ImageDataset(parsing: "cifar:\(root)/cifar100"), against: "cifar100_train")
        try Expected.check(try ImageDataset(parsing: "cifar:\(root)/cifar100#part=test"), against: "cifar100_test")
    }

    func testHDF5TrainTestGroupsAndGrayRoot() throws {
        try Expected.check(try ImageDataset(parsing: "h5:\(root)/h5/parts.h5"), against: "h5_train")
        try Expected.check(try ImageDataset(parsing: "h5:\(root)/h5/parts.h5#test"), against: "h5_test")
        let gray = try ImageDataset(parsing: "h5:\(root)/h5/gray.h5")
        try Expected.check(gray, against: "h5_gray")
        XCTAssertEqual(try gray.image(0).sourceChannels, 1)
    }

    /// PNG pixels equal PIL's `convert("RGB")` exactly (16-bit: the high byte, computed by numpy);
    /// JPEG pixels equal PIL's decode exactly too: both are libjpeg-turbo with the islow IDCT and fancy
    /// upsampling (Pillow's bundled 3.x build, Debian's 2.1.5 here), which are bit-exact algorithms.
    func testFolderMatchesPILDecode() throws {
        let dataset = try ImageDataset(parsing: "folder:\(root)/folder")
        let e = Expected.entry("folder")
        let items = e["items"] as! [[String: Any]]
        XCTAssertEqual(dataset.classNames, e["classes"] as! [String])
        XCTAssertEqual(dataset.count, items.count)
        var maxJPEGError = 0
        for (i, item) in items.enumerated() where i < dataset.count {
            let file = item["file"] as! String
            XCTAssertTrue(dataset.name(i).hasSuffix("/folder/" + file), "order: \(dataset.name(i)) vs \(file)")
            XCTAssertEqual(dataset.label(i), (item["label"] as! NSNumber).intValue, file)
            let image = try dataset.image(i)
            XCTAssertEqual(image.height, (item["height"] as! NSNumber).intValue, file)
            XCTAssertEqual(image.width, (item["width"] as! NSNumber).intValue, file)
            XCTAssertEqual(image.sourceChannels, (item["channels"] as! NSNumber).intValue, file)
            let expected = Expected.bytes(item["pixels"])
            if item["jpeg"] as! Bool {
                XCTAssertEqual(image.pixels.count, expected.count, file)
                let err = zip(image.pixels, expected).map { abs(Int($0) - Int($1)) }.max() ?? 0
                maxJPEGError = max(maxJPEGError, err)
                XCTAssertEqual(err, 0, "\(file): max difference to PIL \(err)")
            } else {
                XCTAssertEqual(image.pixels, expected, file)
            }
        }
        let summary = try dataset.scan(onCorrupt: .fail)
        XCTAssertTrue(summary.skipped.isEmpty)
        XCTAssertEqual(summary.countsPerClass, [5, 5, 2])
        XCTAssertEqual(try dataset.fingerprint(), e["fingerprint"] as! String)
    }

    func testGrayscaleIsReplicatedToThreeChannels() throws {
        let image = try ImageDataset(parsing: "idx:\(root)/idx").image(1)
        for p in 0..<(image.height * image.width) {
            XCTAssertEqual(image.pixels[3 * p], image.pixels[3 * p + 1])
            XCTAssertEqual(image.pixels[3 * p], image.pixels[3 * p + 2])
        }
    }

    func testFingerprintDoesNotDependOnLocation() throws {
        let scratch = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let copy = scratch.appendingPathComponent("elsewhere")
        try FileManager.default.copyItem(atPath: "\(root)/cifar10", toPath: copy.path)
        XCTAssertEqual(try ImageDataset(parsing: "cifar:\(copy.path)").fingerprint(),
                       Expected.entry("cifar10_train")["fingerprint"] as! String)
    }
}
