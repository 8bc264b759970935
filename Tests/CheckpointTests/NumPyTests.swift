@testable import Checkpoint
import Crypto
import Foundation
import XCTest
import TestSupport

/// `.npy` / `.npz` reader and writer against files written by `numpy.savez`, `numpy.savez_compressed`
/// and `numpy.lib.format.write_array` (tools/fixtures/make_safetensors_npz_fixtures.py). Expected
/// values are what numpy itself read back, in Tests/Fixtures/npz/expected.json.
final class NumPyTests: XCTestCase {
    nonisolated(unsafe) static let expected = try! Fixtures.jsonObject("npz/expected.json")

    func expectation(_ file: String) -> [String: Any] { Self.expected[file] as! [String: Any] }

    func assertMatchesNumPy(_ sd: StateDict, _ file: String, order: Bool = true, line: UInt = #line) throws {
        let exp = expectation(file)
        let expTensors = exp["tensors"] as! [String: [String: Any]]
        if order { XCTAssertEqual(Array(sd.keys), exp["order"] as? [String], line: line) }
        XCTAssertEqual(sd.count, expTensors.count, line: line)
        for (name, t) in sd {
            let e = try XCTUnwrap(expTensors[name], name, line: line)
            XCTAssertEqual(t.dtype.rawValue, e["dtype"] as? String, name, line: line)
            XCTAssertEqual(t.shape, e["shape"] as? [Int], name, line: line)
            XCTAssertEqual(sha256(t.data), e["sha256"] as? String, name, line: line)
            if let sum = e["sum"] as? Double {
                XCTAssertEqual(t.doubles().reduce(0, +), sum, accuracy: 1e-9 * max(1, abs(sum)), name, line: line)
            }
        }
    }

    func testReadsSavezAndSavezCompressed() throws {
        for (file, compression) in [("resnet18_w4.npz", "stored"), ("resnet18_w4_compressed.npz", "deflated")] {
            let doc = try NumPyArchive.read(Fixtures.url("npz/\(file)"))
            XCTAssertEqual(doc.format, .npz)
            XCTAssertEqual(doc.container, "npz")
            XCTAssertEqual(doc.metadata, ["compression": compression])
            XCTAssertEqual(doc.warnings, [])
            let sd = try stateDict(doc)
            try assertMatchesNumPy(sd, file)
            XCTAssertEqual(sd["bn1.num_batches_tracked"]?.shape, [])
            XCTAssertEqual(sd["bn1.num_batches_tracked"]?.dtype, .int64)
            XCTAssertEqual(sd["conv1.weight"]?.dtype, .float16)
        }
        // Same tensors whichever way numpy stored them.
        XCTAssertEqual(try stateDict(NumPyArchive.read(Fixtures.url("npz/resnet18_w4.npz"))),
                       try stateDict(NumPyArchive.read(Fixtures.url("npz/resnet18_w4_compressed.npz"))))
    }

    /// Fortran order, big-endian (incl. both at once), 0-dim, empty, bool and small integer arrays.
    func testFortranBigEndianScalarAndEmptyArraysReadAsNumPyReadsThem() throws {
        let doc = try NumPyArchive.read(Fixtures.url("npz/special.npz"))
        let sd = try stateDict(doc)
        try assertMatchesNumPy(sd, "special.npz")
        let exp = expectation("special.npz")
        let headers = exp["headers"] as! [String: [String: Any]]
        // The fixture really exercises the paths: check its headers say so.
        XCTAssertEqual(headers["fortran"]?["fortran_order"] as? Bool, true)
        XCTAssertEqual(headers["big_fortran_f8"]?["descr"] as? String, ">f8")
        XCTAssertEqual(headers["big_fortran_f8"]?["fortran_order"] as? Bool, true)
        // Bits are already compared by SHA-256; values too, within the last-digit error of
        // Foundation's JSON number parsing on Linux (not correctly rounded).
        let values = exp["values"] as! [String: [Double]]
        for (name, t) in sd {
            let theirs = try XCTUnwrap(values[name], name)
            XCTAssertEqual(t.count, theirs.count, name)
            for (a, b) in zip(t.doubles(), theirs) {
                XCTAssertEqual(a, b, accuracy: 1e-15 * max(1, abs(b)), name)
            }
        }
        XCTAssertEqual(sd["scalar_f8"]?.shape, [])
        XCTAssertEqual(sd["scalar_f8"]?.doubles(), [2.5])
        XCTAssertEqual(sd["empty"]?.shape, [0, 3])
        XCTAssertEqual(sd["fortran2d_i64"]?.doubles(), (0..<12).map(Double.init))
        XCTAssertEqual(sd["big_i8"]?.doubles(), [1, -2, 1_099_511_627_776])
    }

