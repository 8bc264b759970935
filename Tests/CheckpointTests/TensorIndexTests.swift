@testable import Checkpoint
import Foundation
import HDF5
import XCTest
import TestSupport

/// The tensor index in the HDF5 user block (schemas/checkpoint-v1.md, "Tensor index"): what the
/// writer puts there, reading a checkpoint through it, the content id from it, and the checks a
/// damaged or stale index fails.
final class TensorIndexTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.scratch() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Every dtype class, a 0-dim and an empty tensor, an alias across components, a metric history.
    private func sample() throws -> Checkpoint {
        let shared = Tensor(float32: [1, 2, 3, 4, 5, 6], shape: [2, 3])
        let backbone: StateDict = [
            "conv1.weight": Tensor(float32: [1.0, -2.5], shape: [2, 1, 1, 1]),
            "bn1.num_batches_tracked": Tensor(int64: 7),
            "a/b": try Tensor(dtype: .bfloat16, shape: [2], data: Data([0x80, 0x3F, 0x00, 0xC0])),
            "empty": try Tensor(dtype: .float32, shape: [2, 0], data: Data()),
            "mask": try Tensor(dtype: .bool, shape: [3], data: Data([1, 0, 1])),
            "embed.weight": shared,
        ]
        var provenance = Provenance(stage: "pretext", tool: .init(name: "bissl", version: "0.1.0"))
        provenance.metricHistory = ["loss": [3, 2, 1.5], "lr": [], "top1": [0.25]]
        return Checkpoint(components: ["backbone": backbone, "decoder": ["weight": shared]],
                          architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small",
                                                     heads: ["classifier": .init(kind: "linear", dims: [4, 1])]),
                          provenance: provenance, aliases: ["decoder.weight": "embed.weight"])
    }

    private func index(of url: URL) throws -> TensorIndex? {
        let fd = open(url.path, O_RDONLY)
        defer { close(fd) }
        return try TensorIndex.read(descriptor: fd, fileSize: Int64(try Data(contentsOf: url).count), fileName: url.lastPathComponent)
    }

    private func readThroughIndex(_ url: URL, only: Set<String>? = nil) throws -> Checkpoint {
        let fd = open(url.path, O_RDONLY)
        defer { close(fd) }
        let size = Int64(try Data(contentsOf: url).count)
        let index = try XCTUnwrap(try TensorIndex.read(descriptor: fd, fileSize: size, fileName: url.lastPathComponent))
        return try index.checkpoint(descriptor: fd, fileSize: size, fileName: url.lastPathComponent, only: only)
    }

    func testWrittenIndexReadsTheSameCheckpointAsHDF5() throws {
        let url = dir.appendingPathComponent("m.h5")
        let id = try CheckpointFile.write(try sample(), to: url)
        let viaHDF5 = try CheckpointFile.read(url)
        let index = try XCTUnwrap(try index(of: url))
        XCTAssertEqual(index.contentID, id)
        XCTAssertEqual(index.components, ["backbone", "decoder"])
        XCTAssertEqual(index.tensors.map(\.key), ["conv1.weight", "bn1.num_batches_tracked", "a/b", "empty", "mask", "embed.weight", "weight"])
        XCTAssertEqual(index.histories.map(\.metric), ["loss", "lr", "top1"])
        XCTAssertEqual(index.aliases, ["decoder.weight": "embed.weight"])
        let viaIndex = try readThroughIndex(url)
        XCTAssertEqual(viaIndex, viaHDF5)
        XCTAssertEqual(viaIndex.aliases, viaHDF5.aliases)
        XCTAssertEqual(viaIndex.provenance.metricHistory, try sample().provenance.metricHistory)
        XCTAssertEqual(try readThroughIndex(url, only: ["decoder"]), try CheckpointReader(url).checkpoint(only: ["decoder"]))
        // The index agrees with the HDF5 metadata, and the content id can be computed from it.
        XCTAssertNil(try CheckpointReader(url).tensorIndexProblem())
        let bytes = try Data(contentsOf: url)
        let fromIndex = try bytes.withUnsafeBytes { raw in
            try ContentID.compute(index) { entry, feed in feed(UnsafeRawBufferPointer(rebasing: raw[Int(entry.offset)..<(Int(entry.offset) + entry.byteCount)])) }
        }
        XCTAssertEqual(fromIndex, id)
        // HDF5's superblock follows the index at a power of two.
        let userBlock = TensorIndex.userBlockSize(holding: index.encoded().count)
        XCTAssertEqual(Array(bytes[userBlock..<(userBlock + 8)]), CheckpointFile.signature)
        XCTAssertTrue(CheckpointFile.isHDF5(url))
        XCTAssertEqual(try FileSniffer.sniff(url), .hdf5)
    }

    func testAnIndexLargerThanOneMebibyteStillReads() throws {
        // 1,100 tensors under 1,000-character keys: the index passes 1 MiB, so the user block is 2 MiB
        // and HDF5's superblock sits there. The readers looked for it only up to 1 MiB (the writer's
        // 25,000-tensor files were "not an HDF5 file"); they now look up to the end of the file.
        var tensors = StateDict()
        for i in 0..<1100 { tensors[String(repeating: "k", count: 1000) + "\(i)"] = Tensor(float32: [Float(i)], shape: [1]) }
        let checkpoint = Checkpoint(components: ["tensors": tensors], architecture: nil, provenance: Provenance(stage: "imported"))
        let url = dir.appendingPathComponent("wide.h5")
        try CheckpointFile.write(checkpoint, to: url)
        let index = try XCTUnwrap(try index(of: url))
        XCTAssertGreaterThan(index.encoded().count, 1 << 20)
        XCTAssertEqual(TensorIndex.userBlockSize(holding: index.encoded().count), 2 << 20)
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(Array(bytes[(2 << 20)..<((2 << 20) + 8)]), CheckpointFile.signature)
        XCTAssertTrue(CheckpointFile.isHDF5(url))
        XCTAssertEqual(try FileSniffer.sniff(url), .hdf5)
        XCTAssertEqual(try CheckpointFile.read(url).components["tensors"], tensors)
        // A signature at a non-power-of-two offset is not one (HDF5 would not find it either).
        var moved = Data(count: 3 << 19)
        moved.append(contentsOf: CheckpointFile.signature)
        moved.append(Data(count: 64))
        XCTAssertFalse(FileSniffer.hasHDF5Signature(moved))
    }

    func testFileWithoutIndexHasNone() throws {
        // h5py wrote this fixture from the spec (no user block).
        let url = Fixtures.url("h5/h5py_written.h5")
        XCTAssertNil(try index(of: url))
        XCTAssertNil(try CheckpointReader(url).tensorIndexProblem())
    }

    /// Overwrites `count` bytes at `offset` of the file.
    private func patch(_ url: URL, at offset: Int, _ bytes: [UInt8]) throws {
        var data = try Data(contentsOf: url)
        data.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        try data.write(to: url)
    }

    /// The byte offset of `needle` in the file's first `limit` bytes.
    private func find(_ needle: String, in url: URL) throws -> Int {
        let data = try Data(contentsOf: url)
        return try XCTUnwrap(data.range(of: Data(needle.utf8))?.lowerBound)
    }

    func testMalformedIndexIsRefusedWithOneLine() throws {
        let url = dir.appendingPathComponent("m.h5")
        try CheckpointFile.write(try sample(), to: url)
        let original = try Data(contentsOf: url)
        let length = TensorIndex.headerCount - 8
        let cases: [(String, () throws -> Void, String)] = [
            ("payload longer than the file", { try self.patch(url, at: length, [0xFF, 0xFF, 0xFF, 0x3F, 0, 0, 0, 0]) }, "claims"),
            ("unknown dtype", { try self.patch(url, at: try self.find("float32", in: url), Array("float99".utf8)) }, "unknown dtype"),
            ("byte count against the shape", {
                // The int64 scalar: its nbytes (8) follows its offset; 9 cannot be 1 element of int64.
                let at = try self.find("bn1.num_batches_tracked", in: url) + "bn1.num_batches_tracked".utf8.count + 8 + 5 + 8 + 8
                try self.patch(url, at: at, [9])
            }, "bytes for shape"),
            ("truncated payload", { try original.prefix(TensorIndex.headerCount + 20).write(to: url) }, "claims"),
        ]
        for (what, damage, expected) in cases {
            try original.write(to: url)
            try damage()
            XCTAssertThrowsError(try index(of: url), what) { error in
                guard case .corrupt(let message)? = error as? CheckpointError else { return XCTFail("\(what): \(error)") }
                XCTAssertTrue(message.hasPrefix("m.h5: "), message)
                XCTAssertTrue(message.contains(expected), "\(what): \(message)")
                XCTAssertFalse(message.contains("\n"))
            }
        }
    }

    func testExtentsOutsideTheFileOrOverlappingAreRefused() throws {
        let url = dir.appendingPathComponent("m.h5")
        try CheckpointFile.write(try sample(), to: url)
        var index = try XCTUnwrap(try index(of: url))
        let size = Int64(try Data(contentsOf: url).count)
        func decode(_ edit: (inout TensorIndex) -> Void) -> String? {
            var copy = index
            edit(&copy)
            do {
                _ = try copy.encoded().withUnsafeBytes { try TensorIndex.decode($0, fileSize: size, fileName: "m.h5") }
                return nil
            } catch {
                return "\(error)"
            }
        }
        XCTAssertNil(decode { _ in })
        XCTAssertEqual(decode { $0.tensors[0].offset = UInt64(size) - 4 }, "m.h5: malformed tensor index (8 bytes at offset \(size - 4) lie outside the file's data)")
        XCTAssertEqual(decode { $0.tensors[0].offset = UInt64.max - 2 }?.contains("lie outside"), true)
        XCTAssertEqual(decode { $0.tensors[0].offset = 16 }?.contains("lie outside"), true, "inside the index itself")
        XCTAssertEqual(decode { $0.tensors[1].offset = $0.tensors[0].offset + 4 }?.contains("overlapping"), true)
        XCTAssertEqual(decode { $0.tensors[3].offset = 4096 }?.contains("an empty extent"), true)
        XCTAssertEqual(decode { $0.contentID = "XYZ" }?.contains("64 lowercase hex"), true)
        XCTAssertEqual(decode { $0.histories.reverse() }?.contains("out of order"), true)
        XCTAssertEqual(decode { $0.tensors[1].key = $0.tensors[0].key }?.contains("twice"), true)
        // An alias with another shape is not an alias.
        index.tensors[6].shape = [3, 2]
        XCTAssertEqual(decode { _ in }?.contains("overlapping"), true)
    }

    func testStaleIndexIsReportedAgainstTheHDF5Metadata() throws {
        let url = dir.appendingPathComponent("m.h5")
        try CheckpointFile.write(try sample(), to: url)
        // Another tool rewrites the root attribute content_id in place (h5py r+ would): the user block
        // stays, now stale.
        try HDF5.File.open(url.path, writable: true).setAttribute("content_id", String(repeating: "a", count: 64))
        XCTAssertEqual(try CheckpointReader(url).tensorIndexProblem(),
                       "m.h5: its tensor index disagrees with its HDF5 metadata (content id): the file was changed by another tool after bissl wrote it")
        // Outside the zoo the file still reads (through HDF5).
        XCTAssertEqual(try CheckpointFile.read(url), try sample())
        // An index pointing one tensor at another's bytes.
        try CheckpointFile.write(try sample(), to: url)
        var index = try XCTUnwrap(try index(of: url))
        index.tensors[0].offset = index.tensors[5].offset
        index.tensors[0].shape = index.tensors[5].shape
        index.tensors[0].byteCount = index.tensors[5].byteCount
        try index.write(into: url, userBlock: TensorIndex.userBlockSize(holding: index.encoded().count))
        XCTAssertEqual(try CheckpointReader(url).tensorIndexProblem(),
                       "m.h5: its tensor index disagrees with its HDF5 metadata (tensor conv1.weight of backbone): the file was changed by another tool after bissl wrote it")
    }
}
