import Foundation
import XCTest
@testable import Datasets
import TestSupport

/// Fashion-MNIST in place (apt package dataset-fashion-mnist) and the committed scikit-learn digits,
/// against numbers computed by tools/fixtures/make_dataset_fixtures.py straight from the sources.
final class RealDataTests: XCTestCase {
    func testFashionMNISTInPlace() throws {
        let dir = "/usr/share/datasets/fashion-mnist"
        guard FileManager.default.fileExists(atPath: dir) else { throw XCTSkip("dataset-fashion-mnist is not installed") }
        let e = Expected.entry("fashion_mnist")
        for (part, uri) in [("train", "idx:\(dir)"), ("test", "idx:\(dir)#test")] {
            let ref = e[part] as! [String: Any]
            let dataset = try ImageDataset(parsing: uri)
            XCTAssertEqual(dataset.count, (ref["count"] as! NSNumber).intValue)
            XCTAssertEqual(dataset.classNames.count, 10)
            var counts = Array(repeating: 0, count: 10)
            for label in dataset.labels { counts[label] += 1 }
            XCTAssertEqual(counts, Expected.ints(ref["counts_per_class"]))
            XCTAssertEqual(Array(dataset.labels.prefix(10)), Expected.ints(ref["first_labels"]))
            let sums = try [0, 1, dataset.count - 1].map { i -> Int in
                let image = try dataset.image(i)
                XCTAssertEqual(image.height, 28)
                XCTAssertEqual(image.width, 28)
                return stride(from: 0, to: image.pixels.count, by: 3).reduce(0) { $0 + Int(image.pixels[$1]) }
            }
            XCTAssertEqual(sums, Expected.ints(ref["pixel_sums"]))
            XCTAssertEqual(try dataset.fingerprint(), ref["fingerprint"] as! String)
        }
    }

    func testCommittedDigits() throws {
        let path = Fixtures.digits
        let dataset = try ImageDataset(parsing: "h5:\(path)")
        let e = Expected.entry("digits")
        XCTAssertEqual(dataset.count, 1797)
        XCTAssertEqual(dataset.classNames, (0..<10).map(String.init))
        var counts = Array(repeating: 0, count: 10)
        for label in dataset.labels { counts[label] += 1 }
        XCTAssertEqual(counts, Expected.ints(e["counts_per_class"]))
        XCTAssertEqual(Array(dataset.labels.prefix(10)), Expected.ints(e["first_labels"]))
        XCTAssertEqual(try dataset.image(0).pixels, Expected.bytes(e["first_pixels"]))
        XCTAssertEqual(try dataset.image(1796).pixels, Expected.bytes(e["last_pixels"]))
        let summary = try dataset.scan(onCorrupt: .fail)
        XCTAssertEqual(summary.sizes, [DatasetSummary.Size(height: 8, width: 8): 1797])
        XCTAssertEqual(summary.sourceChannels, [1: 1797])
    }
}
