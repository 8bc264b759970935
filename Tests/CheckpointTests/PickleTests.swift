@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// The pickle reader, writer and scanner at the opcode level, against pickles Python wrote with
/// every protocol (expected values from Python, tools/fixtures/make_pth_fixtures.py).
final class PickleTests: XCTestCase {
    private func decode(_ data: Data) throws -> (ObjectValue, [String]) {
        var reader = PickleReader(data: data, context: "test")
        let value = try reader.read()
        var conversion = PickleConversion { _, _ in Data() }
        return (try conversion.convert(value), conversion.warnings)
    }

    func testEveryProtocolDecodesToWhatPythonPickled() throws {
        let expected = try TorchExpectation.load("pickle.expected.json")
        for proto in 0...5 {
            let (value, warnings) = try decode(Data(contentsOf: Fixtures.url("pth/pickle_p\(proto).pkl")))
            XCTAssertEqual(warnings, [], "protocol \(proto)")
            let flat = ObjectTree.flatten(value)
            XCTAssertEqual(Set(flat.keys), Set(expected.values.keys), "protocol \(proto)")
            for (path, want) in expected.values {
                let got = flat[path]
                switch (want.kind, got) {
                case ("int", .int(let i)?): XCTAssertEqual(want.value, .string(String(i)), "p\(proto) \(path)")
                case ("int", .bigInt(let s)?): XCTAssertEqual(want.value, .string(s), "p\(proto) \(path)")
                case ("float", .float(let d)?): XCTAssertEqual(number(want.value), d, "p\(proto) \(path)")
                case ("string", .string(let s)?): XCTAssertEqual(want.value, .string(s), "p\(proto) \(path)")
                case ("bool", .bool(let b)?): XCTAssertEqual(want.value, .bool(b), "p\(proto) \(path)")
                case ("bytes", .bytes(let b)?):
                    XCTAssertEqual(want.hex, b.map { String(format: "%02x", $0) }.joined(), "p\(proto) \(path)")
                case ("none", .none?): break
                default: XCTFail("protocol \(proto) \(path): expected \(want.kind), got \(String(describing: got))")
                }
            }
        }
    }

    func testMemoSharingKeepsOrderOfOrderedDict() throws {
        let (value, _) = try decode(Data(contentsOf: Fixtures.url("pth/pickle_p2.pkl")))
        guard case .dict(let ordered)? = ObjectTree.entry(value, "ordered") else { return XCTFail("ordered") }
        XCTAssertEqual(ordered.map { $0.key.stringValue }, ["b", "a"])
    }

    func testUnknownGlobalIsNeverCalledAndBecomesOpaque() throws {
        // {'x': os.system('echo hi')} pickled by hand, protocol 2: GLOBAL 'posix system' ... REDUCE.
        var p = Data([0x80, 0x02, 0x7D, 0x58]) + le32(1) + Data("x".utf8)
        p += Data("cposix\nsystem\n".utf8) + Data([0x58]) + le32(7) + Data("echo hi".utf8) + Data([0x85, 0x52, 0x73, 0x2E])
        let (value, warnings) = try decode(p)
        guard case .opaque(let global)? = ObjectTree.entry(value, "x") else { return XCTFail("not opaque: \(value)") }
        XCTAssertEqual(global, "posix.system")
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].hasPrefix("skipped x: it needs posix.system"), warnings[0])
    }

    func testTruncatedPickleIsCorrupt() throws {
        let full = try Data(contentsOf: Fixtures.url("pth/pickle_p2.pkl"))
        XCTAssertThrowsError(try decode(full.prefix(full.count / 2))) { error in
            guard case .corrupt(let m)? = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("truncated"), m)
        }
    }

    func testLong1DecodesTwosComplementLikePickletools() {
        // Values from Python: pickle.encode_long(x) for x in (255, -256, 2**64, -(2**100)+7).
        XCTAssertEqual(str(PickleReader.long(Data([0xFF, 0x00]))), "255")
        XCTAssertEqual(str(PickleReader.long(Data([0x00, 0xFF]))), "-256")
        XCTAssertEqual(str(PickleReader.long(Data([0, 0, 0, 0, 0, 0, 0, 0, 0x01]))), "18446744073709551616")
        XCTAssertEqual(str(PickleReader.long(Data([0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xF0]))), "-1267650600228229401496703205369")
    }

    private func str(_ v: PickleValue) -> String {
        switch v {
        case .int(let i): return String(i)
        case .bigInt(let s): return s
        default: return "?"
        }
    }

    private func le32(_ v: UInt32) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }

    func testWriterOutputIsReadBackAndMatchesPythonForPlainData() throws {
        // Python: pickle.dumps({'a': (1, 300, -5, 70000, 2**40), 'b': [None, True, 0.5], 'c': 'é'}, protocol=2).hex()
        let python = "80027d7100285801000000617101284b014d2c014afbffffff4a701101008a06000000000001747102"
            + "58010000006271035d7104284e88473fe00000000000006558010000006371055802000000c3a97106752e"
        let ours = PickleWriter.pickle(.dict([
            (.string("a"), .tuple([.int(1), .int(300), .int(-5), .int(70000), .int(1 << 40)])),
            (.string("b"), .list([.none, .bool(true), .float(0.5)])),
            (.string("c"), .string("é")),
        ]))
        XCTAssertEqual(ours.map { String(format: "%02x", $0) }.joined(), python)
    }

    func testScannerListsGlobalsWithoutRunningAnything() throws {
        let expected = try JSONDecoder().decode([String: [String]].self, from: Data(contentsOf: Fixtures.url("pth/c10.expected.json")))
        XCTAssertEqual(PickleScanner.scan(try Data(contentsOf: Fixtures.url("pth/c10_pickle_p4.pth"))).globals, expected["p4"])
        XCTAssertEqual(PickleScanner.scan(try Data(contentsOf: Fixtures.url("pth/c10_pickle_p2.pth"))).globals, expected["p2"])
    }
}
