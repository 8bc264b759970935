import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// What verify says about damage matches what gc then does, in terms the user can check.
final class ZooDamageMessagesCLITests: CLITestCase {
    private var layout: ZooLayout { ZooLayout(root: zooDir) }

    private func importEntry(seed: UInt64, _ extra: [String] = []) throws -> String {
        let file = tmp.appendingPathComponent("src\(seed).h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: seed)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: file)
        let r = try bissl(["import", file.path] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        return String(r.stdout.prefix(64))
    }

    /// A missing object has nothing to move: gc takes the entry out of the catalog.
    func testVerifyOnAMissingObjectSaysWhatGCDoes() throws {
        let id = try importEntry(seed: 1)
        unlink(layout.objectURL(id).path)
        let verify = try bissl(["verify"])
        XCTAssertNotEqual(verify.status, 0)
        XCTAssertTrue(verify.stdout.contains("problem: \(id.prefix(12)): object file is missing\n  fix: bissl gc (takes the entry out of the catalog, keeps its record as a tombstone)\n"), verify.stdout)
        XCTAssertFalse(verify.stdout.contains("damaged/"), verify.stdout)
    }

    /// An unlisted object whose content is not its name is moved aside by gc, not listed again.
    func testVerifyOnAnUnlistedObjectOfOtherContentSaysGCMovesItAside() throws {
        let id = try importEntry(seed: 1)
        let fake = String(repeating: "ab", count: 32)
        try FileManager.default.createDirectory(at: layout.objectURL(fake).deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: layout.objectURL(id), to: layout.objectURL(fake))
        let verify = try bissl(["verify"])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        XCTAssertTrue(verify.stdout.contains("leftover: \(fake.prefix(12)): object not listed in the catalog that cannot be listed: "), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("; bissl gc moves it to damaged/ (never deleted), bissl verify --reindex skips it\n"), verify.stdout)
        XCTAssertFalse(verify.stdout.contains("lists it again"), verify.stdout)
        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("moved damaged unlisted object aside to \(layout.damaged.path)/\(fake).h5"), gc.stdout)
    }

    /// A truncated object is described once, with the sizes `ls -l` shows (the file's, and the one
    /// its superblock records), not HDF5's offsets counted from after the user block.
    func testATruncatedObjectIsDescribedOnceWithSizesTheUserCanCheck() throws {
        let id = try importEntry(seed: 1)
        let object = layout.objectURL(id)
        let full = try FileManager.default.attributesOfItem(atPath: object.path)[.size] as! NSNumber
        XCTAssertEqual(truncate(object.path, 20000), 0)
        let verify = try bissl(["verify"])
        XCTAssertNotEqual(verify.status, 0)
        XCTAssertTrue(verify.stdout.contains("problem: \(id.prefix(12)): object of entry \(id.prefix(12)) is damaged: truncated: the file has 20000 bytes, its HDF5 superblock says \(full.intValue)\n"), verify.stdout)
    }
}
