import CHDF5
import Foundation
@testable import HDF5
import XCTest

/// A file that names data outside itself (external, soft or user-defined links, external storage;
/// see `File`'s containment) is refused with one line naming the object, before anything of it
/// is read. The virtual-dataset case is built with h5py in tools/interop/test_robustness.py.
final class ContainmentTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-contain-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// A file with `/g/x`, a float32 (2, 3) dataset, whose values are `fill`.
    private func makeFile(_ name: String, fill: Float) throws -> File {
        let file = try File.create(path(name))
        let values = [Float](repeating: fill, count: 6)
        try file.createGroup("g").createDataset("x", type: .float32, shape: [2, 3])
            .write(values.withUnsafeBytes { Data($0) })
        return file
    }

    private func assertRefused(_ name: String, contains text: String, line: UInt = #line) {
        XCTAssertThrowsError(try File.open(path(name)), line: line) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(text), message, line: line)
            XCTAssertFalse(message.contains("\n"), message, line: line)
        }
    }

    func testAnExternalLinkIsRefusedAtOpen() throws {
        try makeFile("secret.h5", fill: 7).close()
        do {
            let file = try makeFile("linked.h5", fill: 1)
            let g = try file.openGroup("g")
            XCTAssertGreaterThanOrEqual(H5Lcreate_external(path("secret.h5"), "/g/x", g.id, "w",
                                                           bissl_H5P_DEFAULT(), bissl_H5P_DEFAULT()), 0)
            try file.close()
        }
        assertRefused("linked.h5", contains: "'/g/w' in \(path("linked.h5")) is an external link")
    }

    func testSoftAndDanglingLinksAreRefusedAtOpen() throws {
        do {
            let file = try makeFile("soft.h5", fill: 1)
            XCTAssertGreaterThanOrEqual(H5Lcreate_soft("/g/x", file.id, "alias", bissl_H5P_DEFAULT(), bissl_H5P_DEFAULT()), 0)
            try file.close()
        }
        assertRefused("soft.h5", contains: "'/alias' in \(path("soft.h5")) is a soft link")
        do {
            let file = try makeFile("dangling.h5", fill: 1)
            let g = try file.openGroup("g")
            XCTAssertGreaterThanOrEqual(H5Lcreate_external("/nonexistent/x.h5", "/y", g.id, "y",
                                                           bissl_H5P_DEFAULT(), bissl_H5P_DEFAULT()), 0)
            try file.close()
        }
        assertRefused("dangling.h5", contains: "'/g/y' in \(path("dangling.h5")) is an external link")
    }

    func testHardLinksStillOpen() throws {
        do {
            let file = try makeFile("hard.h5", fill: 3)
            try file.createHardLink("again", to: "/g/x")
            try file.close()
        }
        let file = try File.open(path("hard.h5"))
        XCTAssertEqual(try file.openDataset("again").readData().count, 24)
    }

    func testExternalStorageIsRefusedAtDatasetOpen() throws {
        let raw = path("raw.bin")
        XCTAssertTrue(FileManager.default.createFile(atPath: raw, contents: Data(repeating: 0x41, count: 24)))
        do {
            let file = try File.create(path("extstore.h5"))
            let dcpl = H5Pcreate(bissl_H5P_DATASET_CREATE())
            defer { H5Pclose(dcpl) }
            XCTAssertGreaterThanOrEqual(H5Pset_external(dcpl, raw, 0, 24), 0)
            var dims: [hsize_t] = [6]
            let space = H5Screate_simple(1, &dims, nil)
            defer { H5Sclose(space) }
            let dataset = H5Dcreate2(file.id, "x", bissl_H5T_IEEE_F32LE(), space, bissl_H5P_DEFAULT(), dcpl, bissl_H5P_DEFAULT())
            XCTAssertGreaterThanOrEqual(dataset, 0)
            H5Dclose(dataset)
            try file.close()
        }
        let file = try File.open(path("extstore.h5"))
        XCTAssertThrowsError(try file.openDataset("x")) { error in
            XCTAssertTrue("\(error)".contains("dataset '/x' in \(self.path("extstore.h5")) keeps its elements in external files"), "\(error)")
        }
    }
}
