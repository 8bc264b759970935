@testable import Checkpoint
import Crypto
import Foundation
import XCTest
import TestSupport

/// Expected values of a fixture, computed by torch/numpy in tools/fixtures/make_pth_fixtures.py.
struct TorchExpectation: Decodable {
    struct Value: Decodable {
        var kind: String
        var dtype: String?
        var shape: [Int]?
        var sha256: String?
        var storage_group: Int?
        var storage_offset: Int?
        var stride: [Int]?
        var value: JSONValue?
        var hex: String?
    }
    var values: [String: Value]
    var keys: [String]?
    var metadata: [String: Int]?
    var locations: [String: String]?

    static func load(_ name: String) throws -> TorchExpectation {
        try JSONDecoder().decode(TorchExpectation.self, from: Data(contentsOf: Fixtures.url("pth/\(name)")))
    }
}

/// A JSON number as Double (JSONValue decodes `0.0` as an integer).
func number(_ v: JSONValue?) -> Double? {
    switch v {
    case .double(let d)?: return d
    case .int(let i)?: return Double(i)
    default: return nil
    }
}

enum ObjectTree {
    /// Every leaf of the tree by dotted key path (dict keys, list/tuple indices), as the fixture
    /// script's `describe` flattens the Python object.
    static func flatten(_ value: ObjectValue, _ path: [String] = [], into out: inout [String: ObjectValue]) {
        switch value {
        case .dict(let entries):
            for e in entries { flatten(e.value, path + [e.key.keyText], into: &out) }
        case .list(let items), .tuple(let items):
            for (i, item) in items.enumerated() { flatten(item, path + [String(i)], into: &out) }
        default:
            out[path.joined(separator: ".")] = value
        }
    }

    static func flatten(_ value: ObjectValue) -> [String: ObjectValue] {
        var out: [String: ObjectValue] = [:]
        flatten(value, into: &out)
        return out
    }

    static func entry(_ value: ObjectValue, _ key: String) -> ObjectValue? {
        guard case .dict(let entries) = value else { return nil }
        return entries.first { $0.key.stringValue == key }?.value
    }
}

final class PyTorchReaderTests: XCTestCase {
    /// Compares every value torch recorded with what we decoded: tensors bit for bit (SHA-256 of
    /// the C-contiguous little-endian bytes), dtype, shape, and scalars; and that we decoded no
    /// tensor torch does not have.
    func assertMatches(_ doc: SourceDocument, _ expected: TorchExpectation, ignoring: Set<String> = [],
                       file: StaticString = #filePath, line: UInt = #line) {
        let flat = ObjectTree.flatten(doc.root)
        for (path, want) in expected.values.sorted(by: { $0.key < $1.key }) where !ignoring.contains(path) {
            guard let got = flat[path] else { XCTFail("missing \(path)", file: file, line: line); continue }
            switch (want.kind, got) {
            case ("tensor", .tensor(let t)):
                XCTAssertEqual(t.tensor.dtype.rawValue, want.dtype, path, file: file, line: line)
                XCTAssertEqual(t.tensor.shape, want.shape, path, file: file, line: line)
                XCTAssertEqual(sha256(t.tensor.data), want.sha256, path, file: file, line: line)
            case ("int", .int(let i)):
                XCTAssertEqual(want.value, .string(String(i)), path, file: file, line: line)
            case ("int", .bigInt(let s)):
                XCTAssertEqual(want.value, .string(s), path, file: file, line: line)
            case ("float", .float(let d)):
                XCTAssertEqual(number(want.value), d, path, file: file, line: line)
            case ("bool", .bool(let b)):
                XCTAssertEqual(want.value, .bool(b), path, file: file, line: line)
            case ("string", .string(let s)):
                XCTAssertEqual(want.value, .string(s), path, file: file, line: line)
            case ("bytes", .bytes(let b)):
                XCTAssertEqual(want.hex, b.map { String(format: "%02x", $0) }.joined(), path, file: file, line: line)
            case ("none", .none), ("other", _):
                break
            default:
                XCTFail("\(path): expected \(want.kind), got \(got)", file: file, line: line)
            }
        }
        let ours = Set(flat.compactMap { k, v -> String? in if case .tensor = v { return k } else { return nil } })
        let theirs = Set(expected.values.filter { $0.value.kind == "tensor" }.map(\.key))
        XCTAssertEqual(ours, theirs, "tensor key paths", file: file, line: line)
    }