    func testObjectArraysAreRefusedWithoutUnpickling() {
        XCTAssertThrowsError(try NumPyArchive.read(Fixtures.url("npz/object.npz"))) { error in
            guard case .unsafe(let message) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("meta.npy") && message.contains("|O"), message)
        }
    }

    func testReadsNpyVersions2And3() throws {
        for name in ["v2.npy", "v3.npy"] {
            let url = Fixtures.url("npz/\(name)")
            let raw = try Data(contentsOf: url)
            XCTAssertEqual(Int(raw[6]), (expectation(name)["version"] as! [Int])[0])
            let t = try NumPyArray.read(url)
            try assertMatchesNumPy(["array": t], name, order: false)
            XCTAssertEqual(t.floats(), (0..<24).map { Float($0) * 0.25 })
        }
    }

    /// Our `.npy` encoding is byte-for-byte what `numpy.save` wrote for every C-ordered little-endian member.
    func testEncoderMatchesNumPySaveByteForByte() throws {
        var checked = 0
        for file in ["resnet18_w4.npz", "special.npz"] {
            let zip = try ZipArchive(url: Fixtures.url("npz/\(file)"))
            for entry in zip.entries {
                let bytes = try zip.data(for: entry)
                let headers = (expectation(file)["headers"] as? [String: [String: Any]]) ?? [:]
                if let h = headers[String(entry.name.dropLast(4))],
                   h["fortran_order"] as? Bool == true || (h["descr"] as? String)?.first == ">" {
                    continue
                }
                let t = try NumPyArray.decode(bytes, name: entry.name)
                XCTAssertEqual(NumPyArray.encode(t), bytes, entry.name)
                checked += 1
            }
        }
        XCTAssertEqual(checked, 122 + 9)
    }

    /// bfloat16 1.0, -2.0, 0.5, 3.140625 (exact in bfloat16, so exact in float32 too).
    private let bfloat16 = try! Tensor(dtype: .bfloat16, shape: [2, 2], data: Data([0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3F, 0x49, 0x40]))

    func testBFloat16BitsRoundTripUnderTheirOwnKeysStoredAndCompressed() throws {
        var sd = try stateDict(NumPyArchive.read(Fixtures.url("npz/special.npz")))
        sd["bf"] = bfloat16
        sd["dir/with/slashes.weight"] = Tensor(float32: [1, 2], shape: [2])
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        for compressed in [false, true] {
            let out = dir.appendingPathComponent("rt-\(compressed).npz")
            XCTAssertEqual(try NumPyArchive.write(sd, to: out, compressed: compressed, bfloat16: .bits), ["bf"])
            let doc = try NumPyArchive.read(out)
            XCTAssertEqual(doc.metadata["compression"], compressed ? "deflated" : "stored")
            XCTAssertEqual(try stateDict(doc), sd)
            XCTAssertEqual(Array(try stateDict(doc).keys), Array(sd.keys))
            XCTAssertEqual(doc.warnings, [])
            let zip = try ZipArchive(url: out)
            XCTAssertTrue(zip.entries.allSatisfy { $0.method == (compressed ? 8 : 0) })
            let raw = try zip.data(for: try XCTUnwrap(zip.entry(named: "bf.npy")))
            XCTAssertTrue(String(decoding: raw.prefix(128), as: UTF8.self).contains("'descr': '<u2'"))
            let meta = try zip.data(for: try XCTUnwrap(zip.entry(named: NumPyArchive.dtypesMember)))
            XCTAssertEqual(String(decoding: meta, as: UTF8.self), #"{"bf":"bfloat16"}"#)
            XCTAssertEqual(zip.entries.last?.name, NumPyArchive.dtypesMember)
        }
    }

    func testBFloat16IsUpcastExactlyToFloat32ByDefault() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("up.npz")
        let sd: StateDict = ["w": Tensor(float32: [7], shape: [1]), "bf": bfloat16]
        XCTAssertEqual(try NumPyArchive.write(sd, to: out), ["bf"])
        let back = try stateDict(NumPyArchive.read(out))
        XCTAssertEqual(Array(back.keys), ["w", "bf"])
        XCTAssertEqual(back["bf"], Tensor(float32: [1.0, -2.0, 0.5, 3.140625], shape: [2, 2]))
        XCTAssertNil(try ZipArchive(url: out).entry(named: NumPyArchive.dtypesMember))
    }

    func testInterchangeNotesTheUpcastAndRefusesBF16ForOtherFormats() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let checkpoint = Checkpoint(components: ["tensors": ["a": bfloat16, "b": bfloat16]], architecture: nil,
                                    provenance: Provenance(stage: "imported"))
        let notes = try Interchange.write(checkpoint, to: dir.appendingPathComponent("a.npz"), format: .npz)
        XCTAssertEqual(notes, ["2 bfloat16 tensors written as float32 (exact: NumPy has no bfloat16); --bf16 bits keeps the 16-bit patterns as uint16 under the same keys"])
        XCTAssertEqual(try Interchange.write(checkpoint, to: dir.appendingPathComponent("b.npz"), format: .npz,
                                             options: .init(bfloat16: .bits)), [])
        XCTAssertThrowsError(try Interchange.write(checkpoint, to: dir.appendingPathComponent("c.pth"), format: .pth,
                                                   options: .init(bfloat16: .float32))) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("--bf16 applies only to npz output, not pth"))
        }
    }

    func testTheEarlierBF16SuffixRuleStillReads() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var writer = ZipWriter(url: dir.appendingPathComponent("old.npz"))
        try writer.add(name: "layer.weight.bf16.npy", data: NumPyArray.encode(bfloat16))
        try writer.finish()
        XCTAssertEqual(try stateDict(NumPyArchive.read(dir.appendingPathComponent("old.npz"))), ["layer.weight": bfloat16])
    }

    func testUInt16WithoutABFloat16RuleIsRefused() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bf = try Tensor(dtype: .bfloat16, shape: [1], data: Data([0x80, 0x3F]))
        var writer = ZipWriter(url: dir.appendingPathComponent("u2.npz"))
        try writer.add(name: "plain.npy", data: NumPyArray.encode(bf))
        try writer.finish()
        XCTAssertThrowsError(try NumPyArchive.read(dir.appendingPathComponent("u2.npz"))) { error in
            guard case .unsupported(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("plain.npy") && m.contains("u2"), m)
        }
    }

    func testABadDtypesMemberIsRefusedWithOneMessage() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, Tensor, String)] = [
            ("[1, 2]", bfloat16, "dtypes.json is not a JSON object"),
            (#"{"w": "float16"}"#, bfloat16, "dtypes.json gives 'w' the dtype float16; only \"bfloat16\" is recorded there"),
            (#"{"w": "bfloat16", "gone": "bfloat16"}"#, bfloat16, "dtypes.json lists 'gone', which no member holds"),
            (#"{"w": "bfloat16"}"#, Tensor(float32: [1], shape: [1]), "dtypes.json says 'w' holds bfloat16 bits, but its member is 'f4', not '<u2'"),
        ]
        for (i, (json, tensor, message)) in cases.enumerated() {
            let url = dir.appendingPathComponent("bad\(i).npz")
            var writer = ZipWriter(url: url)
            try writer.add(name: "w.npy", data: NumPyArray.encode(tensor))
            try writer.add(name: NumPyArchive.dtypesMember, data: Data(json.utf8))
            try writer.finish()
            XCTAssertThrowsError(try NumPyArchive.read(url)) { error in
                XCTAssertEqual(error as? CheckpointError, .corrupt("npz file bad\(i).npz: \(message)"))
            }
        }
    }

    func testNonArrayMembersAreSkippedWithAWarningAndNonZipIsNamed() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var writer = ZipWriter(url: dir.appendingPathComponent("m.npz"))
        try writer.add(name: "README.txt", data: Data("hello".utf8))
        try writer.add(name: "a.npy", data: NumPyArray.encode(Tensor(int64: 3)))
        try writer.finish()
        let doc = try NumPyArchive.read(dir.appendingPathComponent("m.npz"))
        XCTAssertEqual(try stateDict(doc)["a"]?.doubles(), [3])
        XCTAssertEqual(doc.warnings.count, 1)
        XCTAssertTrue(doc.warnings[0].contains("README.txt"))

        let text = dir.appendingPathComponent("fake.npz")
        try Data("<html>not an archive</html>".utf8).write(to: text)
        XCTAssertThrowsError(try NumPyArchive.read(text)) { error in
            guard case .notACheckpoint = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    func testDamagedNpyArraysAreRefusedWithTheReason() throws {
        let good = NumPyArray.encode(Tensor(float32: [1, 2, 3], shape: [3]))
        func refuse(_ data: Data, _ needle: String, line: UInt = #line) {
            XCTAssertThrowsError(try NumPyArray.decode(data, name: "x.npy"), line: line) { error in
                XCTAssertTrue("\(error)".contains(needle), "\(error)", line: line)
                XCTAssertTrue("\(error)".contains("x.npy"), "\(error)", line: line)
            }
        }
        refuse(good.dropLast(1), "truncated array data")
        refuse(Data("PK\u{3}\u{4}nonsense".utf8), "magic")
        var v9 = good; v9[6] = 9
        refuse(v9, "version 9.0")
        func withHeader(_ dict: String, data: Data = Data(count: 12)) -> Data {
            var out = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
            let h = Array(dict.utf8) + [0x0A]
            out.append(contentsOf: [UInt8(h.count & 0xFF), UInt8(h.count >> 8)])
            out.append(contentsOf: h)
            return out + data
        }
        XCTAssertEqual(try NumPyArray.decode(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"), name: "x").floats(), [0, 0, 0])
        XCTAssertEqual(try NumPyArray.decode(withHeader("{\"shape\": (3L,), \"descr\": \"<f4\", \"fortran_order\": False}"), name: "x").shape, [3])
        refuse(withHeader("{'descr': '<f4', 'shape': (3,)}"), "keys")
        refuse(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}"), "keys")
        refuse(withHeader("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}"), "fortran_order")
        refuse(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}"), "shape")
        refuse(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)"), "valid dict literal")
        refuse(withHeader("{'descr': '<f4', 'fortran_order': __import__('os'), 'shape': (3,)}"), "valid dict literal")
        refuse(withHeader("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}"), "'<c8' is not supported")
        refuse(withHeader("{'descr': '<U3', 'fortran_order': False, 'shape': (1,)}"), "not supported")
        refuse(withHeader("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}"), "structured")
        refuse(withHeader("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}"), "unpickling")
        refuse(withHeader("{'descr': 'O', 'fortran_order': False, 'shape': (1,)}"), "unpickling")
        // Trailing bytes are ignored, as numpy.load ignores them, with a warning.
        let extra = try NumPyArray.decodeRaw(good + Data([1, 2]), name: "x.npy")
        XCTAssertEqual(extra.warnings.count, 1)
    }

    func testFortranToCMatchesIndexArithmetic() {
        // shape (2, 3, 4): Fortran element (i, j, k) at i + 2*j + 6*k holds 100*i + 10*j + k.
        let shape = [2, 3, 4]
        var fortran = [Int32](repeating: 0, count: 24)
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { fortran[i + 2 * j + 6 * k] = Int32(100 * i + 10 * j + k) } } }
        let out = NumPyArray.fortranToC(fortran.withUnsafeBytes { Data($0) }, shape: shape, size: 4)
        let c = out.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        var expected: [Int32] = []
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { expected.append(Int32(100 * i + 10 * j + k)) } } }
        XCTAssertEqual(c, expected)
    }
}
