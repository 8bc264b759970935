import Foundation
import XCTest
@testable import Datasets
import TestSupport

/// `Tests/Fixtures/datasets/expected.json`, written by tools/fixtures/make_dataset_fixtures.py from
/// numpy arrays and PIL's own decode (never from our output).
enum Expected {
    nonisolated(unsafe) static let json = try! Fixtures.jsonObject("datasets/expected.json")

    static func entry(_ key: String) -> [String: Any] { json[key] as! [String: Any] }

    static func ints(_ value: Any?) -> [Int] { (value as! [NSNumber]).map(\.intValue) }

    static func bytes(_ value: Any?) -> [UInt8] { (value as! [NSNumber]).map(\.uint8Value) }

    /// Checks an in-memory dataset against an expected entry with keys count, classes, labels,
    /// height, width, pixels (one flattened RGB list per image) and fingerprint.
    static func check(_ dataset: ImageDataset, against key: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let e = entry(key)
        XCTAssertEqual(dataset.count, (e["count"] as! NSNumber).intValue, "count", file: file, line: line)
        XCTAssertEqual(dataset.classNames, e["classes"] as! [String], "classes", file: file, line: line)
        XCTAssertEqual(dataset.labels, ints(e["labels"]), "labels", file: file, line: line)
        let pixels = e["pixels"] as! [Any]
        for i in 0..<min(dataset.count, pixels.count) {
            let image = try dataset.image(i)
            XCTAssertEqual(image.height, (e["height"] as! NSNumber).intValue, "height of \(i)", file: file, line: line)
            XCTAssertEqual(image.width, (e["width"] as! NSNumber).intValue, "width of \(i)", file: file, line: line)
            XCTAssertEqual(image.pixels, bytes(pixels[i]), "pixels of image \(i)", file: file, line: line)
        }
        XCTAssertEqual(try dataset.fingerprint(), e["fingerprint"] as! String, "fingerprint", file: file, line: line)
    }
}

/// Asserts that `body` throws a `DatasetError` whose message contains every one of `parts` and is one line.
func assertDatasetError<T>(_ body: @autoclosure () throws -> T, contains parts: [String],
                           file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected a DatasetError containing \(parts)", file: file, line: line)
    } catch let error as DatasetError {
        let message = error.description
        XCTAssertFalse(message.contains("\n"), "one line: \(message)", file: file, line: line)
        for part in parts {
            XCTAssertTrue(message.contains(part), "'\(message)' should contain '\(part)'", file: file, line: line)
        }
    } catch {
        XCTFail("expected a DatasetError, got \(error)", file: file, line: line)
    }
}
