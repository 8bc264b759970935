import Foundation
@testable import HDF5
import XCTest
import TestSupport

final class WrapperTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-hdf5-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    private func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func testEveryElementTypeRoundTripsItsBytes() throws {
        let p = path("types.h5")
        // Bytes chosen so that every element is distinct and sign/exponent bits are exercised.
        var expected: [ElementType: Data] = [:]
        do {
            let file = try File.create(p)
            for type in ElementType.allCases {
                let bytes = Data((0..<(6 * type.size)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 0x81) })
                expected[type] = bytes
                try file.createDataset(type.rawValue, type: type, shape: [2, 3]).write(bytes)
            }
        }
        let file = try File.open(p)
        for type in ElementType.allCases {
            let ds = try file.openDataset(type.rawValue)
            XCTAssertEqual(ds.elementType, type, type.rawValue)
            XCTAssertEqual(ds.shape, [2, 3])
            XCTAssertEqual(try ds.readData(), expected[type], type.rawValue)
        }
    }

    /// Every element type of a file opened read-only is read with one `pread` at the dataset's offset
    /// (the bytes of the round-trip test above); a file opened for writing goes through `H5Dread`,
    /// which sees bytes HDF5 may not have written out yet; a file cut short is refused.
    func testDirectReadsOfContiguousDatasets() throws {
        let p = path("direct.h5")
        var expected: [ElementType: Data] = [:]
        do {
            let file = try File.create(p)
            for type in ElementType.allCases {
                let bytes = Data((0..<(6 * type.size)).map { UInt8(truncatingIfNeeded: $0 &* 53 &+ 0x17) })
                expected[type] = bytes
                try file.createDataset(type.rawValue, type: type, shape: [3, 2]).write(bytes)
            }
            try file.close()
        }
        do {
            let file = try File.open(p)
            for type in ElementType.allCases {
                let ds = try file.openDataset(type.rawValue)
                let extent = try XCTUnwrap(try ds.directExtent(), type.rawValue)
                XCTAssertEqual(extent.count, 6 * type.size)
                XCTAssertEqual(try ds.readData(), expected[type], type.rawValue)
            }
            XCTAssertNotNil(file.status())
            XCTAssertEqual(file.status()?.size, Int64(try FileManager.default.attributesOfItem(atPath: p)[.size] as! Int))
        }
        do {
            let file = try File.open(p, writable: true)
            XCTAssertNil(try file.openDataset("float64").directExtent())
            XCTAssertEqual(try file.openDataset("float64").readData(), expected[.float64])
        }
        // HDF5 allocates datasets in creation order, so the last one ends near the end of the file:
        // cut the file inside it.
        let file = try File.open(p)
        let last = try file.openDataset(ElementType.allCases.last!.rawValue)
        let offset = try XCTUnwrap(try last.directExtent()).offset
        XCTAssertEqual(truncate(p, offset + 2), 0)
        XCTAssertThrowsError(try last.directExtent()) { XCTAssertTrue("\($0)".contains("past the end of the"), "\($0)") }
    }

    func testFloat16IsIEEEBinary16() throws {
        // HDF5 converts float16 -> float32 on read; 0x3C00 = 1.0, 0x0001 = 2^-24 (subnormal), 0xFBFF = -65504.
        let p = path("half.h5")
        do {
            let file = try File.create(p)
            let halves: [UInt16] = [0x3C00, 0x0001, 0xFBFF, 0x7C00]
            try halves.withUnsafeBytes { try file.createDataset("h", type: .float16, shape: [4]).write($0) }
        }
        let file = try File.open(p)
        let ds = try file.openDataset("h")
        var floats = [Float](repeating: 0, count: 4)
        let mem = try ElementType.float32.makeType()
        _ = floats.withUnsafeMutableBytes { H5DreadShim(ds, mem, $0.baseAddress!) }
        XCTAssertEqual(floats, [1.0, Float(pow(2.0, -24.0)), -65504.0, .infinity])
    }

    func testScalarAndEmptyDatasets() throws {
        let p = path("shapes.h5")
        do {
            let file = try File.create(p)
            try file.createDataset("scalar", type: .int64, shape: []).write(withUnsafeBytes(of: Int64(42).littleEndian) { Data($0) })
            try file.createDataset("empty", type: .float32, shape: [0]).write(Data())
            try file.createDataset("empty2", type: .float32, shape: [2, 0]).write(Data())
        }
        let file = try File.open(p)
        let s = try file.openDataset("scalar")
        XCTAssertEqual(s.shape, [])
        XCTAssertEqual(try s.readData(), withUnsafeBytes(of: Int64(42).littleEndian) { Data($0) })
        XCTAssertEqual(try file.openDataset("empty").shape, [0])
        XCTAssertEqual(try file.openDataset("empty2").shape, [2, 0])
        XCTAssertEqual(try file.openDataset("empty2").readData(), Data())
    }

    func testWrongByteCountIsRefused() throws {
        let file = try File.create(path("bad.h5"))
        let ds = try file.createDataset("x", type: .float32, shape: [3])
        XCTAssertThrowsError(try ds.write(Data(count: 8))) { error in
            XCTAssertTrue("\(error)".contains("needs 12 bytes, got 8"), "\(error)")
        }
    }

    func testStringsAndAttributes() throws {
        let p = path("strings.h5")
        let long = String(repeating: "{\"k\": \"välue\"} ", count: 20_000)  // ~300 KB, beyond any attribute limit
        do {
            let file = try File.create(p)
            try file.setAttribute("format", "bissl-checkpoint")
            try file.setAttribute("count", Int64(-7))
            try file.setAttribute("dims", [Int64(2048), 4096, 256])
            try file.setAttribute("names", ["a", "b.c", "ü"])
            try file.createStringDataset("json", value: long)
            try file.createStringDataset("list", values: ["x", "", "layer1.0.conv1.weight"])
            try file.createStringDataset("none", values: [])
        }
        let file = try File.open(p)
        XCTAssertEqual(try file.stringAttribute("format"), "bissl-checkpoint")
        XCTAssertEqual(try file.intAttribute("count"), -7)
        XCTAssertEqual(try file.intArrayAttribute("dims"), [2048, 4096, 256])
        XCTAssertEqual(try file.stringArrayAttribute("names"), ["a", "b.c", "ü"])
        XCTAssertEqual(try file.attributeNames(), ["count", "dims", "format", "names"])
        XCTAssertEqual(try file.openDataset("json").readString(), long)
        XCTAssertEqual(try file.openDataset("list").readStrings(), ["x", "", "layer1.0.conv1.weight"])
        XCTAssertEqual(try file.openDataset("none").readStrings(), [])
        XCTAssertFalse(file.hasAttribute("missing"))
        XCTAssertThrowsError(try file.intAttribute("format"))
        XCTAssertThrowsError(try file.stringAttribute("missing")) { error in
            XCTAssertEqual("\(error)", "HDF5: no attribute 'missing' on '/' in \(p)")
        }
    }

    func testOversizedAttributeIsRefused() throws {
        // 3,000 names of 30 bytes do not fit in one attribute.
        let file = try File.create(path("c12.h5"))
        let names = (0..<3000).map { String(format: "layer%04d.block.conv.weight.xx", $0) }
        XCTAssertThrowsError(try file.setAttribute("names", names)) { error in
            XCTAssertTrue("\(error)".contains("store the values in a dataset"), "\(error)")
        }
        try file.createStringDataset("names", values: names)
        XCTAssertEqual(try file.openDataset("names").readStrings(), names)
    }

    func testChildrenInNameAndCreationOrder() throws {
        let p = path("order.h5")
        let names = ["zeta", "alpha", "mid.dle", "Beta"]
        do {
            let file = try File.create(p)
            let tracked = try file.createGroup("tracked", trackCreationOrder: true)
            let plain = try file.createGroup("plain")
            for n in names {
                _ = try tracked.createGroup(n)
                _ = try plain.createDataset(n, type: .uint8, shape: [1])
            }
        }
        let file = try File.open(p)
        XCTAssertEqual(try file.openGroup("tracked").childNames(order: .creation), names)
        XCTAssertEqual(try file.openGroup("tracked").childNames(order: .name), ["Beta", "alpha", "mid.dle", "zeta"])
        XCTAssertEqual(try file.openGroup("plain").childNames(), ["Beta", "alpha", "mid.dle", "zeta"])
        XCTAssertThrowsError(try file.openGroup("plain").childNames(order: .creation))
        XCTAssertEqual(file.kind(of: "plain"), .group)
        XCTAssertEqual(file.kind(of: "plain/zeta"), .dataset)
        XCTAssertNil(file.kind(of: "nothing/here"))
        XCTAssertTrue(file.contains("tracked/alpha"))
        XCTAssertFalse(file.contains("tracked/omega"))
    }

    func testFailuresBecomeErrorsNamingTheObject() throws {
        XCTAssertThrowsError(try File.open(path("missing.h5"))) { error in
            XCTAssertEqual("\(error)", "HDF5: cannot open HDF5 file \(self.path("missing.h5")): No such file or directory")
        }
        let garbage = path("garbage.h5")
        try Data("<html>not hdf5</html>".utf8).write(to: URL(fileURLWithPath: garbage))
        XCTAssertThrowsError(try File.open(garbage))
        let file = try File.create(path("dup.h5"))
        _ = try file.createGroup("g")
        XCTAssertThrowsError(try file.createGroup("g")) { error in
            XCTAssertTrue("\(error)".contains("cannot create group '/g'"), "\(error)")
        }
        XCTAssertThrowsError(try file.openDataset("g/none")) { error in
            XCTAssertEqual("\(error)", "HDF5: no dataset '/g/none' in \(path("dup.h5"))")
        }
    }
}

import CHDF5

/// Reads a dataset with an explicit memory type (to check HDF5's own conversion of our float16).
private func H5DreadShim(_ ds: Dataset, _ mem: Handle, _ buffer: UnsafeMutableRawPointer) -> herr_t {
    H5Dread(ds.id, mem.id, bissl_H5S_ALL(), bissl_H5S_ALL(), bissl_H5P_DEFAULT(), buffer)
}
