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
        let listed = try RemoteZoo(store: remote).list().entries
        XCTAssertEqual(Set(listed.map(\.id)), [base, child])
        let ft = try XCTUnwrap(listed.first { $0.id == child })
        XCTAssertEqual(ft.name, "ft")
        XCTAssertEqual(ft.tags, ["best"])
        XCTAssertEqual(ft.summary, try a.record(child).summary)
        let graph = try RemoteZoo(store: remote).lineage("ft").graph
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
            // The remedy for a name, which no command renames: untag it and push under a tag.
            XCTAssertTrue("\(error)".hasSuffix("not of this entry; a name cannot change, so push this entry under a tag: bissl untag base (the entry stays), bissl tag \(other.prefix(12)) NEWLABEL, then push again"), "\(error)")
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

        let original = try Data(contentsOf: a.layout.objectURL(child))
        XCTAssertEqual(manifest.object.nonTensorSHA256, try ObjectDigests.nonTensorSHA256(of: a.layout.objectURL(child)))
        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        func refused(_ bytes: Data, _ manifest: RemoteManifest, saying reason: String, line: UInt = #line) throws {
            XCTAssertEqual(try remote.client.send("PUT", remote.key(objectKey), body: .data(bytes)).status, 200, line: line)
            XCTAssertEqual(try remote.client.send("PUT", remote.key(RemoteStore.manifestKey(child)), body: .data(RemoteStore.encodeManifest(manifest))).status, 200, line: line)
            XCTAssertThrowsError(try b.pull("ft", remote, ancestors: false, progress: nil), line: line) { error in
                XCTAssertTrue("\(error)".hasPrefix("the object of entry \(child.prefix(12)) on remote team is corrupt: "), "\(error)", line: line)
                XCTAssertTrue("\(error)".contains(reason), "\(error)", line: line)
                XCTAssertTrue("\(error)".hasSuffix("; not imported"), "\(error)", line: line)
            }
            XCTAssertEqual(try b.list().count, 0, line: line)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: b.layout.tmp.path), [], line: line)
        }
        // 1. A tensor byte changed on the server: the content id hashed through the index refuses it,
        //    and for a manifest of an earlier bissl (no digest of the non-tensor bytes) the SHA-256.
        let index = try XCTUnwrap(original.withUnsafeBytes { try TensorIndex.decode($0, fileSize: Int64(original.count), fileName: "object.h5") })
        let tensor = try XCTUnwrap(index.tensors.max { $0.byteCount < $1.byteCount })
        var tensorByte = original
        tensorByte[Int(tensor.offset) + tensor.byteCount / 2] ^= 0xFF
        try refused(tensorByte, manifest, saying: "it holds content ")
        var older = manifest
        older.object.nonTensorSHA256 = nil
        try refused(tensorByte, older, saying: "holds bytes with SHA-256 ")
        // 2. A byte no reader looks at (the user block's zero padding after the tensor index)
        //    changed: the digest of the bytes outside the tensors refuses it.
        let indexEnd = try XCTUnwrap(original.withUnsafeBytes { TensorIndex.blockLength($0) })
        XCTAssertEqual(original[indexEnd], 0, "padding")
        var padding = original
        padding[indexEnd] = 1
        try refused(padding, manifest, saying: "holds bytes outside its tensors with SHA-256 ")
        // The intact object pulls under the manifest of an earlier bissl too (SHA-256, then the
        // content id from the tensors read).
        XCTAssertEqual(try remote.client.send("PUT", remote.key(objectKey), body: .data(original)).status, 200)
        XCTAssertEqual(try remote.client.send("PUT", remote.key(RemoteStore.manifestKey(child)), body: .data(RemoteStore.encodeManifest(older))).status, 200)
        let c = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("c")), create: true)
        XCTAssertEqual(try c.pull("ft", remote, ancestors: false, progress: nil).entries.map(\.transferred), [true])
        XCTAssertEqual(try Data(contentsOf: c.layout.objectURL(child)), original)

        // 3. A valid checkpoint of other content, with a manifest matching its bytes: the recomputed
        //    content id refuses it.
        let impostor = dir.appendingPathComponent("impostor.h5")
        try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 77), to: impostor)
        let (sha, size) = try FileSHA256.digest(of: impostor)
        XCTAssertNotNil(try remote.uploadObject(impostor, sha256: sha, size: size, progress: nil))
        var forged = manifest
        forged.object = .init(sha256: sha, size: size, nonTensorSHA256: try ObjectDigests.nonTensorSHA256(of: impostor))
        XCTAssertEqual(try remote.client.send("PUT", remote.key(RemoteStore.manifestKey(child)), body: .data(RemoteStore.encodeManifest(forged))).status, 200)
        XCTAssertThrowsError(try b.pull("ft", remote, ancestors: true, progress: nil)) { error in
            XCTAssertTrue("\(error)".contains("the object of entry \(child.prefix(12)) on remote team is corrupt: it holds content"), "\(error)")
        }
        // The intact ancestor came in (ancestors go first); the corrupt entry did not.
        XCTAssertEqual(try b.list().map(\.id), [base])
    }

    /// The health scan a pull does while it hashes (`ValueScan.Float32Pieces`: bytes given in pieces
    /// split anywhere, even inside a value) counts what the scan of the whole tensor counts, and a
    /// pulled entry gets the health warnings the pushing zoo computed.
    func testPullScansFloat32TensorsForHealthAsItHashes() throws {
        let values: [Float] = [0, 1, -0.0, .nan, 2, .infinity, -.infinity, 3, Float(bitPattern: 0x7FC0_0001), -.nan]
        let tensor = Tensor(float32: values, shape: [values.count])
        let whole = ValueScan(tensor)
        XCTAssertEqual([whole.nan, whole.inf], [3, 2])
        XCTAssertFalse(whole.allZero)
        XCTAssertTrue(ValueScan(Tensor(float32: [0, -0.0, 0], shape: [3])).allZero)
        tensor.data.withUnsafeBytes { raw in
            for i in 0...raw.count {
                for j in i...raw.count {
                    var pieces = ValueScan.Float32Pieces()
                    for piece in [raw[..<i], raw[i..<j], raw[j...]] { pieces.add(UnsafeRawBufferPointer(rebasing: piece)) }
                    let scan = pieces.scan
                    XCTAssertEqual([scan.nan, scan.inf], [whole.nan, whole.inf], "cut at \(i), \(j)")
                    XCTAssertEqual(scan.allZero, whole.allZero, "cut at \(i), \(j)")
                }
            }
        }

        // 3 M float32 (12 MB, 5 MiB ranges) with a NaN and an infinity, and an all-zero BatchNorm weight.
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        var checkpoint = ZooTestSupport.checkpoint(seed: 6, zeroBNWeight: true)
        var big = (0..<3_000_000).map { Float($0 % 997) * 0.001 }
        big[1_500_001] = .nan
        big[2_999_999] = .infinity
        checkpoint.components["backbone"]!["layer1.0.conv1.weight"] = Tensor(float32: big, shape: [big.count])
        let a = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("a")), create: true)
        let id = try a.add(checkpoint, name: "sick").id
        let health = try XCTUnwrap(a.record(id).summary.details?.health)
        XCTAssertEqual(health.count, 2, "\(health)")
        let remote = try server.store(try server.remote())
        remote.multipartThreshold = 5 << 20
        remote.partSize = 5 << 20
        _ = try a.push("sick", remote, ancestors: false, force: false, progress: nil)
        XCTAssertNotNil(try remote.manifest(id)?.object.nonTensorSHA256, "pulled in one pass, scanning as it hashes")
        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        _ = try b.pull("sick", remote, ancestors: false, progress: nil)
        XCTAssertEqual(try b.record(id).summary.details?.health, health)
    }

    /// A manifest declaring an object above `maxObjectSize` is refused before its download is
    /// planned (the plan holds one counter per 8 MiB range), even where the server claims that size.
    func testOversizedManifestIsRefusedBeforeItsDownloadIsPlanned() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, base, _) = try lineageZoo(dir)
        let remote = try server.store(try server.remote())
        _ = try a.push("base", remote, ancestors: false, force: false, progress: nil)
        var manifest = try XCTUnwrap(remote.manifest(base))
        manifest.object.size = Int64(1) << 62
        let target = dir.appendingPathComponent("object.h5")
        XCTAssertThrowsError(try remote.downloadObject(manifest, to: target, progress: nil)) { error in
            XCTAssertEqual("\(error)", "the object of entry \(base.prefix(12)) on remote team is \(Int64(1) << 62) bytes, more than the \(Int64(1) << 40) (1 TiB) a pull accepts; not imported")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: target.path), "nothing written")
    }

    /// A push finding a manifest an earlier bissl wrote (no `nonTensorSHA256`) adds the digest when
    /// this zoo's file is the manifest's object, so later pulls hash the object once; a manifest
    /// naming other bytes is left as it is.
    func testPushBackfillsNonTensorDigestIntoOlderManifests() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, base, _) = try lineageZoo(dir)
        let remote = try server.store(try server.remote())
        _ = try a.push("base", remote, ancestors: false, force: false, progress: nil)
        let current = try XCTUnwrap(remote.manifest(base))
        XCTAssertNotNil(current.object.nonTensorSHA256)
        var older = current
        older.object.nonTensorSHA256 = nil
        func put(_ m: RemoteManifest) throws {
            XCTAssertEqual(try remote.client.send("PUT", remote.key(RemoteStore.manifestKey(base)), body: .data(RemoteStore.encodeManifest(m))).status, 200)
            // The index copy as an earlier bissl's push would have filed it.
            XCTAssertEqual(try remote.client.send("PUT", remote.key(RemoteStore.indexKey(base.first!)),
                                                  body: .data(JSONEncoder.bissl().encode(IndexShard(version: 1, manifests: [base: m])))).status, 200)
        }
        try put(older)
        let again = try a.push("base", remote, ancestors: false, force: false, progress: nil)
        XCTAssertEqual(again.entries.map(\.transferred), [false])
        XCTAssertEqual(try remote.manifest(base), current, "only the digest was added")
        XCTAssertEqual(try remote.indexedManifests([base]).manifests, [current], "and its index copy updated")

        // A manifest naming other bytes (another zoo's file of the entry) keeps what it says.
        var other = older
        other.object.sha256 = String(repeating: "0", count: 64)
        try put(other)
        _ = try a.push("base", remote, ancestors: false, force: false, progress: nil)
        XCTAssertEqual(try remote.manifest(base), other)
    }

    /// The bytes outside the tensors (`ObjectDigests`) and the tensors' extents split an object
    /// exactly: aliases share an extent, empty tensors have none, histories are outside.
    func testNonTensorRangesAndTensorExtentsPartitionTheObject() throws {
        let dir = try ZooTestSupport.tempDir(self)
        var checkpoint = ZooTestSupport.checkpoint(seed: 6, metrics: ["top1": 0.5])
        checkpoint.provenance.metricHistory = ["loss": [2, 1, 0.5]]
        let shared = checkpoint.components["backbone"]!["conv1.weight"]!
        checkpoint.components["decoder"] = ["weight": shared, "empty": try Tensor(dtype: .float32, shape: [0], data: Data())]
        checkpoint.aliases = ["decoder.weight": "conv1.weight"]
        let url = try ZooTestSupport.writeH5(checkpoint, to: dir.appendingPathComponent("object.h5"))
        let bytes = try Data(contentsOf: url)
        let fd = open(url.path, O_RDONLY)
        defer { close(fd) }
        let index = try XCTUnwrap(TensorIndex.read(descriptor: fd, fileSize: Int64(bytes.count), fileName: "object.h5"))
        var owner = [Int](repeating: 0, count: bytes.count)   // 1 per tensor extent, 2 per non-tensor range
        for extent in Set(index.tensors.filter { $0.byteCount > 0 }.map { Int($0.offset)..<Int($0.offset) + $0.byteCount }) {
            for i in extent { owner[i] += 1 }
        }
        let ranges = ObjectDigests.nonTensorRanges(index, fileSize: Int64(bytes.count))
        for range in ranges { for i in range { owner[Int(i)] += 2 } }
        XCTAssertEqual(Set(owner), [1, 2], "every byte in exactly one tensor extent or one range")
        XCTAssertEqual(ranges.first?.lowerBound, 0, "the index opens the non-tensor bytes")
        var rest = Data()
        for range in ranges { rest += bytes[Int(range.lowerBound)..<Int(range.upperBound)] }
        let restFile = dir.appendingPathComponent("rest")
        try rest.write(to: restFile)
        XCTAssertEqual(try ObjectDigests.nonTensorSHA256(of: url), try FileSHA256.digest(of: restFile).sha256)
    }

    func testManifestIndexIsACacheTheListingGoverns() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, base, child) = try lineageZoo(dir)
        let remote = try server.store(try server.remote())
        _ = try a.push("ft", remote, ancestors: true, force: false, progress: nil)
        // The push filed both manifests in their shards: copies of what entries/ holds.
        for id in [base, child] {
            let shard = try XCTUnwrap(remote.get(RemoteStore.indexKey(id.first!))).data
            XCTAssertEqual(RemoteStore.decodeShard(shard, id.first!)[id], try remote.manifest(id))
        }
        let zoo = RemoteZoo(store: remote)
        let indexed = try zoo.list().entries
        XCTAssertEqual(Set(indexed.map(\.id)), [base, child])
        // Without an index (a remote an older bissl wrote) the listing is the same; gc files it again.
        for digit in Set([base.first!, child.first!]) { try remote.delete(RemoteStore.indexKey(digit)) }
        XCTAssertEqual(try zoo.list().entries, indexed)
        _ = try zoo.gc(grace: 3600)
        for id in [base, child] {
            let shard = try XCTUnwrap(remote.get(RemoteStore.indexKey(id.first!))).data
            XCTAssertNotNil(RemoteStore.decodeShard(shard, id.first!)[id])
        }
        // A damaged shard reads as empty; an index copy of an id entries/ does not hold is not listed.
        XCTAssertEqual(try remote.client.send("PUT", remote.key(RemoteStore.indexKey(base.first!)), body: .data(Data("{\"version\":1,".utf8))).status, 200)
        var ghost = try XCTUnwrap(remote.manifest(child))
        ghost.id = String(repeating: "e", count: 64)
        ghost.summary.id = ghost.id
        let ghostShard = try JSONEncoder.bissl().encode(IndexShard(version: 1, manifests: [ghost.id: ghost]))
        if child.first! != "e" {
            XCTAssertEqual(try remote.client.send("PUT", remote.key(RemoteStore.indexKey("e")), body: .data(ghostShard)).status, 200)
        }
        XCTAssertEqual(try zoo.list().entries, indexed)
    }

    private func scratch(_ zoo: Zoo) -> [String] { Self.names(zoo.layout.tmp) }

    private static func names(_ dir: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    }

    /// The ranges of one download save its record from several threads at once: each save writes
    /// a temporary of its own, so the record is always one whole snapshot and no temporary stays.
    func testRecordSavedFromManyThreadsAtOnceStaysWhole() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let url = dir.appendingPathComponent("record.json")
        let records = (0..<8).map { t in DownloadRecord(size: 1 << 30, rangeSize: 8 << 20, done: Array(repeating: Int64(t) * 1000, count: 128 - t * 9)) }
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8 * 50) { i in
            do { try TransferRecords.write(records[i % 8], url) } catch { failures.update { $0.append("\(error)") } }
        }
        XCTAssertEqual(failures.value, [])
        let saved = try XCTUnwrap(TransferRecords.read(DownloadRecord.self, url), String(decoding: (try? Data(contentsOf: url)) ?? Data(), as: UTF8.self))
        XCTAssertTrue(records.contains(saved))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["record.json"])
    }

    /// A pid that has ended (a finished child's), as a live transfer's looks from another pid namespace.
    private func endedPID() throws -> Int32 {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        return child.processIdentifier
    }

    /// Push records and pull folders are locked while their transfer runs (`TemporaryFileLock`), and
    /// a transfer takes over another's only when it is unlocked: a record whose pid looks ended but
    /// which a process holds locked (a live transfer in another pid namespace sharing the zoo) stays
    /// where and as it is, and a lock-free one of an ended pid is still resumed from.
    func testTransferRecordsAreLockedAndLockedOnesAreNotTakenOver() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, base, _) = try lineageZoo(dir)
        let remote = try server.store(try server.remote())
        remote.multipartThreshold = 1 << 10   // a one-part multipart upload: the push keeps a record
        let sha = try FileSHA256.digest(of: a.layout.objectURL(base)).sha256
        let target = "\(remote.config.endpoint!)|\(remote.bucket)|\(remote.key(RemoteStore.objectKey(sha256: sha)))"
        let pid = try endedPID()
        try FileManager.default.createDirectory(at: a.layout.tmp, withIntermediateDirectories: true)

        // A held push record of an ended-looking pid: not taken; this push keeps its own, locked.
        let held = a.layout.tmp.appendingPathComponent("\(sha).\(pid).\(RemoteStore.digest(target)).push")
        let heldLock = try TemporaryFileLock.createFile(held, for: held)
        let heldRecord = UploadRecord(target: target, uploadID: "held-elsewhere", size: 1, partSize: 1, parts: [])
        try TransferRecords.overwrite(heldRecord, held)
        let ownLocked = Locked<[Bool]>([])
        let tmpA = a.layout.tmp
        _ = try a.push("base", remote, ancestors: false, force: false, progress: { _, _, _ in
            let own = Self.names(tmpA).filter { $0.hasSuffix(".push") && !$0.contains(".\(pid).") }
            ownLocked.update { $0.append(own.count == 1 && TemporaryFileLock.isLocked(tmpA.appendingPathComponent(own[0]))) }
        })
        XCTAssertTrue(try remote.exists(RemoteStore.objectKey(sha256: sha)))
        XCTAssertFalse(ownLocked.value.isEmpty)
        XCTAssertTrue(ownLocked.value.allSatisfy { $0 }, "the push's own record is locked while it uploads: \(ownLocked.value)")
        XCTAssertEqual(TransferRecords.read(UploadRecord.self, held), heldRecord, "the held record is where it was, unchanged")
        XCTAssertEqual(scratch(a), [held.lastPathComponent])
        heldLock.release()

        // A held pull folder likewise; the pull downloads on its own and keeps its folder locked.
        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        try FileManager.default.createDirectory(at: b.layout.tmp, withIntermediateDirectories: true)
        let heldFolder = b.layout.tmp.appendingPathComponent("\(sha).\(pid).pull")
        let folderLock = try TemporaryFileLock.createFolder(heldFolder, for: heldFolder)
        let partial = DownloadRecord(size: 7, rangeSize: 7, done: [3])
        try TransferRecords.write(partial, heldFolder.appendingPathComponent("record.json"))
        try Data("abc".utf8).write(to: heldFolder.appendingPathComponent("object.h5"))
        let pullLocked = Locked<[Bool]>([])
        let tmpB = b.layout.tmp
        let pulled = try b.pull("base", remote, ancestors: false, progress: { _, _, _ in
            let own = Self.names(tmpB).filter { $0.hasSuffix(".pull") && !$0.contains(".\(pid).") }
            pullLocked.update { $0.append(own.count == 1 && TemporaryFileLock.folderIsUnlocked(tmpB.appendingPathComponent(own[0])) == false) }
        })
        XCTAssertEqual(pulled.entries.map(\.transferred), [true])
        XCTAssertFalse(pullLocked.value.isEmpty)
        XCTAssertTrue(pullLocked.value.allSatisfy { $0 }, "the pull's folder is locked while it downloads: \(pullLocked.value)")
        XCTAssertEqual(TransferRecords.read(DownloadRecord.self, heldFolder.appendingPathComponent("record.json")), partial)
        XCTAssertEqual(try Data(contentsOf: heldFolder.appendingPathComponent("object.h5")), Data("abc".utf8))
        XCTAssertEqual(scratch(b), [heldFolder.lastPathComponent])
        folderLock.release()

        // Unlocked, the ended pid's folder is taken over by the next pull of the object (and removed
        // with the pull's own once the object is in place).
        let c = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("c")), create: true)
        try FileManager.default.createDirectory(at: c.layout.tmp, withIntermediateDirectories: true)
        XCTAssertEqual(rename(heldFolder.path, c.layout.tmp.appendingPathComponent(heldFolder.lastPathComponent).path), 0)
        XCTAssertEqual(try c.pull("base", remote, ancestors: false, progress: nil).entries.map(\.transferred), [true])
        XCTAssertEqual(scratch(c), [])
        XCTAssertEqual(try c.resolve("base"), base)
    }

    func testServerKilledMidTransferResumesAndLeavesNoPartialEntry() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        // 4 M float32 = 16 MB: four parts of 5 MiB (the last one short), one at a time.
        let (a, base, _) = try lineageZoo(dir, extraFloats: 4_000_000)
        let config = try server.remote()
        let remote = try server.store(config)
        remote.multipartThreshold = 5 << 20
        remote.partSize = 5 << 20
        remote.connections = 1
        remote.client.attempts = 1
        let size = try a.record(base).summary.size
        let killAfterHalf: TransferProgress = { _, done, _ in if done > size / 2 { server.kill() } }
        XCTAssertThrowsError(try a.push("base", remote, ancestors: false, force: false, progress: killAfterHalf))
        try server.start()
        remote.client.attempts = 3
        XCTAssertFalse(try remote.exists(RemoteStore.manifestKey(base)), "no manifest: the entry is not on the remote")
        XCTAssertEqual(try RemoteZoo(store: remote).list().entries.count, 0)
        // The upload stays for a rerun; the zoo's record names it and the parts the server acknowledged.
        let pending = try remote.pendingUploads()
        XCTAssertEqual(pending.count, 1)
        let recordName = try XCTUnwrap(scratch(a).first { $0.hasSuffix(".push") }, "\(scratch(a))")
        let record = try XCTUnwrap(TransferRecords.read(UploadRecord.self, a.layout.tmp.appendingPathComponent(recordName)))
        XCTAssertEqual(record.uploadID, pending[0].uploadID)
        XCTAssertEqual(record.parts.map(\.number), [1], "killed during part 2 (past half of the object)")
        // A new push sends the three other parts only, completes that upload and lists the entry.
        let resumed = try a.push("base", remote, ancestors: false, force: false, progress: nil)
        XCTAssertEqual(resumed.entries.map(\.transferred), [true])
        XCTAssertEqual(resumed.bytes, size - (5 << 20))
        XCTAssertEqual(try remote.pendingUploads().count, 0)
        XCTAssertEqual(scratch(a), [])

        // The server dies during a pull: nothing is listed; what stays is the partial download.
        let b = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("b")), create: true)
        XCTAssertThrowsError(try b.pull("base", remote, ancestors: false, progress: killAfterHalf))
        XCTAssertEqual(try b.list().count, 0)
        XCTAssertEqual(scratch(b).count, 1)
        XCTAssertTrue(scratch(b)[0].hasSuffix(".pull"), "\(scratch(b))")
        try server.start()
        // The rerun asks only for the rest, and the result is the pushed file byte for byte.
        let pulled = try b.pull("base", remote, ancestors: false, progress: nil)
        XCTAssertEqual(pulled.entries.map(\.transferred), [true])
        XCTAssertLessThanOrEqual(pulled.bytes, size - (5 << 20), "at least the first range is not fetched again")
        XCTAssertGreaterThan(pulled.bytes, 0)
        XCTAssertEqual(try b.resolve("base"), base)
        XCTAssertEqual(try Data(contentsOf: b.layout.objectURL(base)), try Data(contentsOf: a.layout.objectURL(base)))
        XCTAssertEqual(scratch(b), [])

        // An upload the server no longer has (aborted by gc --remote) is started anew.
        let c = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("c")), create: true)
        let other = try c.add(ZooTestSupport.checkpoint(seed: 3, extraFloats: 4_000_000)).id
        let otherSize = try c.record(other).summary.size
        remote.client.attempts = 1
        XCTAssertThrowsError(try c.push(other, remote, ancestors: false, force: false, progress: { _, done, _ in
            if done > otherSize / 2 { server.kill() }
        }))
        try server.start()
        remote.client.attempts = 3
        XCTAssertEqual(try RemoteZoo(store: remote).gc(grace: 0).abortedUploads.count, 1)
        let restarted = try c.push(other, remote, ancestors: false, force: false, progress: nil)
        XCTAssertEqual(restarted.bytes, otherSize)
        XCTAssertEqual(try remote.pendingUploads().count, 0)
        XCTAssertEqual(scratch(c), [])
    }

    func testRemoteGCRemovesOnlyOldUnreferencedObjects() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, _, child) = try lineageZoo(dir)
        let remote = try server.store(try server.remote())
        _ = try a.push("ft", remote, ancestors: true, force: false, progress: nil)
        let orphan = dir.appendingPathComponent("orphan.h5")
        try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 5), to: orphan)
        let (sha, size) = try FileSHA256.digest(of: orphan)
        XCTAssertNotNil(try remote.uploadObject(orphan, sha256: sha, size: size, progress: nil))
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
