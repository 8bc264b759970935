import Checkpoint
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// rm with tombstones, lineage, verify, reindex and gc through the library API.
final class ZooIntegrityTests: XCTestCase {
    private func makeZoo() throws -> (Zoo, ZooLayout) {
        let layout = ZooLayout(root: try ZooTestSupport.tempDir(self).appendingPathComponent("zoo"))
        let zoo = try Zoo.open(layout, create: true)
        addTeardownBlock { try? zoo.close() }
        return (zoo, layout)
    }

    /// pretext <- bissl <- finetune (two finetunes of the bissl entry).
    private func chain(_ zoo: Zoo) throws -> (pre: String, aligned: String, ft1: String, ft2: String) {
        let pre = try zoo.add(ZooTestSupport.checkpoint(seed: 100, stage: "pretext", method: "simclr"), name: "pre").id
        let aligned = try zoo.add(ZooTestSupport.checkpoint(
            seed: 101, stage: "bissl", method: "bissl", parents: [.init(id: pre, relation: "aligned-from")]), name: "aligned").id
        let ft1 = try zoo.add(ZooTestSupport.checkpoint(
            seed: 102, stage: "finetune", parents: [.init(id: aligned, relation: "finetuned-from", note: "classifier re-initialised 1000 -> 10")],
            metrics: ["top1": 0.81])).id
        let ft2 = try zoo.add(ZooTestSupport.checkpoint(
            seed: 103, stage: "finetune", parents: [.init(id: aligned, relation: "finetuned-from")], metrics: ["top1": 0.79])).id
        return (pre, aligned, ft1, ft2)
    }

    func testLineageUpDownBoth() throws {
        let (zoo, _) = try makeZoo()
        let c = try chain(zoo)
        let up = try zoo.lineage(c.ft1, direction: .up)
        XCTAssertEqual(up.nodes.map(\.id), [c.ft1, c.aligned, c.pre])
        XCTAssertEqual(up.edges.map { "\($0.child.prefix(4))>\($0.parent.prefix(4)) \($0.relation)" },
                       ["\(c.ft1.prefix(4))>\(c.aligned.prefix(4)) finetuned-from", "\(c.aligned.prefix(4))>\(c.pre.prefix(4)) aligned-from"])
        XCTAssertEqual(up.edges[0].note, "classifier re-initialised 1000 -> 10")
        let down = try zoo.lineage("pre", direction: .down)
        XCTAssertEqual(down.nodes.map(\.id), [c.pre, c.aligned] + [c.ft1, c.ft2].sorted())
        XCTAssertEqual(down.edges.count, 3)
        let both = try zoo.lineage("aligned", direction: .both)
        XCTAssertEqual(Set(both.nodes.map(\.id)), [c.pre, c.aligned, c.ft1, c.ft2])
        XCTAssertEqual(both.nodes.first?.name, "aligned")
        XCTAssertTrue(both.nodes.allSatisfy { $0.status == .listed })
    }

    func testLineageOfParentUnknownToTheZoo() throws {
        let (zoo, _) = try makeZoo()
        let stranger = String(repeating: "e", count: 64)
        let child = try zoo.add(ZooTestSupport.checkpoint(seed: 104, stage: "finetune", parents: [.init(id: stranger, relation: "finetuned-from")])).id
        let up = try zoo.lineage(child, direction: .up)
        XCTAssertEqual(up.nodes.map(\.status), [.listed, .unknown])
        XCTAssertEqual(up.nodes[1].id, stranger)
    }

    func testRemoveRefusesParentsUnlessForcedAndKeepsTombstone() throws {
        let (zoo, layout) = try makeZoo()
        let c = try chain(zoo)
        let before = try ZooTestSupport.snapshot(layout.root)
        XCTAssertThrowsError(try zoo.remove("aligned")) { error in
            XCTAssertTrue("\(error)".contains("entry \(c.aligned.prefix(12)) has 2 descendants"), "\(error)")
        }
        XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before, "a refused rm changes nothing")

        let removed = try zoo.remove("aligned", force: true)
        XCTAssertEqual(removed.id, c.aligned)
        XCTAssertEqual(removed.labels, ["aligned"])
        XCTAssertEqual(Set(removed.descendants), [c.ft1, c.ft2])
        XCTAssertTrue(removed.tombstone)
        XCTAssertFalse(FileManager.default.fileExists(atPath: layout.objectURL(c.aligned).path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: layout.refURL("aligned", kind: .name).path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: layout.trash.path), [])
        XCTAssertThrowsError(try zoo.resolve("aligned"))
        XCTAssertThrowsError(try zoo.resolve(String(c.aligned.prefix(10)))) { XCTAssertTrue("\($0)".contains("was removed"), "\($0)") }

        // The tombstone file holds the removed entry's provenance as its object had it.
        let tombstone = try TombstoneFile.read(layout.tombstoneURL(c.aligned))
        XCTAssertEqual(tombstone.provenance, ZooTestSupport.checkpoint(seed: 101, stage: "bissl", method: "bissl",
                                                                       parents: [.init(id: c.pre, relation: "aligned-from")]).provenance)
        XCTAssertEqual(tombstone.labels, ["aligned"])
        XCTAssertEqual(try zoo.tombstone(c.aligned)?.stage, "bissl")

        // Lineage walks through the removed entry up to the pretext entry.
        let up = try zoo.lineage(c.ft1, direction: .up)
        XCTAssertEqual(up.nodes.map(\.id), [c.ft1, c.aligned, c.pre])
        XCTAssertEqual(up.nodes.map(\.status), [.listed, .removed, .listed])
        XCTAssertEqual(up.nodes[1].method, "bissl")