    func read(_ name: String) throws -> SourceDocument {
        try PyTorchFile.read(Fixtures.url("pth/\(name)"))
    }

    func error(_ name: String) -> CheckpointError? {
        do {
            _ = try read(name)
            XCTFail("\(name) was accepted")
            return nil
        } catch {
            return error as? CheckpointError
        }
    }

    // MARK: - State dicts

    func testResNet18ZipStateDictMatchesTorch() throws {
        let doc = try read("resnet18_w2.pth")
        let expected = try TorchExpectation.load("resnet18_w2.expected.json")
        XCTAssertEqual(doc.format, .pth)
        XCTAssertEqual(doc.container, "pytorch-zip")
        XCTAssertEqual(doc.metadata["zip_folder"], "resnet18_w2")
        XCTAssertEqual(doc.metadata["byteorder"], "little")
        XCTAssertEqual(doc.metadata["byteorder_record"], "little")
        XCTAssertEqual(doc.metadata["version"], "3")
        XCTAssertEqual(doc.warnings, [])
        assertMatches(doc, expected)
        // Keys in torch's order, then the `_metadata` attribute set by BUILD.
        guard case .dict(let entries) = doc.root else { return XCTFail("root is not a dict") }
        XCTAssertEqual(entries.map { $0.key.stringValue ?? "?" }, expected.keys! + ["_metadata"])
        // `_metadata` exactly as torch recorded it (BatchNorm modules at version 2).
        guard case .dict(let meta)? = ObjectTree.entry(doc.root, "_metadata") else { return XCTFail("no _metadata") }
        var versions: [String: Int] = [:]
        for e in meta {
            if case .int(let v)? = ObjectTree.entry(e.value, "version") { versions[e.key.stringValue!] = Int(v) }
        }
        XCTAssertEqual(versions, expected.metadata)
        XCTAssertEqual(versions["bn1"], 2)
        // Every storage comes from the CPU and is its own record.
        let flat = ObjectTree.flatten(doc.root)
        if case .tensor(let t)? = flat["conv1.weight"] {
            XCTAssertEqual(t.location, "cpu")
            XCTAssertEqual(t.storageKey, "0")
            XCTAssertEqual(t.storageOffset, 0)
        } else { XCTFail("conv1.weight") }
    }

    func testResNet50HasAll320Keys() throws {
        let doc = try read("resnet50_w1.pth")
        let expected = try TorchExpectation.load("resnet50_w1.expected.json")
        XCTAssertEqual(expected.keys?.count, 320)
        assertMatches(doc, expected)
    }

    func testLegacyFormatReadsTheSameStateDict() throws {
        let doc = try read("resnet18_w2_legacy.pth")
        XCTAssertEqual(doc.container, "pytorch-legacy")
        XCTAssertEqual(doc.metadata["byteorder"], "little")
        let expected = try TorchExpectation.load("resnet18_w2.expected.json")
        assertMatches(doc, expected)
        guard case .dict(let entries) = doc.root else { return XCTFail("root is not a dict") }
        XCTAssertEqual(entries.map { $0.key.stringValue ?? "?" }, expected.keys! + ["_metadata"])
    }

    func testPickleProtocol4DataPkl() throws {
        let doc = try read("protocol4.pth")
        XCTAssertEqual(doc.metadata["zip_folder"], "protocol4")
        assertMatches(doc, try TorchExpectation.load("buffer_saved.expected.json"))
        let legacy = try read("protocol4_legacy.pth")
        XCTAssertEqual(legacy.container, "pytorch-legacy")
        assertMatches(legacy, try TorchExpectation.load("buffer_saved.expected.json"))
    }

    func testTopFolderIsTakenFromTheFirstRecord() throws {
        let doc = try read("buffer_saved.pth")
        XCTAssertEqual(doc.metadata["zip_folder"], "archive")
        assertMatches(doc, try TorchExpectation.load("buffer_saved.expected.json"))
    }

