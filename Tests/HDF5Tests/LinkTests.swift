import Foundation
@testable import HDF5
import XCTest
import TestSupport

/// Hard links (`Group.createHardLink`) and object addresses; checked against h5py in
/// tools/interop/test_aliases.py.
final class LinkTests: XCTestCase {
    func testHardLinkIsTheSameObjectStoredOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-hdf5-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent("links.h5").path
        let bytes = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        do {
            let file = try File.create(p)
            let a = try file.createGroup("a")
            let b = try file.createGroup("b")
            try a.createDataset("x", type: .uint8, shape: [4096]).write(bytes)
            try a.createDataset("y", type: .uint8, shape: [4096]).write(bytes)
            try b.createHardLink("x é", to: "/a/x")          // absolute target, UTF-8 name, other group
            try a.createHardLink("x2", to: "x")              // relative target
            XCTAssertThrowsError(try b.createHardLink("x é", to: "/a/y")) { XCTAssertTrue("\($0)".contains("cannot link '/b/x é'"), "\($0)") }
            XCTAssertThrowsError(try b.createHardLink("z", to: "/a/missing")) { XCTAssertTrue("\($0)".contains("cannot link '/b/z' to '/a/missing'"), "\($0)") }
            try file.flush()
            try file.close()
        }
        let file = try File.open(p)
        let a = try file.openGroup("a")
        let b = try file.openGroup("b")
        let x = try a.objectAddress(of: "x")
        XCTAssertEqual(try b.objectAddress(of: "x é"), x)
        XCTAssertEqual(try a.objectAddress(of: "x2"), x)
        XCTAssertEqual(try b.openDataset("x é").objectAddress(), x)
        XCTAssertNotEqual(try a.objectAddress(of: "y"), x)
        XCTAssertEqual(try b.openDataset("x é").readData(), bytes)
        XCTAssertEqual(try b.childNames(), ["x é"])
        XCTAssertThrowsError(try a.objectAddress(of: "missing"))
    }
}