        // Removing a leaf needs no force and leaves no tombstone.
        let leaf = try zoo.remove(c.ft2)
        XCTAssertFalse(leaf.tombstone)
        XCTAssertFalse(FileManager.default.fileExists(atPath: layout.tombstoneURL(c.ft2).path))
        XCTAssertEqual(Set(try zoo.list().map(\.id)), [c.pre, c.ft1])
        XCTAssertEqual(try zoo.verify().findings, [])
    }

    func testReindexRebuildsTheSameCatalogFromFilesAlone() throws {
        let (zoo, layout) = try makeZoo()
        let c = try chain(zoo)
        try zoo.tag(c.ft1, "best")
        _ = try zoo.remove("aligned", force: true)
        let listBefore = try zoo.list()
        let lineageBefore = try zoo.lineage(c.ft1, direction: .both)
        try zoo.close()
        for suffix in ["", "-wal", "-shm"] { unlink(layout.catalog.path + suffix) }

        let report = try Zoo.reindex(layout)
        XCTAssertEqual(report.entries, 3)
        XCTAssertEqual(report.labels, 2)  // name "pre" and tag "best"
        XCTAssertEqual(report.tombstones, 1)
        XCTAssertEqual(report.skipped, [])
        let rebuilt = try Zoo.open(layout)
        defer { try? rebuilt.close() }
        XCTAssertEqual(try rebuilt.list(), listBefore)
        XCTAssertEqual(try rebuilt.lineage(c.ft1, direction: .both), lineageBefore)
        XCTAssertEqual(try rebuilt.verify().findings, [])
    }

    func testReindexMovesADamagedCatalogAside() throws {
        let (zoo, layout) = try makeZoo()
        let a = try zoo.add(ZooTestSupport.checkpoint(seed: 105), name: "kept").id
        try zoo.close()
        try Data(repeating: 0x42, count: 4096).write(to: layout.catalog)
        let report = try Zoo.reindex(layout)
        XCTAssertNotNil(report.movedAside)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: report.movedAside!)), Data(repeating: 0x42, count: 4096))
        let rebuilt = try Zoo.open(layout)
        defer { try? rebuilt.close() }
        XCTAssertEqual(try rebuilt.resolve("kept"), a)
        XCTAssertNil(rebuilt.notice)
    }

    /// A catalog that is missing, zero bytes or not SQLite, with objects on disk, is rebuilt from the
    /// files when the zoo is opened (before the fix: "no zoo", "no entries", and gc deleted every object).
    func testOpeningAZooWithALostCatalogRebuildsIt() throws {
        for damage in ["missing", "empty", "unreadable"] {
            let (zoo, layout) = try makeZoo()
            let a = try zoo.add(ZooTestSupport.checkpoint(seed: 130), name: "a").id
            let b = try zoo.add(ZooTestSupport.checkpoint(seed: 131), tags: ["t"]).id
            try zoo.close()
            for suffix in ["", "-wal", "-shm"] { unlink(layout.catalog.path + suffix) }
            if damage == "empty" { try Data().write(to: layout.catalog) }
            if damage == "unreadable" { try Data(repeating: 0x42, count: 4096).write(to: layout.catalog) }
            let reopened = try Zoo.open(layout)
            defer { try? reopened.close() }
            XCTAssertEqual(reopened.notice, "catalog \(damage): rebuilt from 2 objects" + (damage == "unreadable" ? " (the damaged catalog was moved aside)" : ""))
            XCTAssertEqual(Set(try reopened.list().map(\.id)), [a, b])
            XCTAssertEqual(try reopened.resolve("a"), a)
            XCTAssertEqual(try reopened.resolve("t"), b)
            let gc = try reopened.gc()
            XCTAssertEqual(gc.relistedObjects + gc.damagedObjects + gc.writerLeftovers + gc.strayRefs, [])
            XCTAssertTrue(FileManager.default.fileExists(atPath: layout.objectURL(a).path))
            XCTAssertEqual(try reopened.verify().findings, [])
        }
    }

    /// gc never deletes a complete object: one the catalog forgot (a fresh catalog started over
    /// existing objects) is listed again.
    func testGCRelistsObjectsAFreshCatalogDoesNotList() throws {
        let (zoo, layout) = try makeZoo()
        let old = try zoo.add(ZooTestSupport.checkpoint(seed: 132), name: "old").id
        try zoo.close()
        // What the tester saw: the catalog replaced by a fresh one holding only a newer import.
        for suffix in ["", "-wal", "-shm"] { unlink(layout.catalog.path + suffix) }
        let fresh = try Zoo.openCatalog(layout, create: true)
        defer { try? fresh.close() }
        let new = try fresh.add(ZooTestSupport.checkpoint(seed: 133)).id
        XCTAssertTrue(try fresh.verify().findings.contains { $0.path == layout.objectURL(old).path && $0.level == .leftover })
        let gc = try fresh.gc()
        XCTAssertEqual(gc.relistedObjects, [layout.objectURL(old).path])
        XCTAssertEqual(Set(try fresh.list().map(\.id)), [old, new])
        XCTAssertEqual(try fresh.resolve("old"), old)
        XCTAssertEqual(try fresh.verify().findings, [])
    }

    func testVerifyFindsCorruptMissingAndInvalidObjects() throws {
        let (zoo, layout) = try makeZoo()
        let good = try zoo.add(ZooTestSupport.checkpoint(seed: 106)).id
        let flipped = try zoo.add(ZooTestSupport.checkpoint(seed: 107, extraFloats: 4096)).id
        let missing = try zoo.add(ZooTestSupport.checkpoint(seed: 108)).id
        let invalid = try zoo.add(ZooTestSupport.checkpoint(seed: 109)).id
        XCTAssertEqual(try zoo.verify().problems, [])
        // Import refuses provenance outside the schema ...
        XCTAssertThrowsError(try zoo.add(ZooTestSupport.checkpoint(seed: 115, parents: [.init(id: good, relation: "copied-from")]))) {
            XCTAssertTrue("\($0)".contains("parents[0].relation 'copied-from'"), "\($0)")
        }
        // ... so rewrite an object in place: same tensors (same content id), provenance edited.
        try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 109, parents: [.init(id: good, relation: "copied-from")]), to: layout.objectURL(invalid))

        // Flip bytes inside the big tensor's data (the last 16 KiB of the file hold it).
        let url = layout.objectURL(flipped)
        var bytes = try Data(contentsOf: url)
        let at = bytes.count - 8000
        for i in at..<(at + 8) { bytes[i] ^= 0xFF }
        try bytes.write(to: url)
        unlink(layout.objectURL(missing).path)

        let report = try zoo.verify()
        XCTAssertEqual(report.checked, 4)
        let byID = Dictionary(grouping: report.problems, by: { $0.id ?? "" })
        XCTAssertEqual(Set(byID.keys), [flipped, missing, invalid])
        XCTAssertTrue(byID[flipped]![0].message.hasPrefix("object \(flipped.prefix(12)) is corrupt: holds content "), byID[flipped]![0].message)
        XCTAssertFalse(byID[flipped]![0].message.contains("run bissl verify"), "verify does not send the user back to verify")
        XCTAssertEqual(byID[missing]![0].message, "object file is missing")
        XCTAssertEqual(byID[invalid]!.map(\.message), [
            "provenance: parents[0].relation 'copied-from' is not one of aligned-from, finetuned-from, imported-from, pretrained-from, probed-from",
            "catalog row differs from the object",
            "catalog metrics or lineage edges differ from the object"])
        // Every problem names the command that repairs it.
        let gcFix = "bissl gc (moves the object to damaged/, keeps the entry's record as a tombstone)"
        XCTAssertEqual(byID[flipped]![0].fix, gcFix)
        XCTAssertEqual(byID[missing]![0].fix, "bissl gc (takes the entry out of the catalog, keeps its record as a tombstone)", "nothing to move")
        XCTAssertEqual(byID[invalid]!.map(\.fix), [
            "bissl rm --force \(invalid.prefix(12)) (keeps its record as a tombstone), then import a corrected file",
            "bissl verify --reindex (rebuilds the catalog from the objects)",
            "bissl verify --reindex (rebuilds the catalog from the objects)"])
        XCTAssertEqual(try zoo.verify([good]).findings, [])
        XCTAssertEqual(try zoo.verify([String(missing.prefix(8))]).problems.count, 1)
        XCTAssertThrowsError(try zoo.checkpoint(missing)) { XCTAssertTrue("\($0)".contains("is missing"), "\($0)") }

        // gc does what verify says: the damaged entries leave the catalog (records kept as
        // tombstones), the corrupt object goes to damaged/, the sound entries stay.
        XCTAssertEqual(try zoo.gc(dryRun: true).damagedEntries.map(\.id), [flipped, missing].sorted())
        XCTAssertEqual(try zoo.verify().problems.count, 5, "a dry run changes nothing")
        let gc = try zoo.gc()
        XCTAssertEqual(gc.damagedEntries.map(\.id), [flipped, missing].sorted())
        let moved = try XCTUnwrap(gc.damagedEntries.first { $0.id == flipped }?.movedTo)
        XCTAssertEqual(moved, layout.damaged.appendingPathComponent(flipped + ".h5").path)
        XCTAssertTrue(FileManager.default.fileExists(atPath: moved))
        XCTAssertNil(gc.damagedEntries.first { $0.id == missing }?.movedTo)
        XCTAssertTrue(FileManager.default.fileExists(atPath: layout.tombstoneURL(flipped).path))
        XCTAssertEqual(Set(try zoo.list().map(\.summary.id)), [good, invalid])
        XCTAssertEqual(Set(try zoo.verify().problems.map { $0.id ?? "" }), [invalid])
        XCTAssertEqual(try zoo.gc().damagedEntries, [], "nothing left for a second gc")
    }

    /// Reads trust an object while the file facts recorded at import or `verify` hold, and hash it
    /// again once they change: bytes flipped in place with the size kept and the modification time set
    /// back (`utimensat`) still change the status-change time, which no user can set.
    func testInPlaceEditKeepingSizeAndModificationTimeIsStillRefused() throws {
        let (zoo, layout) = try makeZoo()
        let id = try zoo.add(ZooTestSupport.checkpoint(seed: 117, extraFloats: 4096)).id
        XCTAssertNil(try zoo.load(id, rehash: false).hashed, "a just-imported object is trusted without hashing")
        let url = layout.objectURL(id)
        var before = stat()
        XCTAssertEqual(stat(url.path, &before), 0)
        // No pause: import recorded settled facts (its change time lies in an earlier clock tick than
        // any later write, `FileStatus.isSettled`), so even an immediate edit changes the change time.
        let fd = open(url.path, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var flipped = [UInt8](repeating: 0xA5, count: 8)   // inside the big tensor (the last 16 KiB of the file)
        XCTAssertEqual(pwrite(fd, &flipped, 8, off_t(before.st_size) - 8000), 8)
        var times = [before.st_atim, before.st_mtim]
        XCTAssertEqual(futimens(fd, &times), 0)
        close(fd)
        var after = stat()
        XCTAssertEqual(stat(url.path, &after), 0)
        XCTAssertEqual(after.st_size, before.st_size)
        XCTAssertEqual(after.st_mtim.tv_sec, before.st_mtim.tv_sec)
        XCTAssertEqual(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec)
        XCTAssertThrowsError(try zoo.checkpoint(id)) {
            XCTAssertTrue("\($0)".hasPrefix("object \(id.prefix(12)) is corrupt: holds content "), "\($0)")
        }
    }

    /// `verify` records the facts of a sound object, so reads after it trust the object again.
    func testVerifyRecordsFactsReadsThenTrust() throws {
        let (zoo, layout) = try makeZoo()
        let id = try zoo.add(ZooTestSupport.checkpoint(seed: 118)).id
        try zoo.catalog.write { db in try db.execute(sql: "DELETE FROM verified") }   // as after an upgrade
        XCTAssertNotNil(try zoo.load(id, rehash: false).hashed, "no recorded facts: the object is hashed")
        XCTAssertEqual(try zoo.verify().problems, [])
        XCTAssertNil(try zoo.load(id, rehash: false).hashed)
        XCTAssertNotNil(try zoo.load(id, rehash: true).hashed)
        // A copy put in place of the object (same bytes, another inode) is hashed again.
        let url = layout.objectURL(id)
        let copy = url.deletingLastPathComponent().appendingPathComponent("copy")
        try FileManager.default.copyItem(at: url, to: copy)
        XCTAssertEqual(rename(copy.path, url.path), 0)
        // `hashed` reports facts only once settled: past the clock tick of the rename (at most 10 ms).
        usleep(30_000)
        XCTAssertNotNil(try zoo.load(id, rehash: false).hashed)
    }

    /// A trusted object is read through its tensor index alone (schemas/checkpoint-v1.md, "Tensor
    /// index"); whoever verifies an object checks its index against its HDF5 metadata.
    func testTrustedReadsGoThroughTheIndexWhichVerifyChecks() throws {
        let (zoo, layout) = try makeZoo()
        var original = ZooTestSupport.checkpoint(seed: 119, metrics: ["top1": 0.5])
        original.provenance.metricHistory = ["loss": [2, 1]]
        let id = try zoo.add(original).id
        let url = layout.objectURL(id)
        XCTAssertNil(try zoo.load(id, rehash: false).hashed)
        XCTAssertEqual(try zoo.checkpoint(id), try CheckpointFile.read(url))
        XCTAssertEqual(try zoo.checkpoint(id), original)
        XCTAssertEqual(Array(try zoo.checkpoint(id, components: ["classifier"]).components.keys), ["classifier"])
        // The index's copy of the provenance (the file's first occurrence of it) made to say another
        // stage, and the new file facts recorded as if a verify had skipped the index check.
        var bytes = try Data(contentsOf: url)
        let at = try XCTUnwrap(bytes.range(of: Data("\"imported\"".utf8)))
        XCTAssertLessThan(at.lowerBound, 4096, "inside the index")
        bytes.replaceSubrange(at, with: Data("\"finetune\"".utf8))
        try bytes.write(to: url)
        let status = try XCTUnwrap(FileStatus(path: url.path))
        try zoo.catalog.write { db in try Catalog.recordVerified(id, status, db) }
        XCTAssertEqual(try zoo.checkpoint(id).provenance.stage, "finetune", "read through the index")
        XCTAssertEqual(try CheckpointFile.read(url).provenance.stage, "imported", "HDF5 readers see the dataset")
        let problems = try zoo.verify().problems
        XCTAssertEqual(problems.count, 1)
        XCTAssertTrue(problems[0].message.hasPrefix(
            "object of entry \(id.prefix(12)) is damaged: its tensor index disagrees with its HDF5 metadata (provenance)"),
            problems[0].message)
    }

    func testVerifyWarnsAboutDegenerateBatchNorm() throws {
        let (zoo, _) = try makeZoo()
        let id = try zoo.add(ZooTestSupport.checkpoint(seed: 110, zeroBNWeight: true)).id
        let report = try zoo.verify()
        XCTAssertEqual(report.problems, [])
        XCTAssertEqual(report.findings.map(\.level), [.warning])
        XCTAssertEqual(report.findings[0].id, id)
        XCTAssertEqual(report.findings[0].message,
                       "backbone: 1 BatchNorm weight tensor is all zero (bn1.weight): degenerate BatchNorm, constant features")
    }

    func testHealthCheckOnRunningVarZerosAndNaN() throws {
        var c = ZooTestSupport.checkpoint(seed: 111)
        c.components["backbone"]!["bn1.running_var"] = Tensor(float32: [0, 1, 0, 2], shape: [4])
        c.components["backbone"]!["conv1.weight"] = Tensor(float32: [.nan] + Array(repeating: 1, count: 107), shape: [4, 3, 3, 3])
        let warnings = HealthCheck.warnings(c)
        XCTAssertEqual(warnings.count, 2)
        XCTAssertTrue(warnings.contains("backbone conv1.weight: 1 NaN, 0 inf of 108 values (non-finite weights)"), "\(warnings)")
        XCTAssertTrue(warnings.contains { $0.hasPrefix("backbone bn1.running_var: 2 zero of 4 values") }, "\(warnings)")
    }

    func testGCRemovesLeftoversAndKeepsLiveFiles() throws {
        let (zoo, layout) = try makeZoo()
        let kept = try zoo.add(ZooTestSupport.checkpoint(seed: 112), name: "kept").id
        // Leftovers of interrupted writers: an unlisted object, a staged import and an AtomicFile
        // temporary of a dead pid, a stray ref, a trashed object of an unlisted entry.
        let unlisted = ZooTestSupport.checkpoint(seed: 113)
        let unlistedID = ContentID.compute(unlisted)
        try FileManager.default.createDirectory(at: layout.objectURL(unlistedID).deletingLastPathComponent(), withIntermediateDirectories: true)
        try ZooTestSupport.writeH5(unlisted, to: layout.objectURL(unlistedID))
        let deadPID: Int32 = 999_999  // checked below not to be a running process
        XCTAssertNotEqual(kill(deadPID, 0), 0)
        let staged = layout.tmp.appendingPathComponent(".staged.h5.tmp-\(deadPID)-123")
        try Data("partial".utf8).write(to: staged)
        let atomicTemp = layout.objectURL(kept).deletingLastPathComponent().appendingPathComponent(".x.h5.tmp-\(deadPID)-42")
        try Data("partial".utf8).write(to: atomicTemp)
        let stray = layout.refURL("ghost", kind: .tag)
        try Data((unlistedID + "\n").utf8).write(to: stray)
        // A staged file of a running writer (this process, holding its lock as every writer does) must
        // stay; one named with a live pid (this process's) that no one holds a lock on is a leftover:
        // pids are reused (a container's killed writer was often pid 1, which always runs).
        let live = layout.tmp.appendingPathComponent(".staged.h5.tmp-\(getpid())-7")
        let liveLock = try TemporaryFileLock.createFile(live, for: layout.tmp.appendingPathComponent("staged.h5"))
        defer { liveLock.release() }
        XCTAssertTrue(liveLock.isHeld)
        let livePID = layout.tmp.appendingPathComponent(".staged.h5.tmp-\(getpid())-8")
        try Data("junk".utf8).write(to: livePID)
        // A label whose ref file went missing (interrupted untag) is rewritten.
        unlink(layout.refURL("kept", kind: .name).path)

        let report = try zoo.verify()
        XCTAssertEqual(report.problems, [])
        XCTAssertEqual(Set(report.findings.filter { $0.level == .leftover }.compactMap(\.path)),
                       [layout.objectURL(unlistedID).path, staged.path, livePID.path, atomicTemp.path, stray.path, layout.refURL("kept", kind: .name).path])

        let dry = try zoo.gc(dryRun: true)
        XCTAssertEqual(dry.relistedObjects, [layout.objectURL(unlistedID).path])
        XCTAssertEqual(dry.strayRefs, [], "the ref naming the relisted object is its label, not stray")
        XCTAssertFalse(try zoo.list().map(\.id).contains(unlistedID), "dry run changes nothing")

        // The unlisted object is complete and verifies: gc lists it again (with its free tag), never deletes it.
        let gc = try zoo.gc()
        XCTAssertEqual(gc.relistedObjects, [layout.objectURL(unlistedID).path])
        XCTAssertEqual(gc.damagedObjects, [])
        XCTAssertEqual(Set(gc.writerLeftovers), [staged.path, livePID.path, atomicTemp.path])
        XCTAssertEqual(gc.strayRefs, [])
        XCTAssertEqual(gc.rewrittenRefs, [layout.refURL("kept", kind: .name).path])
        for url in [staged, livePID, atomicTemp] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: url.path), url.path)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: layout.objectURL(unlistedID).path))
        XCTAssertEqual(try zoo.record(unlistedID).tags, ["ghost"])
        XCTAssertEqual(try zoo.checkpoint(unlistedID, rehash: true).components, unlisted.components)
        XCTAssertTrue(FileManager.default.fileExists(atPath: live.path))
        XCTAssertEqual(try String(contentsOf: layout.refURL("kept", kind: .name), encoding: .utf8), kept + "\n")
        liveLock.release()
        try FileManager.default.removeItem(at: live)
        XCTAssertEqual(try zoo.verify().findings, [])
    }

    /// A writer in another pid namespace (a container sharing the zoo's volume) or on another NFS
    /// client has a pid that looks dead here: the lock it holds on its file keeps the file.
    func testGCKeepsAWritersFileItCannotLockThoughThePidInItsNameIsDead() throws {
        let (zoo, layout) = try makeZoo()
        let dead = try LockHolder.endedPID()
        try FileManager.default.createDirectory(at: layout.tmp, withIntermediateDirectories: true)
        let staged = layout.tmp.appendingPathComponent(".staged.h5.tmp-\(dead)-1")
        try Data("being written".utf8).write(to: staged)
        let holder = try LockHolder(staged)

        XCTAssertEqual(try zoo.verify().findings, [], "not reported as a leftover")
        XCTAssertEqual(try zoo.gc(dryRun: true).writerLeftovers, [])
        XCTAssertEqual(try zoo.gc().writerLeftovers, [])
        XCTAssertTrue(FileManager.default.fileExists(atPath: staged.path))

        holder.stop()   // the writer is gone, its lock with it
        XCTAssertEqual(try zoo.verify().findings.compactMap(\.path), [staged.path])
        XCTAssertEqual(try zoo.gc().writerLeftovers, [staged.path])
        XCTAssertFalse(FileManager.default.fileExists(atPath: staged.path))
    }

    /// Files under `refs/` that are not ref files as bissl writes them (garbage content, a name that is
    /// no label, a folder, a file beside `names/` and `tags/`) are kept by gc, which cannot tell that
    /// bissl wrote them, and named for what they are; a held label's ref is not rewritten over one.
    /// (gc removed the first three as "invalid ref files", rewrote the held one, and neither removed
    /// nor named the last two.)
    func testVerifyAndGCNameRefFilesThatAreNotRefsForWhatTheyAreAndKeepThem() throws {
        let (zoo, layout) = try makeZoo()
        let id = try zoo.add(ZooTestSupport.checkpoint(seed: 122), name: "held").id
        let garbage = layout.refURL("junk", kind: .name)
        try Data("hello world\n".utf8).write(to: garbage)
        let badName = layout.refURL("-x", kind: .tag)
        try Data((id + "\n").utf8).write(to: badName)
        let damagedHeld = layout.refURL("held", kind: .name)
        try Data("oops".utf8).write(to: damagedHeld)
        let wrongKind = layout.refURL("held", kind: .tag)
        try Data((id + "\n").utf8).write(to: wrongKind)
        let folder = layout.refURL("sub", kind: .name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        let readme = layout.refs.appendingPathComponent("README.txt")
        try Data("my notes\n".utf8).write(to: readme)

        let garbageReason = "not a ref file bissl writes (it holds 'hello world', not an entry id; a ref file is one line, an entry's full 64-hex id): gc never removes it; move it out of the zoo if it is yours, else remove it by hand"
        let badNameReason = "not a ref file bissl writes (its name is not a valid label (1-100 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit, not 6 or more hex digits only)): gc never removes it; move it out of the zoo if it is yours, else remove it by hand"
        let heldReason = "not a ref file bissl writes (it holds 'oops', not an entry id; a ref file is one line, an entry's full 64-hex id): gc never removes it; move it out of the zoo if it is yours and run bissl gc again (it rewrites the ref of name 'held'); to drop the name instead, bissl untag held (which keeps this file) and remove the file by hand"
        let folderReason = "not a ref file bissl writes (it is a folder): gc never removes it; move it out of the zoo if it is yours, else remove it by hand"
        let readmeReason = "a file that no bissl writer makes here (not an object, ref, temporary, transfer or trashed object): gc never removes it; move it out of the zoo if it is yours"
        let messages = Dictionary(uniqueKeysWithValues: try zoo.verify().findings.map { ($0.path ?? "", $0.message) })
        XCTAssertEqual(messages[garbage.path], garbageReason)
        XCTAssertEqual(messages[badName.path], badNameReason)
        XCTAssertEqual(messages[damagedHeld.path], "name 'held': " + heldReason)
        let wrongKindReason = "ref file of tag 'held' naming entry \(id.prefix(12)), but the catalog holds 'held' as the name of entry \(id.prefix(12)): gc never removes it (ref files are the record of labels); to keep the catalog's name, remove this file by hand; to give 'held' to \(id.prefix(12)) as its tag instead, bissl untag held, then bissl gc (it adds the label from this file, as bissl verify --reindex does)"
        XCTAssertEqual(messages[wrongKind.path], wrongKindReason)
        XCTAssertEqual(messages[folder.path], folderReason)
        XCTAssertEqual(messages[readme.path], readmeReason)

        let gc = try zoo.gc()
        XCTAssertEqual(gc.strayRefs, [])
        XCTAssertEqual(gc.rewrittenRefs, [])
        XCTAssertEqual(gc.failures, [])
        let kept = Dictionary(uniqueKeysWithValues: gc.kept.map { ($0.path, $0.reason) })
        XCTAssertEqual(kept, [garbage.path: garbageReason, badName.path: badNameReason, damagedHeld.path: heldReason,
                              wrongKind.path: wrongKindReason, folder.path: folderReason, readme.path: readmeReason])
        XCTAssertEqual(try String(contentsOf: wrongKind, encoding: .utf8), id + "\n")
        XCTAssertEqual(try String(contentsOf: garbage, encoding: .utf8), "hello world\n")
        XCTAssertEqual(try String(contentsOf: badName, encoding: .utf8), id + "\n")
        XCTAssertEqual(try String(contentsOf: damagedHeld, encoding: .utf8), "oops")
        XCTAssertEqual(try String(contentsOf: readme, encoding: .utf8), "my notes\n")
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.path))
        XCTAssertEqual(Set(try zoo.verify().findings.compactMap(\.path)), [garbage.path, badName.path, damagedHeld.path, wrongKind.path, folder.path, readme.path])
        XCTAssertEqual(try zoo.resolve("held"), id, "the catalog keeps the label")

        // Once the user moves the damaged ref away, gc rewrites it.
        XCTAssertEqual(unlink(damagedHeld.path), 0)
        XCTAssertEqual(try zoo.gc().rewrittenRefs, [damagedHeld.path])
        XCTAssertEqual(try String(contentsOf: damagedHeld, encoding: .utf8), id + "\n")
    }

    /// `tag` and an import's labels do not write over a valid ref file of a label the catalog does
    /// not hold when it names another entry the zoo lists (what gc adopts and verify --reindex gives
    /// back), nor beside one of the other kind: each refuses with one message naming the file, the
    /// entry and the commands that settle it, changing nothing. A ref already naming the entry being
    /// labelled is the same record; one naming an entry the zoo does not list is replaced. (The
    /// file was overwritten and the record lost.)
    func testTagAndImportKeepARefFileRecordingAnUnheldLabelForAListedEntry() throws {
        let (zoo, layout) = try makeZoo()
        let a = try zoo.add(ZooTestSupport.checkpoint(seed: 140), name: "a").id
        let b = try zoo.add(ZooTestSupport.checkpoint(seed: 141)).id
        let recorded = layout.refURL("v1", kind: .tag)
        try Data((b + "\n").utf8).write(to: recorded)
        let recordedName = layout.refURL("best", kind: .name)
        try Data((b + "\n").utf8).write(to: recordedName)
        func refusal(_ label: String, kind: LabelKind, of id: String, file: URL, fileKind: LabelKind) -> String {
            "cannot make '\(label)' the \(kind.rawValue) of entry \(id.prefix(12)): \(file.path) is a ref file of \(fileKind.rawValue) '\(label)' naming entry \(b.prefix(12)), a label the catalog does not hold (interrupted import or tag), "
                + "and ref files are the record of labels, so bissl does not write over it; bissl gc adds it to the catalog, as bissl verify --reindex does (then bissl untag \(label) frees it), or remove the file by hand to drop the label, then run again"
        }
        let before = try ZooTestSupport.snapshot(layout.root)
        XCTAssertThrowsError(try zoo.tag(a, "v1")) {
            XCTAssertEqual("\($0)", refusal("v1", kind: .tag, of: a, file: recorded, fileKind: .tag))
        }
        XCTAssertThrowsError(try zoo.tag(a, "best")) {  // beside a name's record
            XCTAssertEqual("\($0)", refusal("best", kind: .tag, of: a, file: recordedName, fileKind: .name))
        }
        XCTAssertThrowsError(try zoo.add(ZooTestSupport.checkpoint(seed: 140), tags: ["v1"])) {  // a listed entry
            XCTAssertEqual("\($0)", refusal("v1", kind: .tag, of: a, file: recorded, fileKind: .tag))
        }
        let c = ZooTestSupport.checkpoint(seed: 142)
        XCTAssertThrowsError(try zoo.add(c, name: "best")) {  // a new entry
            XCTAssertTrue("\($0)".contains(": \(recordedName.path) is a ref file of name 'best' naming entry \(b.prefix(12)), a label the catalog does not hold"), "\($0)")
        }
        XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before, "a refused tag or import changes nothing")

        // The same record: labelling the entry the file names, as its kind, writes it again.
        XCTAssertTrue(try zoo.tag(b, "v1").added)
        XCTAssertEqual(try zoo.add(c, name: "c").name, "c")
        // A ref naming an entry the zoo does not list is a stray: replaced.
        let stray = layout.refURL("v2", kind: .tag)
        try Data((String(repeating: "c", count: 64) + "\n").utf8).write(to: stray)
        XCTAssertTrue(try zoo.tag(a, "v2").added)
        XCTAssertEqual(try String(contentsOf: stray, encoding: .utf8), a + "\n")
        // Settled as the message says: gc gives the name to the entry its file names.
        XCTAssertEqual(try zoo.gc().adoptedRefs, [recordedName.path])
        XCTAssertEqual(try zoo.resolve("best"), b)
    }

    /// A ref file of the other kind recording the label for the same entry (an interrupted import
    /// with `--name` or tag left it) is the same entry's record: the label is given as asked, as a name
    /// over a tag's file and as a tag over a name's file, by `import` (to a listed entry) and by `tag`,
    /// and the other kind's file goes, so `verify` finds nothing. (Refused before, as if it named
    /// another entry.)
    func testALabelRecordedForTheSameEntryAsTheOtherKindIsGivenAsAsked() throws {
        let (zoo, layout) = try makeZoo()
        let a = try zoo.add(ZooTestSupport.checkpoint(seed: 150)).id
        let b = try zoo.add(ZooTestSupport.checkpoint(seed: 151)).id
        func record(_ label: String, _ kind: LabelKind, _ id: String) throws -> URL {
            let url = layout.refURL(label, kind: kind)
            try Data((id + "\n").utf8).write(to: url)
            return url
        }
        // import --name over a tag's file
        let tagFile = try record("foo", .tag, a)
        XCTAssertEqual(try zoo.add(ZooTestSupport.checkpoint(seed: 150), name: "foo").name, "foo")
        XCTAssertEqual(try String(contentsOf: layout.refURL("foo", kind: .name), encoding: .utf8), a + "\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: tagFile.path), "the tag's file of the same label goes")
        // tag over a name's file
        let nameFile = try record("bar", .name, a)
        XCTAssertTrue(try zoo.tag(a, "bar").added)
        XCTAssertEqual(try String(contentsOf: layout.refURL("bar", kind: .tag), encoding: .utf8), a + "\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: nameFile.path))
        // import --tag over a name's file
        let other = try record("baz", .name, b)
        XCTAssertEqual(try zoo.add(ZooTestSupport.checkpoint(seed: 151), tags: ["baz"]).tags, ["baz"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: other.path))
        XCTAssertEqual(try zoo.resolve("foo"), a)
        XCTAssertEqual(try zoo.resolve("bar"), a)
        XCTAssertEqual(try zoo.resolve("baz"), b)
        XCTAssertEqual(try zoo.verify().findings, [])
        // The other kind's file naming another entry is still that entry's record: refused.
        let kept = try record("qux", .name, b)
        XCTAssertThrowsError(try zoo.tag(a, "qux")) {
            XCTAssertTrue("\($0)".contains(": \(kept.path) is a ref file of name 'qux' naming entry \(b.prefix(12)), a label the catalog does not hold"), "\($0)")
        }
    }

    /// A valid ref file naming a listed entry is a record of its label also when the catalog holds
    /// the label otherwise (tag 'v1' of entry A, refs/tags/v1 naming entry B; name 'b' of B,
    /// refs/tags/b naming A): gc keeps both, a dry run says the same, the held label's ref is not
    /// rewritten over the first, verify says what gc does, and each settling command it names does
    /// what it says. A ref naming no listed entry is still removed. (gc deleted both, rewriting A's
    /// ref over the first, while verify --reindex gives 'v1' to B.)
    func testGCKeepsAValidRefOfALabelTheCatalogHoldsForAnotherEntryOrAsTheOtherKind() throws {
        let (zoo, layout) = try makeZoo()
        let a = try zoo.add(ZooTestSupport.checkpoint(seed: 130), name: "a", tags: ["v1"]).id
        let b = try zoo.add(ZooTestSupport.checkpoint(seed: 131), name: "b").id
        let otherEntry = layout.refURL("v1", kind: .tag)
        try Data((b + "\n").utf8).write(to: otherEntry)
        let otherKind = layout.refURL("b", kind: .tag)
        try Data((a + "\n").utf8).write(to: otherKind)
        let gone = String(repeating: "c", count: 64)   // an entry the zoo does not list
        let stray = layout.refURL("a", kind: .tag)
        try Data((gone + "\n").utf8).write(to: stray)

        let otherEntryReason = "ref file of tag 'v1' naming entry \(b.prefix(12)), but the catalog holds 'v1' as the tag of entry \(a.prefix(12)): gc never removes it (ref files are the record of labels) nor rewrites it; to keep the catalog's tag, remove this file by hand and run bissl gc (it rewrites the ref); to give 'v1' to \(b.prefix(12)) as its tag instead, bissl untag v1 (which keeps this file), then bissl gc (it adds the label from this file, as bissl verify --reindex does)"
        let otherKindReason = "ref file of tag 'b' naming entry \(a.prefix(12)), but the catalog holds 'b' as the name of entry \(b.prefix(12)): gc never removes it (ref files are the record of labels); to keep the catalog's name, remove this file by hand; to give 'b' to \(a.prefix(12)) as its tag instead, bissl untag b, then bissl gc (it adds the label from this file, as bissl verify --reindex does)"
        let messages = Dictionary(uniqueKeysWithValues: try zoo.verify().findings.map { ($0.path ?? "", $0.message) })
        XCTAssertEqual(messages, [otherEntry.path: otherEntryReason, otherKind.path: otherKindReason,
                                  stray.path: "ref file of tag 'a' naming entry \(gone.prefix(12)), which the catalog does not list (interrupted import or rm); bissl gc removes it"])

        for dryRun in [true, false] {
            let gc = try zoo.gc(dryRun: dryRun)
            XCTAssertEqual(gc.strayRefs, [stray.path], "dry run \(dryRun)")
            XCTAssertEqual(gc.rewrittenRefs + gc.adoptedRefs + gc.failures, [], "dry run \(dryRun)")
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: gc.kept.map { ($0.path, $0.reason) }),
                           [otherEntry.path: otherEntryReason, otherKind.path: otherKindReason], "dry run \(dryRun)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: stray.path))
        XCTAssertEqual(try String(contentsOf: otherEntry, encoding: .utf8), b + "\n")
        XCTAssertEqual(try String(contentsOf: otherKind, encoding: .utf8), a + "\n")
        XCTAssertEqual(try zoo.resolve("v1"), a, "the catalog keeps its labels")
        XCTAssertEqual(try zoo.resolve("b"), b)

        // Settled one way: the file gives 'v1' to B (untag keeps it; gc adopts it).
        let untagged = try zoo.untag("v1")
        XCTAssertEqual(untagged.kept?.path, otherEntry.path)
        XCTAssertEqual(try zoo.gc().adoptedRefs, [otherEntry.path])
        XCTAssertEqual(try zoo.resolve("v1"), b)
        // The other way: removing the file keeps the catalog's name 'b'.
        XCTAssertEqual(unlink(otherKind.path), 0)
        XCTAssertEqual(try zoo.gc().kept, [])
        XCTAssertEqual(try zoo.verify().findings, [])
        XCTAssertEqual(try zoo.resolve("b"), b)
    }

    /// Each way out that gc and verify print for a kept valid ref file, followed literally on a fresh
    /// zoo (its commands run in the order printed), leaves the label in the catalog with a ref file
    /// that agrees and verify clean, except the one that says it drops the label. The cases: a name
    /// ref for a named entry while the catalog holds the label as another entry's tag (directly, and
    /// after gc adopted the tag from a tags/ ref), or as another entry's name; a tag ref at a held
    /// tag's path; a name ref for an unnamed entry; a second name ref of a label the catalog lacks.
    /// (For a named entry they said "bissl untag LABEL, then bissl gc", after which gc keeps the file
    /// as a second name: the label was in neither place.)
    func testEveryWayOutPrintedForAKeptRefFileLeavesTheLabelSomewhere() throws {
        struct Case { var label: String; var file: (label: String, kind: LabelKind); var setUp: (Zoo, ZooLayout, _ a: String, _ b: String) throws -> Void }
        let cases: [Case] = [
            Case(label: "v1", file: ("v1", .name)) { zoo, layout, _, b in
                try zoo.tag("a", "v1")
                try Data((b + "\n").utf8).write(to: layout.refURL("v1", kind: .name))
            },
            Case(label: "x", file: ("x", .name)) { zoo, layout, a, b in
                try Data((a + "\n").utf8).write(to: layout.refURL("x", kind: .tag))
                try Data((b + "\n").utf8).write(to: layout.refURL("x", kind: .name))
                XCTAssertEqual(try zoo.gc().adoptedRefs, [layout.refURL("x", kind: .tag).path])
            },
            Case(label: "a", file: ("a", .name)) { _, layout, _, b in
                try Data((b + "\n").utf8).write(to: layout.refURL("a", kind: .name))
            },
            Case(label: "v1", file: ("v1", .tag)) { zoo, layout, _, b in
                try zoo.tag("a", "v1")
                try Data((b + "\n").utf8).write(to: layout.refURL("v1", kind: .tag))
            },
            Case(label: "v1", file: ("v1", .name)) { zoo, layout, _, b in
                try zoo.tag("a", "v1")
                try zoo.untag("b")   // B unnamed: gc may give it a name
                try Data((b + "\n").utf8).write(to: layout.refURL("v1", kind: .name))
            },
            Case(label: "y", file: ("y", .name)) { _, layout, _, b in
                try Data((b + "\n").utf8).write(to: layout.refURL("y", kind: .name))
            },
        ]
        for (n, c) in cases.enumerated() {
            func scenario() throws -> (Zoo, URL) {
                let (zoo, layout) = try makeZoo()
                let a = try zoo.add(ZooTestSupport.checkpoint(seed: 140), name: "a").id
                let b = try zoo.add(ZooTestSupport.checkpoint(seed: 141), name: "b").id
                try c.setUp(zoo, layout, a, b)
                return (zoo, layout.refURL(c.file.label, kind: c.file.kind))
            }
            let (zoo, file) = try scenario()
            let advice = try XCTUnwrap(try zoo.verify().findings.first { $0.path == file.path }?.message, "case \(n)")
            XCTAssertEqual(try zoo.gc().kept.map(\.reason), [advice], "case \(n): gc and verify say the same")
            // "...: gc never removes it...; to keep ...; to give ... instead, ...": one way out per "; to ".
            let ways = advice.components(separatedBy: "; to ").dropFirst()
            XCTAssertGreaterThanOrEqual(ways.count, 2, "case \(n): \(advice)")
            let step = try NSRegularExpression(pattern: #"remove this file by hand|bissl (untag|tag|gc)((?: [A-Za-z0-9._-]+)*)"#)
            for way in ways {
                let (zoo, file) = try scenario()
                for match in step.matches(in: way, range: NSRange(way.startIndex..., in: way)) {
                    let words = (Range(match.range(at: 2), in: way).map { way[$0] } ?? "").split(separator: " ").map(String.init)
                    switch Range(match.range(at: 1), in: way).map({ String(way[$0]) }) {
                    case nil: XCTAssertEqual(unlink(file.path), 0, "case \(n): \(way)")
                    case "untag": try zoo.untag(words[0])
                    case "tag": try zoo.tag(words[0], words[1])
                    default: XCTAssertEqual(try zoo.gc().failures, [], "case \(n): \(way)")
                    }
                }
                _ = try zoo.gc()   // whatever is left to settle: nothing, when the way out worked
                if way.hasPrefix("drop") {
                    XCTAssertThrowsError(try zoo.resolve(c.label), "case \(n): \(way)")
                } else {
                    let id = try zoo.resolve(c.label)
                    let kind = try XCTUnwrap(try zoo.labels(of: id).first { $0.label == c.label }?.kind, "case \(n): \(way)")
                    XCTAssertEqual(try String(contentsOf: zoo.layout.refURL(c.label, kind: kind), encoding: .utf8), id + "\n", "case \(n): \(way)")
                }
                XCTAssertEqual(try zoo.verify().findings.map(\.message), [], "case \(n): \(way)")
            }
        }
    }

    /// What an interrupted pull or push keeps to resume from stays through `gc` while it made
    /// progress within the grace period; older ones, undecodable ones and `--grace 0` go.
    func testGCKeepsInterruptedTransfersForTheGracePeriod() throws {
        let (zoo, layout) = try makeZoo()
        let deadPID: Int32 = 999_999  // checked not to be a running process
        XCTAssertNotEqual(kill(deadPID, 0), 0)
        try FileManager.default.createDirectory(at: layout.tmp, withIntermediateDirectories: true)
        func pull(_ sha: Character, record: Bool) throws -> URL {
            let folder = layout.tmp.appendingPathComponent("\(String(repeating: sha, count: 64)).\(deadPID).pull")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(count: 1000).write(to: folder.appendingPathComponent("object.h5"))
            if record { try TransferRecords.write(DownloadRecord(size: 4000, rangeSize: 4000, done: [1000]), folder.appendingPathComponent("record.json")) }
            return folder
        }
        let recentPull = try pull("a", record: true)
        let oldPull = try pull("b", record: true)
        let brokenPull = try pull("c", record: false)  // no record: nothing to resume from
        let push = layout.tmp.appendingPathComponent("\(String(repeating: "d", count: 64)).\(deadPID).0123456789abcdef.push")
        try TransferRecords.write(UploadRecord(target: "t", uploadID: "u", size: 20 << 20, partSize: 8 << 20, parts: [.init(number: 1, etag: "\"e\"")]), push)
        let twoDaysAgo = Date().addingTimeInterval(-2 * 86400)
        for file in ["object.h5", "record.json"] {
            try FileManager.default.setAttributes([.modificationDate: twoDaysAgo], ofItemAtPath: oldPull.appendingPathComponent(file).path)
        }

        let gc = try zoo.gc()
        XCTAssertEqual(Set(gc.keptTransfers), [recentPull.path, push.path])
        XCTAssertEqual(Set(gc.writerLeftovers), [oldPull.path])
        // Not resumable, but not locked either: only its age shows that no pull still writes it.
        XCTAssertEqual(gc.kept.map(\.path), [brokenPull.path])
        XCTAssertTrue(FileManager.default.fileExists(atPath: recentPull.appendingPathComponent("object.h5").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: push.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: oldPull.path))
        XCTAssertEqual(try zoo.verify().findings.filter { $0.level == .transfer }.count, 2, "still reported as resumable")
        let dry = try zoo.gc(dryRun: true, transferGrace: 0)
        XCTAssertEqual(Set(dry.writerLeftovers), [recentPull.path, push.path, brokenPull.path])
        XCTAssertTrue(FileManager.default.fileExists(atPath: push.path), "dry run changes nothing")
        let all = try zoo.gc(transferGrace: 0)
        XCTAssertEqual(all.keptTransfers, [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: layout.tmp.path), [])
    }

    /// A killed pull's folder whose entry the zoo holds now (another pull or an import brought it)
    /// has nothing to resume: verify calls it a leftover and gc removes it within the grace period.
    /// (It was kept for the grace period and called resumable.) A pull of an entry the zoo lacks,
    /// and one whose record predates `DownloadRecord.entry`, stay resumable.
    func testGCRemovesAnInterruptedPullOfAnEntryTheZooHoldsNow() throws {
        let (zoo, layout) = try makeZoo()
        let held = try zoo.add(ZooTestSupport.checkpoint(seed: 123), name: "arrived").id
        let deadPID = try LockHolder.endedPID()
        try FileManager.default.createDirectory(at: layout.tmp, withIntermediateDirectories: true)
        func pull(_ sha: Character, entry: String?) throws -> URL {
            let folder = layout.tmp.appendingPathComponent("\(String(repeating: sha, count: 64)).\(deadPID).pull")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(count: 1000).write(to: folder.appendingPathComponent("object.h5"))
            try TransferRecords.write(DownloadRecord(entry: entry, size: 4000, rangeSize: 4000, done: [1000]), folder.appendingPathComponent("record.json"))
            return folder
        }
        let arrived = try pull("a", entry: held)
        let missing = try pull("b", entry: String(repeating: "e", count: 64))
        let older = try pull("c", entry: nil)

        let findings = try zoo.verify().findings
        XCTAssertEqual(findings.filter { $0.level == .leftover }.map(\.path), [arrived.path])
        XCTAssertEqual(findings.first { $0.path == arrived.path }?.message,
                       "what an interrupted pull of entry \(held.prefix(12)) kept, which the zoo holds now (another pull or an import brought it): nothing to resume; bissl gc removes it")
        XCTAssertEqual(Set(findings.filter { $0.level == .transfer }.compactMap(\.path)), [missing.path, older.path])

        XCTAssertEqual(try zoo.gc(dryRun: true).writerLeftovers, [arrived.path])
        XCTAssertTrue(FileManager.default.fileExists(atPath: arrived.path), "dry run changes nothing")
        let gc = try zoo.gc()
        XCTAssertEqual(gc.writerLeftovers, [arrived.path])
        XCTAssertEqual(Set(gc.keptTransfers), [missing.path, older.path])
        XCTAssertFalse(FileManager.default.fileExists(atPath: arrived.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: missing.appendingPathComponent("object.h5").path))
    }

    func testGCMovesADamagedUnlistedObjectAsideAndKeepsAMismatchedOne() throws {
        let (zoo, layout) = try makeZoo()
        _ = try zoo.add(ZooTestSupport.checkpoint(seed: 115), name: "kept")
        // Garbage named like an object, and a valid checkpoint filed under another content's id.
        let garbageID = String(repeating: "c", count: 64)
        try FileManager.default.createDirectory(at: layout.objectURL(garbageID).deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("not hdf5".utf8).write(to: layout.objectURL(garbageID))
        let wrongID = String(repeating: "d", count: 64)
        try FileManager.default.createDirectory(at: layout.objectURL(wrongID).deletingLastPathComponent(), withIntermediateDirectories: true)
        try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 116), to: layout.objectURL(wrongID))
        let gc = try zoo.gc()
        XCTAssertEqual(gc.relistedObjects, [])
        XCTAssertEqual(Set(gc.damagedObjects), [layout.damaged.appendingPathComponent(garbageID + ".h5").path,
                                                 layout.damaged.appendingPathComponent(wrongID + ".h5").path])
        XCTAssertEqual(try Data(contentsOf: layout.damaged.appendingPathComponent(garbageID + ".h5")), Data("not hdf5".utf8), "moved, not deleted")
        XCTAssertTrue(ZooScan(layout).objects.count == 1)
        XCTAssertEqual(try zoo.list().map(\.name), ["kept"])
    }

    func testASecondGCOfTheSameDamagedContentKeepsTheFirstQuarantinedCopy() throws {
        let (zoo, layout) = try makeZoo()
        let id = String(repeating: "c", count: 64)
        let object = layout.objectURL(id)
        try FileManager.default.createDirectory(at: object.deletingLastPathComponent(), withIntermediateDirectories: true)
        let first = layout.damaged.appendingPathComponent(id + ".h5")
        let second = layout.damaged.appendingPathComponent(id + ".2.h5")
        let third = layout.damaged.appendingPathComponent(id + ".3.h5")
        try Data("first garbage".utf8).write(to: object)
        XCTAssertEqual(try zoo.gc().damagedObjects, [first.path])
        try Data("second garbage".utf8).write(to: object)
        XCTAssertEqual(try zoo.gc(dryRun: true).damagedObjects, [second.path])
        XCTAssertEqual(try zoo.gc().damagedObjects, [second.path])
        try Data("third garbage".utf8).write(to: object)
        XCTAssertEqual(try zoo.gc().damagedObjects, [third.path])
        XCTAssertEqual(try Data(contentsOf: first), Data("first garbage".utf8), "never replaced")
        XCTAssertEqual(try Data(contentsOf: second), Data("second garbage".utf8))
        XCTAssertEqual(try Data(contentsOf: third), Data("third garbage".utf8))

        // A listed entry found damaged twice (imported again in between) keeps both copies as well.
        let checkpoint = ZooTestSupport.checkpoint(seed: 117)
        let listed = try zoo.add(checkpoint).id
        unlink(layout.objectURL(listed).path)   // objects may be read-only: replaced, not written into
        try Data("torn".utf8).write(to: layout.objectURL(listed))
        XCTAssertEqual(try zoo.gc().damagedEntries.map(\.movedTo), [layout.damaged.appendingPathComponent(listed + ".h5").path])
        _ = try zoo.add(checkpoint)
        unlink(layout.objectURL(listed).path)
        try Data("torn again".utf8).write(to: layout.objectURL(listed))
        XCTAssertEqual(try zoo.gc().damagedEntries.map(\.movedTo), [layout.damaged.appendingPathComponent(listed + ".2.h5").path])
        XCTAssertEqual(try Data(contentsOf: layout.damaged.appendingPathComponent(listed + ".h5")), Data("torn".utf8))
    }

    func testGCRestoresAnObjectAnInterruptedRemoveLeftInTrash() throws {
        let (zoo, layout) = try makeZoo()
        let id = try zoo.add(ZooTestSupport.checkpoint(seed: 114)).id
        // rm moves the object to trash inside its transaction; killed before the commit, the
        // catalog still lists the entry.
        let trashed = layout.trash.appendingPathComponent("\(id).999999.h5")
        XCTAssertEqual(rename(layout.objectURL(id).path, trashed.path), 0)
        let report = try zoo.verify()
        XCTAssertEqual(report.problems.count, 1)
        XCTAssertTrue(report.problems[0].message.contains("in trash/ after an interrupted rm"), report.problems[0].message)
        XCTAssertEqual(try zoo.gc().restoredObjects, [layout.objectURL(id).path])
        XCTAssertEqual(try zoo.verify().findings, [])
    }

    func testReimportingContentThatGCUnlistedAsDamagedBringsBackItsFreeLabels() throws {
        // gc unlists an entry whose object is damaged and frees its labels; importing the same file
        // again used to bring the entry back without its name.
        let (zoo, layout) = try makeZoo()
        let lost = ZooTestSupport.checkpoint(seed: 120)
        let id = try zoo.add(lost, name: "mine", tags: ["v1", "keep"]).id
        let other = try zoo.add(ZooTestSupport.checkpoint(seed: 121), name: "other").id
        unlink(layout.objectURL(id).path)
        XCTAssertEqual(try zoo.gc().damagedEntries.map(\.id), [id])
        XCTAssertEqual(try TombstoneFile.read(layout.tombstoneURL(id)).name, "mine")
        _ = try zoo.tag(other, "v1")   // taken meanwhile: stays the other entry's

        let again = try zoo.add(lost)
        XCTAssertTrue(again.added)
        XCTAssertEqual(again.name, "mine")
        XCTAssertEqual(again.tags, ["keep"])
        XCTAssertEqual(again.labelsRestored, ["mine", "keep"])
        XCTAssertEqual(again.labelsNotRestored, ["v1"])
        XCTAssertEqual(try zoo.resolve("mine"), id)
        XCTAssertEqual(try zoo.resolve("v1"), other)
        XCTAssertEqual(try zoo.verify().findings, [], "ref files and rows agree")

        // A name given at the import wins over the old one, which is reported as not restored.
        _ = try zoo.remove(id)
        unlink(layout.tombstoneURL(id).path)
        let second = try zoo.add(lost, name: "mine", tags: ["keep"]).id
        unlink(layout.objectURL(second).path)
        _ = try zoo.gc()
        let renamed = try zoo.add(lost, name: "renamed")
        XCTAssertEqual(renamed.name, "renamed")
        XCTAssertEqual(renamed.labelsRestored, ["keep"])
        XCTAssertEqual(renamed.labelsNotRestored, ["mine"])
    }

    func testReimportingARemovedEntryDropsItsTombstone() throws {
        let (zoo, layout) = try makeZoo()
        let c = try chain(zoo)
        _ = try zoo.remove(c.aligned, force: true)
        let again = try zoo.add(ZooTestSupport.checkpoint(seed: 101, stage: "bissl", method: "bissl", parents: [.init(id: c.pre, relation: "aligned-from")]))
        XCTAssertTrue(again.added)
        XCTAssertEqual(again.id, c.aligned)
        XCTAssertNil(again.name, "rm meant the removal: its labels stay free")
        XCTAssertEqual(again.labelsRestored, [])
        XCTAssertNil(try zoo.tombstone(c.aligned))
        XCTAssertFalse(FileManager.default.fileExists(atPath: layout.tombstoneURL(c.aligned).path))
        XCTAssertEqual(try zoo.lineage(c.ft1, direction: .up).nodes.map(\.status), [.listed, .listed, .listed])
    }
}