    func testTrainingCheckpointWithOptimizerScalarsHalfBFloat16ParameterAndNumpyScalars() throws {
        let doc = try read("training_ckpt.pth")
        XCTAssertEqual(doc.warnings, [])
        assertMatches(doc, try TorchExpectation.load("training_ckpt.expected.json"))
        let flat = ObjectTree.flatten(doc.root)
        if case .string(let device)? = flat["device"] { XCTAssertEqual(device, "cuda:1") } else { XCTFail("device") }
        if case .string(let dtype)? = flat["dtype"] { XCTAssertEqual(dtype, "torch.float16") } else { XCTFail("dtype") }
        // bf16 bits kept: 1.0, -2.5, 3.140625 are exact in bf16.
        if case .tensor(let t)? = flat["bf16"] { XCTAssertEqual(t.tensor.floats(), [1.0, -2.5, 3.140625]) } else { XCTFail("bf16") }
    }

    // MARK: - Cases

    func testC6SharedStoragesAndViews() throws {
        let doc = try read("c6_alias.pth")
        let expected = try TorchExpectation.load("c6_alias.expected.json")
        assertMatches(doc, expected)
        let flat = ObjectTree.flatten(doc.root)
        var keyOfGroup: [Int: String] = [:]
        for (path, want) in expected.values {
            guard case .tensor(let t)? = flat[path] else { XCTFail(path); continue }
            XCTAssertEqual(t.storageOffset, want.storage_offset, path)
            XCTAssertEqual(t.stride, want.stride, path)
            let group = want.storage_group!
            if let key = keyOfGroup[group] { XCTAssertEqual(t.storageKey, key, "\(path) shares storage") }
            else { keyOfGroup[group] = t.storageKey }
        }
        XCTAssertEqual(Set(keyOfGroup.values).count, keyOfGroup.count, "distinct storages keep distinct keys")
    }

    func testC7ByteOrderAbsentLittleAndBigGiveIdenticalValues() throws {
        let expected = try TorchExpectation.load("c7.expected.json")
        for (file, record, order) in [("c7_little.pth", "little", "little"), ("c7_no_byteorder.pth", "absent", "little"),
                                      ("c7_big.pth", "big", "big")] {
            let doc = try read(file)
            XCTAssertEqual(doc.metadata["byteorder_record"], record, file)
            XCTAssertEqual(doc.metadata["byteorder"], order, file)
            assertMatches(doc, expected)
        }
    }

