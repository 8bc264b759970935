@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// The pickle reader, writer and scanner at the opcode level, against pickles Python wrote with
/// every protocol (expected values from Python, tools/fixtures/make_pth_fixtures.py).
final class PickleTests: XCTestCase {
    private func decode(_ data: Data) throws -> (ObjectValue, [String]) {
        var reader = PickleReader(data: data, context: "test")
        var conversion = PickleConversion(pickleBytes: data.count, storageBytes: 0) { _, _ in Data() }
        return (try reader.read { value, _ in try conversion.convert(value) }, conversion.warnings)
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

    // MARK: - Hostile pickles (generated here; each is a few hundred bytes to a few hundred KB)

    private func expectCorrupt(_ data: Data, containing text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(data), file: file, line: line) { error in
            guard case .corrupt(let m)? = error as? CheckpointError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(m.contains(text), m, file: file, line: line)
        }
    }

    func testDeeplyNestedValuesAreRefusedAndReleasedWithoutRecursion() {
        // 300,000 levels: a recursive release (one frame per level) overflows the 8 MB main-thread stack.
        let levels = 300_000
        // ((((),),),)...: EMPTY_TUPLE then TUPLE1 per level.
        let tuples = Data([0x80, 0x02, 0x29]) + Data(repeating: 0x85, count: levels) + Data([0x2E])
        expectCorrupt(tuples, containing: "nested deeper than \(PickleConversion.maxDepth) levels")
        // [[[...]]] built the other way: push every list first, then APPEND each into the one below.
        let lists = Data([0x80, 0x02]) + Data(repeating: 0x5D, count: levels) + Data(repeating: 0x61, count: levels - 1) + Data([0x2E])
        expectCorrupt(lists, containing: "nested deeper than")
        // {'k': {'k': ...}} via EMPTY_DICT, then (SHORT_BINUNICODE 'k', <inner>) SETITEM per level.
        var nestedDicts = Data([0x80, 0x02, 0x7D])
        for _ in 1..<levels { nestedDicts += Data([0x8C, 0x01, 0x6B, 0x7D]) }   // key 'k', new dict
        nestedDicts += Data(repeating: 0x73, count: levels - 1) + Data([0x2E])   // SETITEM from the innermost out
        expectCorrupt(nestedDicts, containing: "nested deeper than")
        // The same depth without STOP: the reader's own stack is released when it throws.
        expectCorrupt(Data([0x80, 0x02]) + Data(repeating: 0x5D, count: levels) + Data(repeating: 0x61, count: levels - 1),
                      containing: "truncated")
    }

    func testSharedMemoReferencesDoNotExpandExponentially() {
        // x0 = []; x(i+1) = (xi, xi) through the memo: 7 bytes a level, 2^64 paths through 64 levels.
        var p = Data([0x80, 0x02, 0x5D, 0x71, 0x00])                         // EMPTY_LIST, BINPUT 0
        for i in 0..<64 { p += Data([0x68, UInt8(i), 0x68, UInt8(i), 0x86, 0x71, UInt8(i + 1)]) }   // BINGET i x2, TUPLE2, BINPUT
        // Handed to a global we never run: counting the tensors inside must visit each container once.
        let reduced = p + Data("cposix\nsystem\n".utf8) + Data([0x68, 64, 0x85, 0x52, 0x2E])   // GLOBAL, (x64,), REDUCE
        XCTAssertNoThrow(try decode(reduced))
        expectCorrupt(p + Data([0x2E]), containing: "expands to more than \(PickleConversion.valueLimit(pickleBytes: p.count + 1)) values")
    }

