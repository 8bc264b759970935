import Foundation
import XCTest
@testable import Datasets
import TestSupport

/// Dataset URIs are made absolute when parsed (path and split file), so what a run or a provenance
/// record stores names the same data from any directory.
final class URIAbsoluteTests: XCTestCase {
    func testRelativePathsAreResolvedAgainstTheBase() throws {
        let uri = try DatasetURI(parsing: "h5:data/digits/digits.h5#test&split=splits/val.txt", relativeTo: "/srv/project")
        XCTAssertEqual(uri.path, "/srv/project/data/digits/digits.h5")
        XCTAssertEqual(uri.splitFile, "/srv/project/splits/val.txt")
        XCTAssertEqual(uri.part, .test)
        XCTAssertEqual(uri.description, "h5:/srv/project/data/digits/digits.h5#part=test&split=/srv/project/splits/val.txt")

        let dots = try DatasetURI(parsing: "idx:../fm/./x#split=./a/../b.txt", relativeTo: "/w/a")
        XCTAssertEqual(dots.path, "/w/fm/x")
        XCTAssertEqual(dots.splitFile, "/w/a/b.txt")
        // Absolute paths only lose their . and .. components.
        XCTAssertEqual(try DatasetURI(parsing: "folder:/d/./e/../f", relativeTo: "/elsewhere").path, "/d/f")
        XCTAssertEqual(try DatasetURI(parsing: "idx:~/fm", relativeTo: "/elsewhere").path,
                       URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent("fm").path)
    }

    func testDefaultBaseIsTheCurrentDirectory() throws {
        let cwd = FileManager.default.currentDirectoryPath
        let uri = try DatasetURI(parsing: "h5:some/file.h5#split=s.txt")
        XCTAssertEqual(uri.path, URL(fileURLWithPath: cwd).appendingPathComponent("some/file.h5").path)
        XCTAssertEqual(uri.splitFile, URL(fileURLWithPath: cwd).appendingPathComponent("s.txt").path)
    }

    func testDescriptionRoundTripsFromAnyDirectory() throws {
        for text in ["h5:data/digits/digits.h5", "cifar:c10#part=train&split=../s.txt", "idx:/usr/share/datasets/fashion-mnist#test"] {
            let uri = try DatasetURI(parsing: text, relativeTo: "/base/dir")
            XCTAssertEqual(try DatasetURI(parsing: uri.description, relativeTo: "/other"), uri, text)
            XCTAssertEqual(uri.absolutized(relativeTo: "/other"), uri, "absolutizing an absolute URI changes nothing")
        }
    }

    func testAbsolutizedOfAnUnparsedURI() {
        let uri = DatasetURI(scheme: .idx, path: "fm", part: .test, splitFile: "s/../t.txt")
        let abs = uri.absolutized(relativeTo: "/r")
        XCTAssertEqual(abs.path, "/r/fm")
        XCTAssertEqual(abs.splitFile, "/r/t.txt")
        XCTAssertEqual(abs.part, .test)
    }

    /// The repository's digits opened through a relative URI and a base: same images as the absolute URI.
    func testRelativeURIOpensTheSameData() throws {
        let repo = Fixtures.repository
        let relative = try ImageDataset(try DatasetURI(parsing: "h5:data/digits/digits.h5", relativeTo: repo.path))
        let absolute = try ImageDataset(parsing: "h5:\(repo.path)/data/digits/digits.h5")
        XCTAssertEqual(relative.uri, absolute.uri)
        XCTAssertEqual(relative.count, 1797)
        XCTAssertEqual(try relative.fingerprint(), try absolute.fingerprint())
    }
}
