@testable import Checkpoint
import Foundation
import HDF5
import XCTest
import TestSupport

/// The checkpoint read through the HDF5 reader process's message is the checkpoint in the file: same
/// tensors (small scalars and empty ones included), same sharing, same content id; contiguous
/// datasets travel as offsets and are read from the file, other layouts as bytes; a message that
/// points outside the file or claims more bytes than it holds is refused.
final class UntrustedCheckpointFileTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("untrusted-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// The message for `url` as the reader process makes it, decoded against the file opened here.
    private func roundTrip(_ url: URL) throws -> (message: SandboxMessage, contents: UntrustedCheckpointFile.Contents, file: FileStatus?) {
        let message = try UntrustedCheckpointFile.encode(try CheckpointReader(url))
        let fd = open(url.path, O_RDONLY)
        defer { close(fd) }
        let size = try XCTUnwrap(FileStatus(descriptor: fd)).size
        let (contents, file) = try UntrustedCheckpointFile.decode(message, descriptor: fd, fileSize: size, fileName: url.lastPathComponent)
        return (message, contents, file)
    }

    func testContiguousTensorsTravelAsOffsetsAndKeepTheirSharing() throws {
        var backbone = StateDict()
        for i in 0..<5 { backbone["layer\(i).num_batches_tracked"] = Tensor(int64: Int64(100 + i)) }   // 8-byte tensors
        let shared = Tensor(float32: (0..<64).map(Float.init), shape: [64])   // not small enough for Data's inline storage
        backbone["a.weight"] = shared
        backbone["empty"] = Tensor(float32: [], shape: [0, 4])
        var head = StateDict()
        head["0.weight"] = shared
        head["0.bias"] = Tensor(float32: [4], shape: [1])
        var provenance = Provenance(stage: "imported", commandLine: ["test"], startedAt: "2026-01-01T00:00:00Z",
                                    endedAt: "2026-01-01T00:00:01Z")
        provenance.metricHistory = ["loss": [1.5, .nan, .infinity]]
        let checkpoint = Checkpoint(components: ["backbone": backbone, "projector": head], architecture: nil,
                                    provenance: provenance, aliases: ["projector.0.weight": "a.weight"])
        let url = dir.appendingPathComponent("in.h5")
        let id = try CheckpointFile.write(checkpoint, to: url)
        let (message, back, file) = try roundTrip(url)
        XCTAssertEqual(message.blobs.count, 1, "only the empty tensor is a blob; the others are offsets")
        XCTAssertEqual(back.storedContentID, id)
        XCTAssertEqual(file, FileStatus(path: url.path))
        XCTAssertEqual(back.checkpoint.components, checkpoint.components)
        XCTAssertEqual(back.checkpoint.aliases, checkpoint.aliases)
        XCTAssertEqual(ContentID.compute(back.checkpoint), id)
        XCTAssertEqual(back.checkpoint.provenance.metricHistory["loss"]?[0], 1.5)
        XCTAssertTrue(back.checkpoint.provenance.metricHistory["loss"]?[1].isNaN ?? false)
        let a = back.checkpoint.components["backbone"]!["a.weight"]!.data, b = back.checkpoint.components["projector"]!["0.weight"]!.data
        XCTAssertEqual(a.withUnsafeBytes { $0.baseAddress }, b.withUnsafeBytes { $0.baseAddress }, "one buffer for the hard-linked name")
    }

    func testOtherLayoutsTravelAsBytes() throws {
        // tools/fixtures/make_h5_fixtures.py: a user block; one gzip, one chunked and one big-endian dataset.
        let url = Fixtures.url("h5/h5py_layouts.h5")
        let (message, back, _) = try roundTrip(url)
        XCTAssertEqual(message.blobs.count, 4, "gzip, chunked, big-endian, and the empty tensor")
        XCTAssertEqual(back.checkpoint, try CheckpointFile.read(url))
    }

    func testExtentsOutsideTheFileOrOverlappingPastItsSizeAreRefused() throws {
        let url = dir.appendingPathComponent("in.h5")
        try CheckpointFile.write(Checkpoint(components: ["tensors": ["w": Tensor(float32: [1, 2], shape: [2])]], architecture: nil,
                                            provenance: Provenance(stage: "imported")), to: url)
        let good = try UntrustedCheckpointFile.encode(try CheckpointReader(url))
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: good.header) as? [String: Any])
        let fd = open(url.path, O_RDONLY)
        defer { close(fd) }
        let size = try XCTUnwrap(FileStatus(descriptor: fd)).size
        func decode(tensors: [[String: Any]], keys: [String]) -> Error? {
            var h = header
            h["tensors"] = tensors
            h["components"] = [["name": "tensors", "keys": keys, "tensors": Array(keys.indices)]]
            let message = SandboxMessage(header: try! JSONSerialization.data(withJSONObject: h), blobs: [])
            do { _ = try UntrustedCheckpointFile.decode(message, descriptor: fd, fileSize: size, fileName: "in.h5") } catch { return error }
            return nil
        }
        XCTAssertNil(decode(tensors: [["dtype": "uint8", "shape": [Int(size)], "offset": 0]], keys: ["all"]), "the whole file is in bounds")
        let cases: [([[String: Any]], String)] = [
            ([["dtype": "uint8", "shape": [Int(size)], "offset": 1]], "tensor bytes outside the file"),
            ([["dtype": "float32", "shape": [1 << 40], "offset": 0]], "claim more bytes than the file holds"),
            ([["dtype": "float64", "shape": [1 << 61], "offset": 0]], "tensor of shape"),
            ([["dtype": "uint8", "shape": [-1], "offset": 0]], "tensor of shape"),
            // Every record pointing at the whole file: each in bounds, together more than the file.
            (Array(repeating: ["dtype": "uint8", "shape": [Int(size)], "offset": 0], count: 3), "claim more bytes than the file holds"),
            ([["dtype": "uint8", "shape": [2]]], "tensor of shape"),   // no blob for it
        ]
        for (tensors, text) in cases {
            let error = decode(tensors: tensors, keys: tensors.indices.map { "k\($0)" })
            XCTAssertTrue("\(error.map { "\($0)" } ?? "no error")".contains(text), "\(tensors): \(String(describing: error))")
            XCTAssertTrue("\(error.map { "\($0)" } ?? "")".hasPrefix("in.h5: the HDF5 reader process sent a malformed result"))
        }
    }

    func testAnErrorRecordBecomesTheSameError() throws {
        func decode(_ header: String) throws { _ = try UntrustedCheckpointFile.decode(.init(header: Data(header.utf8), blobs: []),
                                                                                    descriptor: -1, fileSize: 0, fileName: "x.h5") }
        XCTAssertThrowsError(try decode(#"{"error":{"kind":"notACheckpoint","message":"x.h5 is not"}}"#)) {
            XCTAssertEqual($0 as? CheckpointError, .notACheckpoint("x.h5 is not"))
        }
        XCTAssertThrowsError(try decode("{")) {
            XCTAssertEqual($0 as? CheckpointError, .corrupt("x.h5: the HDF5 reader process sent a malformed result (header)"))
        }
    }

    /// A tensor that is a view of the mapped file, read after another process truncated the file:
    /// the SIGBUS becomes one `error:` line naming the file and exit status 1, and the writer's
    /// registered temporary is removed (`MappingGuard`). Run in a forked child, which the handler ends.
    func testReadingAViewOfATruncatedFileIsOneErrorLine() throws {
        let url = dir.appendingPathComponent("in.h5")
        let weights = Tensor(float32: [Float](repeating: 1, count: 4096), shape: [4096])   // 16 KiB: several pages
        try CheckpointFile.write(Checkpoint(components: ["tensors": ["w": weights]], architecture: nil,
                                            provenance: Provenance(stage: "imported", commandLine: ["test"])), to: url)
        let (_, back, _) = try roundTrip(url)
        let data = back.checkpoint.components["tensors"]!["w"]!.data
        let temporary = dir.appendingPathComponent(".out.tmp")
        XCTAssertTrue(FileManager.default.createFile(atPath: temporary.path, contents: Data()))
        let token = TemporaryFiles.register(temporary.path)
        defer { TemporaryFiles.unregister(token) }
        var pipeEnds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&pipeEnds), 0)
        let status: Int32 = try data.withUnsafeBytes { raw in
            let last = raw.baseAddress! + raw.count - 1   // on the last page of the tensor, past the truncated end
            let pid = fork()
            if pid == 0 {   // child: async-signal-safe calls only
                dup2(pipeEnds[1], 2)
                _ = truncate(url.path, 0)
                _exit(2 + Int32(last.load(as: UInt8.self)))   // not reached when the guard works (the load faults)
            }
            close(pipeEnds[1])
            var status: Int32 = 0
            guard pid > 0, waitpid(pid, &status, 0) == pid else { throw XCTSkip("fork failed") }
            return status
        }
        let stderr = String(decoding: FileHandle(fileDescriptor: pipeEnds[0], closeOnDealloc: true).readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(status & 0x7f, 0, "the child ended by a signal: \(status & 0x7f)")
        XCTAssertEqual((status >> 8) & 0xff, 1)
        XCTAssertEqual(stderr, "error: in.h5 changed while it was read (truncated or rewritten by another process); read it again\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary.path), "the registered temporary is removed")
    }
}
