@testable import Checkpoint
import Crypto
import Foundation
import XCTest
import TestSupport

/// safetensors reader and writer against files written by `safetensors.torch.save_file`
/// (tools/fixtures/make_safetensors_npz_fixtures.py). Expected values come from torch in
/// Tests/Fixtures/safetensors/expected.json, never from our own output.
final class SafetensorsTests: XCTestCase {
    nonisolated(unsafe) static let expected = try! Fixtures.jsonObject("safetensors/expected.json")

    func expectation(_ file: String) -> [String: Any] { Self.expected[file] as! [String: Any] }

    /// Every tensor of `doc` has the dtype, shape, SHA-256 and (for floats) sum torch reported.
    func assertMatchesTorch(_ doc: SourceDocument, _ file: String, line: UInt = #line) throws {
        let exp = expectation(file)
        let tensors = try stateDict(doc)
        XCTAssertEqual(Array(tensors.keys), exp["order"] as? [String], "tensor order is the header order", line: line)
        let expTensors = exp["tensors"] as! [String: [String: Any]]
        XCTAssertEqual(tensors.count, expTensors.count, line: line)
        for (name, t) in tensors {
            let e = try XCTUnwrap(expTensors[name], name, line: line)
            XCTAssertEqual(t.dtype.rawValue, e["dtype"] as? String, name, line: line)
            XCTAssertEqual(t.shape, e["shape"] as? [Int], name, line: line)
            XCTAssertEqual(sha256(t.data), e["sha256"] as? String, name, line: line)
            if let sum = e["sum"] as? Double {
                let ours = t.doubles().reduce(0, +)
                XCTAssertEqual(ours, sum, accuracy: 1e-9 * max(1, abs(sum)), name, line: line)
            }
        }
        XCTAssertEqual(doc.metadata, exp["metadata"] as? [String: String], line: line)
    }

    func testReadsNarrowResNet18WrittenBySafetensorsTorch() throws {
        let doc = try SafetensorsFile.read(Fixtures.url("safetensors/resnet18_w4.safetensors"))
        XCTAssertEqual(doc.format, .safetensors)
        XCTAssertEqual(doc.container, "safetensors")
        try assertMatchesTorch(doc, "resnet18_w4.safetensors")
        XCTAssertEqual(doc.metadata["arch"], "resnet18-w4-small")
        // The reference writer sorts by dtype alignment then name; we keep that, not the model's order.
        let stateDictOrder = expectation("resnet18_w4.safetensors")["state_dict_order"] as! [String]
        XCTAssertNotEqual(Array(try stateDict(doc).keys), stateDictOrder)
        XCTAssertEqual(Set(try stateDict(doc).keys), Set(stateDictOrder))
    }

    func testReadsEveryDtypeAndUnicodeMetadata() throws {
        let doc = try SafetensorsFile.read(Fixtures.url("safetensors/all_dtypes.safetensors"))
        try assertMatchesTorch(doc, "all_dtypes.safetensors")
        XCTAssertEqual(doc.metadata["note"], "ünïcode ✓ \"quoted\"")
        let sd = try stateDict(doc)
        XCTAssertEqual(sd["scalar"]?.shape, [])
        XCTAssertEqual(sd["scalar"]?.doubles(), [42])
        XCTAssertEqual(sd["i8"]?.doubles(), [-128, 0, 127])
        XCTAssertEqual(sd["bool"]?.doubles(), [1, 0, 1])
    }