    func testC8TruncatedFileReportsSizes() throws {
        let sizes = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: Fixtures.url("pth/c8.expected.json")))
        XCTAssertEqual(error("c8_truncated.pth"), .corrupt(
            "c8_truncated.pth: truncated ZIP: file is \(sizes["truncated_size"]!) bytes, its \(sizes["records"]!) records end at byte \(sizes["directory_start"]!) and the central directory after them is missing or cut"))
    }

    func testC8FlippedByteIsACRCMismatchNamingTheTensor() throws {
        let expected = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: Fixtures.url("pth/c8.expected.json")))
        XCTAssertEqual(error("c8_flipped.pth"), .corrupt(
            "c8_flipped.pth: CRC mismatch in \(expected["flipped_record"]!) (tensor \(expected["flipped_tensor"]!)): corrupted, or written with CRC disabled"))
    }

    func testC9HTMLPageAndGitLFSPointer() throws {
        XCTAssertEqual(error("c9_html.pth"), .notACheckpoint("c9_html.pth is an HTML page (a download that returned a web page?)"))
        let lfs = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: Fixtures.url("pth/c9.expected.json")))
        guard case .notACheckpoint(let message)? = error("c9_lfs.pth") else { return XCTFail("not .notACheckpoint") }
        XCTAssertTrue(message.contains("Git LFS pointer"), message)
        XCTAssertTrue(message.contains("oid sha256:\(lfs["oid"]!)"), message)
        XCTAssertTrue(message.contains("expected size \(lfs["size"]!) bytes"), message)
    }

    func testC10PlainPickleIsRefusedWithItsGlobals() throws {
        let expected = try JSONDecoder().decode([String: [String]].self, from: Data(contentsOf: Fixtures.url("pth/c10.expected.json")))
        for (file, key) in [("c10_pickle_p4.pth", "p4"), ("c10_pickle_p2.pth", "p2"), ("c10_pickle_p0.pth", "p0")] {
            XCTAssertEqual(try FileSniffer.sniff(Fixtures.url("pth/\(file)")), .rawPickle(globals: expected[key]!), file)
            guard case .notACheckpoint(let message)? = error(file) else { XCTFail("not .notACheckpoint"); continue }
            XCTAssertTrue(message.contains(expected[key]!.joined(separator: ", ")), message)
            XCTAssertTrue(message.contains("torch.save(model.state_dict()"), message)
        }
    }

    func testC16DeviceTagsAreKeptAndDataLoadsOnCPU() throws {
        let doc = try read("c16_cuda.pth")
        let expected = try TorchExpectation.load("c16.expected.json")
        assertMatches(doc, expected)
        let flat = ObjectTree.flatten(doc.root)
        for (name, location) in expected.locations! {
            guard case .tensor(let t)? = flat[name] else { XCTFail(name); continue }
            XCTAssertEqual(t.location, location, name)
        }
    }

    func testUnknownGlobalInANonTensorFieldIsSkippedWithAWarning() throws {
        let doc = try read("namespace_ckpt.pth")
        assertMatches(doc, try TorchExpectation.load("namespace_ckpt.expected.json"))
        guard case .opaque(let global)? = ObjectTree.entry(doc.root, "args") else { return XCTFail("args not opaque") }
        XCTAssertEqual(global, "argparse.Namespace")
        XCTAssertEqual(doc.warnings.count, 1)
        XCTAssertTrue(doc.warnings[0].contains("args"), doc.warnings[0])
        XCTAssertTrue(doc.warnings[0].contains("argparse.Namespace"), doc.warnings[0])
    }

    func testTensorsThatNeedUnknownGlobalsAreRefused() throws {
        guard case .unsafe(let m1)? = error("unsafe_rebuild.pth") else { return XCTFail("not .unsafe") }
        XCTAssertTrue(m1.contains("evil.module._rebuild_tensor_v2"), m1)
        guard case .unsafe(let m2)? = error("unsafe_storage.pth") else { return XCTFail("not .unsafe") }
        XCTAssertTrue(m2.contains("evil.FloatStorage"), m2)
    }

    func testTensorWithAttributesAndParameterWithStateRebuildAsPlainTensors() throws {
        let doc = try read("rebuild_variants.pth")
        XCTAssertEqual(doc.warnings, [])
        assertMatches(doc, try TorchExpectation.load("rebuild_variants.expected.json"))
    }

    func testUnsupportedDTypeAndUnknownTensorSubclass() throws {
        guard case .unsupported(let m1)? = error("uint16.pth") else { return XCTFail("not .unsupported") }
        XCTAssertTrue(m1.contains("torch.uint16"), m1)
        guard case .unsafe(let m2)? = error("unsafe_subclass.pth") else { return XCTFail("not .unsafe") }
        XCTAssertTrue(m2.contains("__main__.MyTensor"), m2)
    }

    func testWholePickledModelIsRefusedWithAHint() throws {
        let expected = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: Fixtures.url("pth/whole_model.expected.json")))
        for file in ["whole_model.pth", "whole_model_legacy.pth"] {
            guard case .notACheckpoint(let m)? = error(file) else { XCTFail("not .notACheckpoint"); continue }
            XCTAssertTrue(m.contains("holds a pickled \(expected["class"]!) object holding \(expected["tensors"]!) tensors"), m)
            XCTAssertTrue(m.contains("torch.save(model.state_dict()"), m)
        }
    }

    func testTorchScriptArchiveIsRefusedClearly() throws {
        guard case .unsupported(let message)? = error("torchscript.pt") else { return XCTFail("not .unsupported") }
        XCTAssertTrue(message.contains("TorchScript"), message)
    }
}