    func testContainersThatContainThemselvesAreFreed() {
        // Containers that come to contain themselves through the memo (Python allows it), each built
        // in memo entry 0 of a protocol 2 pickle.
        let cycles: [(String, [UInt8])] = [
            ("list", [0x5D, 0x71, 0x00, 0x68, 0x00, 0x61]),                       // EMPTY_LIST, BINPUT 0, BINGET 0, APPEND
            ("list through a tuple", [0x5D, 0x71, 0x00, 0x68, 0x00, 0x85, 0x61]),  // ... BINGET 0, TUPLE1, APPEND
            ("set", [0x8F, 0x71, 0x00, 0x28, 0x68, 0x00, 0x90]),                   // EMPTY_SET, BINPUT 0, MARK, BINGET 0, ADDITEMS
            ("dict", [0x7D, 0x71, 0x00, 0x8C, 0x01, 0x6B, 0x68, 0x00, 0x73]),      // EMPTY_DICT, BINPUT 0, 'k', BINGET 0, SETITEM
            // BUILD on the dict with the state {'a': the dict}: an attribute holding its own dict.
            ("dict attribute", [0x7D, 0x71, 0x00, 0x7D, 0x8C, 0x01, 0x61, 0x68, 0x00, 0x73, 0x62]),
        ]
        // The value is refused by the conversion (STOP), unused (POP, NONE, STOP), or the pickle ends early.
        let endings: [(String, [UInt8])] = [("refused", [0x2E]), ("unused", [0x30, 0x4E, 0x2E]), ("truncated", [])]
        for (what, cycle) in cycles {
            for (how, ending) in endings {
                // BINGET 0, BINPERSID, POP: the persistent-id loader sees the container and keeps it weakly.
                let pickle = Data([0x80, 0x02] + cycle + [0x68, 0x00, 0x51, 0x30] + ending)
                weak var container: AnyObject?
                var reader = PickleReader(data: pickle, context: "test") { pid in
                    switch pid {
                    case .list(let l): container = l
                    case .dict(let d): container = d
                    default: XCTFail("\(what): the loader got \(pid)")
                    }
                    return .none
                }
                var conversion = PickleConversion(pickleBytes: pickle.count, storageBytes: 0) { _, _ in Data() }
                let result = Result { try reader.read { value, _ in try conversion.convert(value) } }
                XCTAssertEqual((try? result.get()) != nil, how == "unused", "\(what), \(how)")
                // Before the reader emptied the containers it filled, the loop kept itself alive.
                XCTAssertNil(container, "\(what), \(how): the container outlives the read")
            }
        }
    }

    /// Many views of one storage, each a few bytes of pickle, would each copy most of it: the copies
    /// (and the storages loaded) are limited to twice the file's storage bytes + 256 MiB, refused
    /// before the allocation that would pass it. A view of the whole storage is shared, not copied.
    func testViewsOfOneStorageCopyAtMostTheByteLimit() throws {
        let elements = 1 << 18  // 1 MiB of float32
        let storage = TorchStorageRef(className: "FloatStorage", dtype: .float32, key: "0", location: "cpu", numel: elements)
        func view(_ offset: Int) -> PickleValue {
            .tensor(TorchTensorSpec(storage: storage, dtype: .float32, storageOffset: offset, size: [elements - 400],
                                    stride: [1], requiresGrad: false))
        }
        var loads = 0
        func conversion() -> PickleConversion {
            PickleConversion(pickleBytes: 0, storageBytes: elements * 4) { _, _ in
                loads += 1
                return Data(count: elements * 4)
            }
        }
        // 300 distinct views copy 300 x (1 MiB - 1600 B), more than 2 MiB + 256 MiB: refused.
        var hostile = conversion()
        XCTAssertThrowsError(try hostile.convert(.list(PickleList((0..<300).map(view))))) { error in
            guard case .corrupt(let message)? = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("load and copy more than \(PickleConversion.byteLimit(storageBytes: elements * 4)) bytes"), message)
        }
        XCTAssertEqual(loads, 1)
        // The same view 300 times is one tensor; the whole storage 300 times is the storage itself.
        var same = conversion()
        XCTAssertNoThrow(try same.convert(.list(PickleList(Array(repeating: view(7), count: 300)))))
        let whole = PickleValue.tensor(TorchTensorSpec(storage: storage, dtype: .float32, storageOffset: 0, size: [elements],
                                                       stride: [1], requiresGrad: false))
        var shared = conversion()
        XCTAssertNoThrow(try shared.convert(.list(PickleList(Array(repeating: whole, count: 300)))))
        XCTAssertEqual(PickleConversion.byteLimit(storageBytes: .max), .max)
    }
}