    /// C13: `[0]` and `[2, 0]` tensors with offsets `[b, b]` next to a normal tensor.
    func testEmptyTensorsAreAcceptedAndRoundTripC13() throws {
        let url = Fixtures.url("safetensors/empty.safetensors")
        let doc = try SafetensorsFile.read(url)
        try assertMatchesTorch(doc, "empty.safetensors")
        let sd = try stateDict(doc)
        XCTAssertEqual(sd["e0"]?.shape, [0])
        XCTAssertEqual(sd["e20"]?.shape, [2, 0])
        XCTAssertEqual(sd["e0"]?.data.count, 0)
        XCTAssertEqual(sd["w"]?.floats(), [1.5, -2.25, 3.0])
        // Never aliases: no storage key that layout resolution could match up.
        guard case .dict(let entries) = doc.root else { return XCTFail("root is not a dict") }
        for entry in entries {
            guard case .tensor(let st) = entry.value else { return XCTFail("not a tensor") }
            XCTAssertNil(st.storageKey)
        }

        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("empty.safetensors")
        // Empty tensors first, between and last: every position must give offsets [b, b].
        var reordered = StateDict()
        for key in ["e0", "w", "e20"] { reordered[key] = sd[key] }
        try SafetensorsFile.write(reordered, metadata: [:], to: out)
        XCTAssertEqual(try stateDict(SafetensorsFile.read(out)), reordered)
        let header = try rawHeader(out)
        XCTAssertTrue(header.contains(#""e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}"#), header)
        XCTAssertTrue(header.contains(#""e20":{"dtype":"F32","shape":[2,0],"data_offsets":[12,12]}"#), header)
    }

    /// C14: BF16 bits are kept exactly; 0x3F80 is 1.0 (it would be 1.875 read as float16).
    func testBFloat16BitsKeptExactlyC14() throws {
        let doc = try SafetensorsFile.read(Fixtures.url("safetensors/bf16.safetensors"))
        try assertMatchesTorch(doc, "bf16.safetensors")
        let t = try XCTUnwrap(try stateDict(doc)["bf"])
        XCTAssertEqual(t.dtype, .bfloat16)
        let exp = expectation("bf16.safetensors")
        XCTAssertEqual(bits16(t.data), (exp["bits"] as! [Int]).map(UInt16.init))
        XCTAssertEqual(bits16(t.data).first, 0x3F80)
        XCTAssertEqual(t.floats().map(Double.init), exp["values"] as? [Double])
        XCTAssertEqual(t.floats().first, 1.0)
    }

    func testFloat16SubnormalsAndInfinities() throws {
        let doc = try SafetensorsFile.read(Fixtures.url("safetensors/f16_subnormal.safetensors"))
        try assertMatchesTorch(doc, "f16_subnormal.safetensors")
        let t = try XCTUnwrap(try stateDict(doc)["h"])
        let exp = expectation("f16_subnormal.safetensors")
        XCTAssertEqual(bits16(t.data), (exp["bits"] as! [Int]).map(UInt16.init))
        // JSON has no infinities: the script writes them as the strings "inf" and "-inf".
        let values = (exp["values"] as! [Any]).map { v -> Double in
            if let s = v as? String { return s == "inf" ? .infinity : s == "-inf" ? -.infinity : .nan }
            return v as! Double
        }
        XCTAssertEqual(values.count, 11)
        XCTAssertEqual(t.floats().map(Double.init), values)
        XCTAssertEqual(t.floats()[0], Float(pow(2.0, -24.0)))
    }

    /// Each malformed file is refused (the fixture script checked the reference refuses it too),
    /// with a one-line message naming the problem or the tensor.
    func testMalformedFilesAreRefusedWithANamedReason() throws {
        let bad = Self.expected["bad"] as! [String: [String: Any]]
        XCTAssertGreaterThanOrEqual(bad.count, 12)
        for (name, info) in bad.sorted(by: { $0.key < $1.key }) {
            let needle = info["needle"] as! String
            XCTAssertThrowsError(try SafetensorsFile.read(Fixtures.url("safetensors/bad/\(name).safetensors")), name) { error in
                guard let e = error as? CheckpointError, case .corrupt(let message) = e else {
                    return XCTFail("\(name): expected a corrupt error, got \(error)")
                }
                XCTAssertTrue(message.contains(needle), "\(name): '\(message)' does not mention \(needle)")
                XCTAssertTrue(message.contains("\(name).safetensors"), "\(name): '\(message)' does not name the file")
                XCTAssertFalse(message.contains("\n"), name)
            }
        }
    }

    func testDtypesBisslDoesNotHandleAreRefusedAsUnsupported() throws {
        let unsupported = Self.expected["unsupported"] as! [String: [String: Any]]
        XCTAssertEqual(Set(unsupported.keys), ["f8_e4m3", "u16"])
        for (name, info) in unsupported {
            let needle = info["needle"] as! String
            XCTAssertThrowsError(try SafetensorsFile.read(Fixtures.url("safetensors/bad/\(name).safetensors"))) { error in
                guard let e = error as? CheckpointError, case .unsupported(let message) = e else {
                    return XCTFail("\(name): expected unsupported, got \(error)")
                }
                XCTAssertTrue(message.contains(needle) && message.contains("'b'"), message)
            }
        }
    }

    /// The reference implementation's own serialization test vector (safetensors/src/tensor.rs,
    /// `test_serialization`): one F32 tensor `attn.0` of shape [1, 2, 3] holding 0...5.
    func testWriterMatchesReferenceSerializationByteForByte() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("ref.safetensors")
        let t = Tensor(float32: [0, 1, 2, 3, 4, 5], shape: [1, 2, 3])
        try SafetensorsFile.write(["attn.0": t], metadata: [:], to: out)
        let reference: [UInt8] = [
            64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
            116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
            58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
            101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
            0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
        ]
        XCTAssertEqual([UInt8](try Data(contentsOf: out)), reference)

        // `test_empty` with metadata {"framework": "pt"}: header padded with 5 spaces to 40 bytes.
        let empty = dir.appendingPathComponent("empty.safetensors")
        try SafetensorsFile.write([:], metadata: ["framework": "pt"], to: empty)
        XCTAssertEqual([UInt8](try Data(contentsOf: empty)), [
            40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
            95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
            116, 34, 125, 125, 32, 32, 32, 32, 32,
        ])
    }

    func testRoundTripKeepsStateDictOrderBitsAndMetadata() throws {
        let source = try stateDict(SafetensorsFile.read(Fixtures.url("safetensors/all_dtypes.safetensors")))
        // Write in a different order than the file's: the writer must keep the state-dict order.
        var sd = StateDict()
        for key in source.keys.reversed() { sd[key] = source[key] }
        sd["odd \"name\"\n\u{1}é"] = Tensor(float32: [7], shape: [1])
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("rt.safetensors")
        let metadata = ["format": "pt", "bissl.content_id": String(repeating: "ab", count: 32), "quote\"": "a\\b"]
        try SafetensorsFile.write(sd, metadata: metadata, to: out)
        let back = try SafetensorsFile.read(out)
        XCTAssertEqual(try stateDict(back), sd)
        XCTAssertEqual(Array(try stateDict(back).keys), Array(sd.keys))
        XCTAssertEqual(back.metadata, metadata)
        let bytes = try Data(contentsOf: out)
        let n = Int(bytes.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        XCTAssertEqual(n % 8, 0)
        XCTAssertEqual(bytes.count, 8 + n + sd.values.reduce(0) { $0 + $1.data.count })
        // The header is JSON any parser accepts, with __metadata__ first.
        let json = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + n))) as! [String: Any]
        XCTAssertEqual(json["__metadata__"] as? [String: String], metadata)
        XCTAssertTrue(try rawHeader(out).hasPrefix(#"{"__metadata__":{"#))
    }

    func testWriterRefusesReservedNameAndLeavesNoFile() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("x.safetensors")
        XCTAssertThrowsError(try SafetensorsFile.write(["__metadata__": Tensor(int64: 1)], metadata: [:], to: out))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
        let missing = dir.appendingPathComponent("no/such/dir/x.safetensors")
        XCTAssertThrowsError(try SafetensorsFile.write(["a": Tensor(int64: 1)], metadata: [:], to: missing)) { error in
            guard case .io = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    /// Tensor data is a view of the mapped file: mutating it must not change the file.
    func testMutatingReadTensorsLeavesTheFileUntouched() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("m.safetensors")
        try FileManager.default.copyItem(at: Fixtures.url("safetensors/empty.safetensors"), to: url)
        let before = try Data(contentsOf: url)
        var t = try XCTUnwrap(try stateDict(SafetensorsFile.read(url))["w"])
        t.data.withUnsafeMutableBytes { $0.storeBytes(of: 0xFFFF_FFFF as UInt32, as: UInt32.self) }
        XCTAssertEqual(t.data.prefix(4), Data([0xFF, 0xFF, 0xFF, 0xFF]))
        XCTAssertEqual(try Data(contentsOf: url), before)
        XCTAssertEqual(try stateDict(SafetensorsFile.read(url))["w"]?.floats(), [1.5, -2.25, 3.0])
    }

    /// Header shapes the reference reader (serde into `usize`, `HashMap<String, String>`) refuses.
    func testHeaderFieldTypesAreChecked() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let buffer = Data(count: 8)
        let cases: [(String, String)] = [
            (#"[1,2]"#, "not a JSON object"),
            (#"{"__metadata__":{"a":1},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, "not a string"),
            (#"{"__metadata__":[],"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, "'__metadata__'"),
            (#"{"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, "shape entry"),
            (#"{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, "shape entry"),
            (#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, "data_offsets"),
            (#"{"t":{"dtype":"F32","shape":[2]}}"#, "has no 'data_offsets'"),
            (#"{"t":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, "'dtype'"),
            (#"{"t":{"dtype":"F32","shape":[99999999999,99999999999,99999999999],"data_offsets":[0,8]}}"#, "too large"),
            // No elements, but strides a writer derives from the shape would overflow.
            (#"{"t":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}}"#, "too large"),
            // An empty tensor inside another tensor's range: the reference refuses it too.
            (#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#, "'e'"),
        ]
        for (i, (json, needle)) in cases.enumerated() {
            var header = Data(json.utf8)
            header.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8))
            var n = UInt64(header.count).littleEndian
            let url = dir.appendingPathComponent("case\(i).safetensors")
            try (Data(bytes: &n, count: 8) + header + buffer).write(to: url)
            XCTAssertThrowsError(try SafetensorsFile.read(url), json) { error in
                guard case .corrupt(let m) = error as? CheckpointError else { return XCTFail("\(json): \(error)") }
                XCTAssertTrue(m.contains(needle), "\(json): \(m)")
            }
        }
        // Extra fields in a tensor entry are ignored, as serde ignores them.
        var header = Data(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":true}}"#.utf8)
        header.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8))
        var n = UInt64(header.count).littleEndian
        let url = dir.appendingPathComponent("extra.safetensors")
        try (Data(bytes: &n, count: 8) + header + buffer).write(to: url)
        XCTAssertEqual(try stateDict(SafetensorsFile.read(url))["t"]?.floats(), [0, 0])
    }

    func testMoreThanTheTensorLimitIsRefusedWhileTheHeaderIsParsed() throws {
        // The parser stops at the member past its limit, before the rest of the header is built.
        let json = Data(#"{"a":1,"b":2,"c":[1,2,3,4]}"#.utf8)
        try json.withUnsafeBytes { raw in
            XCTAssertNoThrow(try SafetensorsJSON.parse(raw, maxMembers: 3))
            XCTAssertThrowsError(try SafetensorsJSON.parse(raw, maxMembers: 2)) { XCTAssertTrue($0 is SafetensorsJSON.TooManyMembers, "\($0)") }
        }
        // One past the limit in a file, and in a state dict to write: both refused by name of the limit.
        let limit = SafetensorsHeader.maxTensors
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var header = "{" + (0...limit).map { #""t\#($0)":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}"# }.joined(separator: ",") + "}"
        header += String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
        var n = UInt64(header.utf8.count).littleEndian
        let url = dir.appendingPathComponent("many.safetensors")
        try (Data(bytes: &n, count: 8) + Data(header.utf8)).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile.read(url)) { error in
            XCTAssertEqual(error as? CheckpointError, .unsupported("safetensors file many.safetensors: the header names more than \(limit) tensors (bissl reads at most \(limit) from one file)"))
        }
        var many = StateDict()
        let empty = try Tensor(dtype: .float32, shape: [0], data: Data())
        for i in 0...limit { many["t\(i)"] = empty }
        let out = dir.appendingPathComponent("out.safetensors")
        XCTAssertThrowsError(try SafetensorsFile.write(many, metadata: [:], to: out)) { XCTAssertTrue("\($0)".contains("at most \(limit)"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    func testHeaderJSONParserKeepsOrderAndDecodesEscapes() throws {
        let text = #" {"b":1,"a":[true,false,null,-0.5e3],"\u00e9\ud83d\ude00\n":"x\"y"} "#
        let value = try Array(text.utf8).withUnsafeBytes { try SafetensorsJSON.parse($0) }
        guard case .object(let members) = value else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.0), ["b", "a", "é😀\n"])
        XCTAssertEqual(members[1].1, .array([.bool(true), .bool(false), .null, .number("-0.5e3")]))
        XCTAssertEqual(members[2].1, .string("x\"y"))
        for bad in [#"{"a":1,}"#, #"{"a" 1}"#, "[1 2]", #"{"a":01}"#, #""\ud800""#, "{} x", "[" + String(repeating: "[", count: 200)] {
            XCTAssertThrowsError(try Array(bad.utf8).withUnsafeBytes { try SafetensorsJSON.parse($0) }, bad)
        }
        XCTAssertEqual(SafetensorsJSON.quote("a\"\\\n\u{1}é"), #""a\"\\\n\u0001é""#)
    }

    // MARK: helpers

    func bits16(_ data: Data) -> [UInt16] {
        data.withUnsafeBytes { raw in (0..<raw.count / 2).map { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) } }
    }

    func rawHeader(_ url: URL) throws -> String {
        let bytes = try Data(contentsOf: url)
        let n = Int(bytes.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        return String(decoding: bytes.subdata(in: 8..<(8 + n)), as: UTF8.self)
    }
}
