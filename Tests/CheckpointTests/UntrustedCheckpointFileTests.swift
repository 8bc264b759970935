@testable import Checkpoint
import Foundation
import XCTest

/// The checkpoint the HDF5 reader process hands back is the checkpoint it read: same tensors (small
/// scalars included), same sharing, same content id.
final class UntrustedCheckpointFileTests: XCTestCase {
    func testMessageRoundTripKeepsEveryTensorAndItsSharing() throws {
        var backbone = StateDict()
        for i in 0..<5 { backbone["layer\(i).num_batches_tracked"] = Tensor(int64: Int64(100 + i)) }   // 8-byte tensors
        let shared = Tensor(float32: [1, 2, 3], shape: [3])
        backbone["a.weight"] = shared
        var head = StateDict()
        head["0.weight"] = shared
        head["0.bias"] = Tensor(float32: [4], shape: [1])
        var provenance = Provenance(stage: "imported", commandLine: ["test"], startedAt: "2026-01-01T00:00:00Z",
                                    endedAt: "2026-01-01T00:00:01Z")
        provenance.metricHistory = ["loss": [1.5, .nan, .infinity]]
        let checkpoint = Checkpoint(components: ["backbone": backbone, "projector": head], architecture: nil,
                                    provenance: provenance, aliases: ["projector.0.weight": "a.weight"])
        let message = try UntrustedCheckpointFile.encode(.init(checkpoint: checkpoint, storedContentID: "abc"))
        XCTAssertEqual(message.blobs.count, 7, "the aliased tensor is sent once")
        let back = try UntrustedCheckpointFile.decode(message, fileName: "x.h5")
        XCTAssertEqual(back.storedContentID, "abc")
        XCTAssertEqual(back.checkpoint.components, checkpoint.components)
        XCTAssertEqual(back.checkpoint.aliases, checkpoint.aliases)
        XCTAssertEqual(ContentID.compute(back.checkpoint), ContentID.compute(checkpoint))
        XCTAssertEqual(back.checkpoint.provenance.metricHistory["loss"]?[0], 1.5)
        XCTAssertTrue(back.checkpoint.provenance.metricHistory["loss"]?[1].isNaN ?? false)
    }

    func testAnErrorRecordBecomesTheSameError() throws {
        XCTAssertThrowsError(try UntrustedCheckpointFile.decode(
            .init(header: Data(#"{"error":{"kind":"notACheckpoint","message":"x.h5 is not"}}"#.utf8), blobs: []), fileName: "x.h5")) {
            XCTAssertEqual($0 as? CheckpointError, .notACheckpoint("x.h5 is not"))
        }
        XCTAssertThrowsError(try UntrustedCheckpointFile.decode(.init(header: Data("{".utf8), blobs: []), fileName: "x.h5")) {
            XCTAssertEqual($0 as? CheckpointError, .corrupt("x.h5: the HDF5 reader process sent a malformed result (header)"))
        }
    }
}
