import Checkpoint
import Foundation
import XCTest
@testable import Zoo

/// Push, pull, list, lineage and gc against a real S3 server (`SeaweedServer`), in-process.
final class RemoteTests: XCTestCase {
    /// A zoo with `base` (imported, name `base`) and its child `ft` (finetune, name `ft`, tag `best`).
    private func lineageZoo(_ dir: URL, extraFloats: Int = 0) throws -> (zoo: Zoo, base: String, child: String) {
        let zoo = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("a")), create: true)
        let base = try zoo.add(ZooTestSupport.checkpoint(seed: 1, extraFloats: extraFloats), name: "base").id
        let child = try zoo.add(ZooTestSupport.checkpoint(seed: 2, stage: "finetune", method: "supervised",
                                                          parents: [.init(id: base, relation: "finetuned-from", note: "head re-initialised")],
                                                          metrics: ["top1": 0.5]),
                                name: "ft", tags: ["best"]).id
        return (zoo, base, child)
    }

    func testPushPullRoundTripWithAncestorsLabelsListAndLineage() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, base, child) = try lineageZoo(dir)
        let config = try server.remote(prefix: "zoos/team")
        let remote = try server.store(config)

        let pushed = try a.push("ft", remote, ancestors: true, force: false, progress: nil)
        XCTAssertEqual(pushed.entries.map(\.id), [base, child], "ancestors go first")
        XCTAssertEqual(pushed.entries.map(\.transferred), [true, true])
        XCTAssertEqual(Set(pushed.labels.map { "\($0.label)=\($0.action.rawValue)" }), ["base=created", "ft=created", "best=created"])
        // Everything lives under the prefix, in the documented layout.
        let keys = Set(try remote.list("").map(\.key))
        XCTAssertTrue(keys.isSuperset(of: ["bissl-remote.json", "entries/\(base).json", "entries/\(child).json", "refs/base", "refs/ft", "refs/best"]), "\(keys)")
        XCTAssertEqual(keys.filter { $0.hasPrefix("objects/") }.count, 2)

        // Listing and lineage from manifests and refs alone.
        let listed = try RemoteZoo(store: remote).list()
        XCTAssertEqual(Set(listed.map(\.id)), [base, child])
        let ft = try XCTUnwrap(listed.first { $0.id == child })
        XCTAssertEqual(ft.name, "ft")
        XCTAssertEqual(ft.tags, ["best"])
        XCTAssertEqual(ft.summary, try a.record(child).summary)
        let graph = try RemoteZoo(store: remote).lineage("ft")
        XCTAssertEqual(graph.root, child)
        XCTAssertEqual(graph.edges.map { "\($0.parent.prefix(6))>\($0.child.prefix(6)) \($0.relation)" }, ["\(base.prefix(6))>\(child.prefix(6)) finetuned-from"])

        // Pushing again sends nothing.
        let again = try a.push("ft", remote, ancestors: true, force: false, progress: nil)
        XCTAssertEqual(again.entries.map(\.transferred), [false, false])
        XCTAssertEqual(again.bytes, 0)

        // A first pull into an empty zoo brings both entries, their labels, and the same object bytes.
        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        let pulled = try b.pull(String(child.prefix(8)), remote, ancestors: true, progress: nil)
        XCTAssertEqual(pulled.entries.map(\.id), [base, child])
        XCTAssertEqual(pulled.entries.map(\.transferred), [true, true])
        XCTAssertEqual(try b.resolve("ft"), child)
        XCTAssertEqual(try b.resolve("best"), child)
        XCTAssertEqual(try b.resolve("base"), base)
        XCTAssertEqual(try b.record(child).summary, try a.record(child).summary)
        XCTAssertEqual(try Data(contentsOf: b.layout.objectURL(child)), try Data(contentsOf: a.layout.objectURL(child)))
        XCTAssertEqual(try b.lineage("ft", direction: .up).nodes.map(\.id), [child, base])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: b.layout.tmp.path), [])
        let pulledAgain = try b.pull("ft", remote, ancestors: true, progress: nil)
        XCTAssertEqual(pulledAgain.entries.map(\.transferred), [false, false])
    }

    func testMultipartObjectsAndLabelConflicts() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        // 3 M float32 = 12 MB: three 5 MiB parts (S3's smallest part size) each way.
        let (a, base, _) = try lineageZoo(dir, extraFloats: 3_000_000)
        let config = try server.remote()
        let remote = try server.store(config)
        remote.multipartThreshold = 5 << 20
        remote.partSize = 5 << 20
        let seen = Locked<Int64>(0)
        let r = try a.push("base", remote, ancestors: false, force: false, progress: { _, done, _ in seen.update { $0 = max($0, done) } })
        XCTAssertEqual(r.entries.map(\.transferred), [true])
        let size = try a.record(base).summary.size
        XCTAssertGreaterThan(size, 10 << 20)
        XCTAssertEqual(seen.value, size, "progress reaches the object size")
        XCTAssertEqual(try remote.pendingUploads().count, 0)

        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        XCTAssertEqual(try b.pull("base", remote, ancestors: true, progress: nil).bytes, size)
        XCTAssertEqual(try Data(contentsOf: b.layout.objectURL(base)), try Data(contentsOf: a.layout.objectURL(base)))

        // Another zoo's different entry named `base`: refused before any upload, naming the holder.
        let c = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("c")), create: true)
        let other = try c.add(ZooTestSupport.checkpoint(seed: 9), name: "base", tags: ["shared"]).id
        XCTAssertThrowsError(try c.push("base", remote, ancestors: true, force: false, progress: nil)) { error in
            XCTAssertTrue("\(error)".contains("'base' on remote team is the name of entry \(base.prefix(12))"), "\(error)")
        }
        XCTAssertFalse(try remote.exists(RemoteStore.manifestKey(other)), "nothing was uploaded")
        // A tag moves only with force, by compare-and-swap; a name never.
        XCTAssertEqual(try Zoo.setRemoteRef("shared", kind: .tag, id: base, force: false, remote), .created)
        XCTAssertThrowsError(try Zoo.setRemoteRef("shared", kind: .tag, id: other, force: false, remote))
        XCTAssertEqual(try Zoo.setRemoteRef("shared", kind: .tag, id: other, force: true, remote), .moved)
        XCTAssertEqual(try remote.ref("shared")?.id, other)
        XCTAssertThrowsError(try Zoo.setRemoteRef("base", kind: .name, id: other, force: true, remote))
        // Stale ETags lose: the compare-and-swap the move relies on.
        let stale = try XCTUnwrap(remote.ref("shared")?.etag)
        XCTAssertTrue(try remote.replace(RemoteStore.refKey("shared"), RemoteRef(id: base, kind: .tag).body, etag: stale))
        XCTAssertFalse(try remote.replace(RemoteStore.refKey("shared"), RemoteRef(id: other, kind: .tag).body, etag: stale))
        XCTAssertFalse(try remote.create(RemoteStore.refKey("shared"), RemoteRef(id: other, kind: .tag).body), "If-None-Match: * never overwrites")
        XCTAssertEqual(try remote.ref("shared")?.id, base)
    }

    func testCorruptRemoteObjectIsRefusedAndNamed() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, base, child) = try lineageZoo(dir)
        let remote = try server.store(try server.remote())
        _ = try a.push("ft", remote, ancestors: true, force: false, progress: nil)
        let manifest = try XCTUnwrap(remote.manifest(child))
        let objectKey = RemoteStore.objectKey(sha256: manifest.object.sha256)

        // 1. Bytes changed on the server: the SHA-256 check refuses them.
        var bytes = try Data(contentsOf: a.layout.objectURL(child))
        bytes[bytes.count / 2] ^= 0xFF
        XCTAssertEqual(try remote.client.send("PUT", remote.key(objectKey), body: .data(bytes)).status, 200)
        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        XCTAssertThrowsError(try b.pull("ft", remote, ancestors: false, progress: nil)) { error in
            XCTAssertTrue("\(error)".contains("the object of entry \(child.prefix(12)) on remote team is corrupt"), "\(error)")
            XCTAssertTrue("\(error)".contains("not imported"), "\(error)")
        }
        XCTAssertEqual(try b.list().count, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: b.layout.tmp.path), [])

        // 2. A valid checkpoint of other content, with a manifest matching its bytes: the recomputed
        //    content id refuses it.
        let impostor = dir.appendingPathComponent("impostor.h5")
        try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 77), to: impostor)
        let (sha, size) = try RemoteStore.sha256(of: impostor)
        XCTAssertTrue(try remote.uploadObject(impostor, sha256: sha, size: size, progress: nil))
        var forged = manifest
        forged.object = .init(sha256: sha, size: size)
        XCTAssertEqual(try remote.client.send("PUT", remote.key(RemoteStore.manifestKey(child)), body: .data(RemoteStore.encodeManifest(forged))).status, 200)
        XCTAssertThrowsError(try b.pull("ft", remote, ancestors: true, progress: nil)) { error in
            XCTAssertTrue("\(error)".contains("the object of entry \(child.prefix(12)) on remote team is corrupt: it holds content"), "\(error)")
        }
        // The intact ancestor came in (ancestors go first); the corrupt entry did not.
        XCTAssertEqual(try b.list().map(\.id), [base])
    }

    func testServerKilledMidTransferLeavesNoPartialEntry() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, base, _) = try lineageZoo(dir, extraFloats: 4_000_000)
        let config = try server.remote()
        let remote = try server.store(config)
        remote.multipartThreshold = 5 << 20
        remote.partSize = 5 << 20
        remote.connections = 1
        remote.client.attempts = 1
        let size = try a.record(base).summary.size
        XCTAssertThrowsError(try a.push("base", remote, ancestors: false, force: false, progress: { _, done, _ in
            if done > size / 3 { server.kill() }
        }))
        try server.start()
        remote.client.attempts = 3
        XCTAssertFalse(try remote.exists(RemoteStore.manifestKey(base)), "no manifest: the entry is not on the remote")
        XCTAssertEqual(try RemoteZoo(store: remote).list().count, 0)
        // A new push starts over and succeeds; gc with no grace aborts what the killed one left.
        XCTAssertEqual(try a.push("base", remote, ancestors: false, force: false, progress: nil).entries.map(\.transferred), [true])
        let gc = try RemoteZoo(store: remote).gc(grace: 0)
        XCTAssertEqual(gc.removedObjects, [])
        XCTAssertEqual(try remote.pendingUploads().count, 0)

        // The server dies during a pull: nothing is listed, nothing staged stays.
        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        XCTAssertThrowsError(try b.pull("base", remote, ancestors: false, progress: { _, done, _ in
            if done > size / 3 { server.kill() }
        }))
        XCTAssertEqual(try b.list().count, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: b.layout.tmp.path), [])
        try server.start()
        XCTAssertEqual(try b.pull("base", remote, ancestors: false, progress: nil).entries.map(\.transferred), [true])
        XCTAssertEqual(try b.resolve("base"), base)
    }

    func testRemoteGCRemovesOnlyOldUnreferencedObjects() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, _, child) = try lineageZoo(dir)
        let remote = try server.store(try server.remote())
        _ = try a.push("ft", remote, ancestors: true, force: false, progress: nil)
        let orphan = dir.appendingPathComponent("orphan.h5")
        try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 5), to: orphan)
        let (sha, size) = try RemoteStore.sha256(of: orphan)
        XCTAssertTrue(try remote.uploadObject(orphan, sha256: sha, size: size, progress: nil))
        let zoo = RemoteZoo(store: remote)

        let young = try zoo.gc(grace: 3600)
        XCTAssertEqual(young.removedObjects, [])
        XCTAssertEqual(young.keptRecent, 1)
        let dry = try zoo.gc(grace: 0, dryRun: true)
        XCTAssertEqual(dry.removedObjects, [RemoteStore.objectKey(sha256: sha)])
        XCTAssertTrue(try remote.exists(RemoteStore.objectKey(sha256: sha)))
        let done = try zoo.gc(grace: 0)
        XCTAssertEqual(done.removedObjects, [RemoteStore.objectKey(sha256: sha)])
        XCTAssertEqual(done.bytes, size)
        XCTAssertFalse(try remote.exists(RemoteStore.objectKey(sha256: sha)))
        // Referenced objects stay; the entries still pull.
        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        XCTAssertEqual(try b.pull("ft", remote, ancestors: true, progress: nil).entries.count, 2)
        XCTAssertEqual(try b.resolve("ft"), child)
        XCTAssertEqual(done.missingObjects, [])
        XCTAssertEqual(done.danglingLabels, [])
    }
}
