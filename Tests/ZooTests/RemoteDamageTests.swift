import Checkpoint
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// Damage on either side of a pull, through the `bissl` binary against a real S3 server
/// (`SeaweedServer`): refs and manifests on a remote holding garbage bytes (schemas/remote.md,
/// "Damaged refs and manifests"), and a pull of content a local `gc` had unlisted as damaged.
final class RemoteDamageTests: XCTestCase {
    private func run(_ args: [String]) throws -> BisslBinary.Result {
        try BisslBinary.run(args, environment: SeaweedServer.environment)
    }

    private func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    /// A zoo `dir/a` with `base` (name base), its child `ft` (name ft, tag best) and an unrelated
    /// `other` (name other), all pushed to a fresh remote `team`.
    private func pushedZoo(_ server: SeaweedServer, _ dir: URL) throws -> (a: Zoo, store: RemoteStore, config: RemoteConfig, base: String, ft: String, other: String) {
        let a = try Zoo.open(ZooLayout(root: dir.appendingPathComponent("a")), create: true)
        let base = try a.add(ZooTestSupport.checkpoint(seed: 1), name: "base").id
        let ft = try a.add(ZooTestSupport.checkpoint(seed: 2, stage: "finetune", method: "supervised",
                                                     parents: [.init(id: base, relation: "finetuned-from", note: "head re-initialised")]),
                           name: "ft", tags: ["best"]).id
        let other = try a.add(ZooTestSupport.checkpoint(seed: 3), name: "other").id
        let config = try server.remote()
        let store = try server.store(config)
        _ = try a.push("ft", store, ancestors: true, force: false, progress: nil)
        _ = try a.push("other", store, ancestors: true, force: false, progress: nil)
        return (a, store, config, base, ft, other)
    }

    /// A new zoo `dir/name` with the remote added.
    private func freshZoo(_ dir: URL, _ name: String, _ config: RemoteConfig) throws -> String {
        let path = dir.appendingPathComponent(name).path
        let added = try run(["remote", "add", config.name, config.url, "--endpoint", config.endpoint!, "--zoo", path])
        XCTAssertEqual(added.status, 0, added.stderr)
        return path
    }

    /// One damaged ref and one damaged manifest: the readers skip them with one warning line each
    /// naming the key, pulls of other entries work, reading them on their own fails naming them,
    /// `gc --remote` reports them and deletes them only with `--remove-damaged`, and a push from a
    /// zoo holding the entries repairs the remote.
    func testDamagedRefAndManifestBlockNothingElseAndGCRemovesThemOnRequest() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, store, config, base, ft, other) = try pushedZoo(server, dir)
        // Garbage in the tag `best` and in the manifest of `base`; without an index copy of that
        // manifest (as on a remote an earlier bissl wrote) the listing reads it.
        XCTAssertEqual(try store.client.send("PUT", store.key("refs/best"), body: .data(Data("\u{0}garbage\u{7F}".utf8))).status, 200)
        XCTAssertEqual(try store.client.send("PUT", store.key(RemoteStore.manifestKey(base)), body: .data(Data("not json".utf8))).status, 200)
        try store.delete(RemoteStore.indexKey(base.first!))
        let refURL = "\(store.display)/refs/best"
        let manifestURL = "\(store.display)/entries/\(base).json"
        let refWarning = "warning: skipped damaged ref \(refURL) (not {\"id\": <64 hex>, \"kind\": name|tag}); bissl gc --remote team --remove-damaged removes it"
        let manifestWarning = "warning: skipped damaged manifest \(manifestURL) (not a version-1 manifest of entry \(base.prefix(12))); bissl gc --remote team --remove-damaged removes it"
        let b = try freshZoo(dir, "b", config)

        // list and lineage: the rest, and one warning line per damaged key.
        for json in [false, true] {
            let listed = try run(["list", "--remote", "team", "--zoo", b] + (json ? ["--json"] : []))
            XCTAssertEqual(listed.status, 0, listed.stderr)
            XCTAssertEqual(lines(listed.stderr), [manifestWarning, refWarning])
            // Rows (not the PARENT column, which still names base).
            let rows = json ? try (JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]] ?? []).compactMap { ($0["id"] as? String).map { String($0.prefix(12)) } }
                            : lines(listed.stdout).dropFirst().map { String($0.prefix(12)) }
            XCTAssertEqual(Set(rows), [String(ft.prefix(12)), String(other.prefix(12))], listed.stdout)
        }
        let lineage = try run(["lineage", "ft", "--remote", "team", "--zoo", b])
        XCTAssertEqual(lineage.status, 0, lineage.stderr)
        XCTAssertEqual(lines(lineage.stderr), [manifestWarning, refWarning])
        XCTAssertTrue(lineage.stdout.contains(String(base.prefix(12))), "the parent stays an edge end: \(lineage.stdout)")

        // Pulls of the other entries work; the damaged tag is skipped and named.
        let pulledOther = try run(["pull", "other", "--zoo", b])
        XCTAssertEqual(pulledOther.status, 0, pulledOther.stderr)
        XCTAssertEqual(lines(pulledOther.stderr), [refWarning])
        // An ancestor this zoo lacks cannot be pulled: the pull fails naming it and its key, before
        // anything is downloaded (pull promises the ancestors); --no-ancestors pulls the entry alone.
        let pulledWithAncestors = try run(["pull", "ft", "--zoo", b])
        XCTAssertEqual(pulledWithAncestors.status, 1, pulledWithAncestors.stderr)
        XCTAssertEqual(lines(pulledWithAncestors.stderr), [
            "error: ancestor \(base.prefix(12)) of ft cannot be pulled: manifest \(manifestURL) is damaged (not a version-1 manifest of entry \(base.prefix(12))); "
                + "nothing pulled. bissl gc --remote team --remove-damaged removes it (pulls then skip the ancestor), or bissl pull ft --no-ancestors pulls the entry alone",
        ])
        XCTAssertEqual(pulledWithAncestors.stdout, "")
        XCTAssertNotEqual(try run(["show", "ft", "--zoo", b]).status, 0, "nothing of a failed pull is in the zoo")
        let pulledFT = try run(["pull", "ft", "--no-ancestors", "--zoo", b, "--json"])
        XCTAssertEqual(pulledFT.status, 0, pulledFT.stderr)
        XCTAssertEqual(lines(pulledFT.stderr), [refWarning])
        let report = try JSONDecoder().decode(TransferReport.self, from: Data(pulledFT.stdout.utf8))
        XCTAssertEqual(report.entries.map(\.id), [ft])
        XCTAssertEqual(report.damaged?.map(\.key), ["refs/best"])
        // A zoo that holds the ancestor needs nothing of its manifest: the pull warns and succeeds.
        let aPath = dir.appendingPathComponent("a").path
        XCTAssertEqual(try run(["remote", "add", config.name, config.url, "--endpoint", config.endpoint!, "--zoo", aPath]).status, 0)
        let pulledHeld = try run(["pull", "ft", "--zoo", aPath])
        XCTAssertEqual(pulledHeld.status, 0, pulledHeld.stderr)
        XCTAssertEqual(lines(pulledHeld.stderr), [manifestWarning, refWarning])
        XCTAssertEqual(try run(["show", "ft", "--zoo", b]).status, 0)
        XCTAssertNotEqual(try run(["show", "best", "--zoo", b]).status, 0, "a damaged ref's label is not applied")

        // Pulling the damaged ones fails with one line naming the key.
        let pulledBest = try run(["pull", "best", "--zoo", b])
        XCTAssertEqual(pulledBest.status, 1, pulledBest.stderr)
        XCTAssertEqual(lines(pulledBest.stderr), ["error: ref \(refURL) is damaged (not {\"id\": <64 hex>, \"kind\": name|tag}); bissl gc --remote team --remove-damaged removes it"])
        let pulledBase = try run(["pull", base, "--zoo", b])
        XCTAssertEqual(pulledBase.status, 1, pulledBase.stderr)
        XCTAssertEqual(lines(pulledBase.stderr), ["error: manifest \(manifestURL) is damaged (not a version-1 manifest of entry \(base.prefix(12))); bissl gc --remote team --remove-damaged removes it"])

        // gc --remote reports them and, while it cannot tell what the damaged manifest references,
        // deletes no unreferenced object (base's object is one of those it cannot rule out).
        let baseObject = RemoteStore.objectKey(sha256: try FileSHA256.digest(of: a.layout.objectURL(base)).sha256)
        let gc = try run(["gc", "--remote", "team", "--grace", "0", "--zoo", b])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertEqual(Array(lines(gc.stdout).prefix(3)), [
            "warning: manifest \(manifestURL) is damaged (not a version-1 manifest of entry \(base.prefix(12))); bissl gc --remote team --remove-damaged removes it",
            "warning: ref \(refURL) is damaged (not {\"id\": <64 hex>, \"kind\": name|tag}); bissl gc --remote team --remove-damaged removes it",
            "warning: kept 1 unreferenced object older than 0: a damaged manifest without a copy in the index may reference it",
        ])
        XCTAssertTrue(try store.exists(baseObject))
        let dry = try run(["gc", "--remote", "team", "--grace", "0", "--remove-damaged", "--dry-run", "--zoo", b])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("would remove damaged ref \(refURL) ("), dry.stdout)
        XCTAssertTrue(try store.exists("refs/best") && store.exists(RemoteStore.manifestKey(base)))
        let removed = try run(["gc", "--remote", "team", "--grace", "0", "--remove-damaged", "--zoo", b, "--json"])
        XCTAssertEqual(removed.status, 0, removed.stderr)
        let gcReport = try JSONDecoder().decode(RemoteGCReport.self, from: Data(removed.stdout.utf8))
        XCTAssertEqual(gcReport.removedDamaged, ["entries/\(base).json", "refs/best"])
        XCTAssertEqual(gcReport.removedObjects, [])
        XCTAssertFalse(try store.exists("refs/best") || store.exists(RemoteStore.manifestKey(base)))
        let clean = try run(["list", "--remote", "team", "--zoo", b])
        XCTAssertEqual(clean.stderr, "")

        // A zoo holding the entries pushes them again: the remote is whole, and pulls bring all.
        _ = try a.push("ft", store, ancestors: true, force: false, progress: nil)
        let c = try freshZoo(dir, "c", config)
        let pulledAll = try run(["pull", "ft", "--zoo", c])
        XCTAssertEqual(pulledAll.status, 0, pulledAll.stderr)
        XCTAssertEqual(pulledAll.stderr, "")
        for label in ["base", "ft", "best"] { XCTAssertEqual(try run(["show", label, "--zoo", c]).status, 0, label) }
        XCTAssertEqual(try RemoteZoo(store: store).gc(grace: 0).damaged, [])
    }

    /// Keys XML cannot carry as they are (ESC) or that form-decoding would alter (`+`, a space):
    /// listings ask for URL-encoded keys, so `gc --remote --remove-damaged` deletes the key it names
    /// (it used to delete a key with U+FFFD in place of ESC, which does not exist, and report success).
    /// An oversized ref is damaged without being read past `RemoteStore.maxRefBytes`.
    func testGCRemovesRefKeysHoldingControlCharactersAndPlusSigns() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (_, store, config, _, _, other) = try pushedZoo(server, dir)
        let b = try freshZoo(dir, "b", config)
        let body = Data("{\"id\":\"\(other)\",\"kind\":\"tag\"}\n".utf8)
        let keys = ["refs/bad\u{1B}name", "refs/a+b c"]
        for key in keys { XCTAssertEqual(try store.client.send("PUT", store.key(key), body: .data(body)).status, 200, key) }
        XCTAssertEqual(Set(try store.list("refs/").map(\.key)).intersection(keys), Set(keys), "the listing names the keys as they are")
        // A ref of a valid label longer than any ref (a well-formed body padded with JSON white
        // space): read no further than `maxRefBytes`, and damaged for its size.
        let huge = body + Data(repeating: 0x20, count: RemoteStore.maxRefBytes)
        XCTAssertEqual(try store.client.send("PUT", store.key("refs/huge"), body: .data(huge)).status, 200)
        let listed = try run(["list", "--remote", "team", "--zoo", b])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertEqual(lines(listed.stderr).count, 3, listed.stderr)
        XCTAssertTrue(lines(listed.stderr).contains("warning: skipped damaged ref \(store.display)/refs/huge (more than 4096 bytes, more than any ref); bissl gc --remote team --remove-damaged removes it"), listed.stderr)
        XCTAssertTrue(listed.stderr.contains("\(store.display)/refs/bad\\u{1B}name ("), listed.stderr)
        XCTAssertTrue(listed.stderr.contains("\(store.display)/refs/a+b c ("), listed.stderr)
        let removed = try run(["gc", "--remote", "team", "--grace", "0", "--remove-damaged", "--zoo", b, "--json"])
        XCTAssertEqual(removed.status, 0, removed.stderr)
        let report = try JSONDecoder().decode(RemoteGCReport.self, from: Data(removed.stdout.utf8))
        XCTAssertEqual(report.removedDamaged, (keys + ["refs/huge"]).sorted())
        for key in keys + ["refs/huge"] { XCTAssertFalse(try store.exists(key), key) }
        let clean = try run(["list", "--remote", "team", "--zoo", b])
        XCTAssertEqual(clean.status, 0, clean.stderr)
        XCTAssertEqual(clean.stderr, "")
    }

    /// What the readers of a remote used to pass over in silence: a key under `refs/` that is no
    /// valid label (one warning line naming it, in every command that lists the labels), an
    /// ancestor whose manifest is damaged (`lineage --remote` says so, naming it, instead of
    /// "not in zoo"), and an index shard holding garbage (`gc --remote` reports it and deletes it only
    /// with `--remove-damaged`); and `gc --remote --grace 0`'s summary, which said "kept 0 younger than 0".
    func testInvalidRefKeyDamagedAncestorAndGarbageIndexShardAreNamed() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (_, store, config, base, ft, other) = try pushedZoo(server, dir)
        let b = try freshZoo(dir, "b", config)
        let gcBefore = try run(["gc", "--remote", "team", "--grace", "0", "--zoo", b])
        XCTAssertEqual(gcBefore.status, 0, gcBefore.stderr)
        XCTAssertEqual(lines(gcBefore.stdout), ["removed 0 objects (0 B), aborted 0 uploads"])

        // A ref key another tool wrote, with a well-formed body: no label any command could name.
        let body = Data("{\"id\":\"\(other)\",\"kind\":\"tag\"}\n".utf8)
        XCTAssertEqual(try store.client.send("PUT", store.key("refs/-bad"), body: .data(body)).status, 200)
        let refWarning = "warning: skipped damaged ref \(store.display)/refs/-bad (not a valid label: labels are 1-100 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit, not 6 or more hex digits alone); bissl gc --remote team --remove-damaged removes it"
        let listed = try run(["list", "--remote", "team", "--zoo", b])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertEqual(lines(listed.stderr), [refWarning])
        let pulled = try run(["pull", "other", "--zoo", b])
        XCTAssertEqual(pulled.status, 0, pulled.stderr)
        XCTAssertEqual(lines(pulled.stderr), [refWarning])

        // The damaged ancestor (no index copy, so the listing reads the manifest).
        XCTAssertEqual(try store.client.send("PUT", store.key(RemoteStore.manifestKey(base)), body: .data(Data("not json".utf8))).status, 200)
        try store.delete(RemoteStore.indexKey(base.first!))
        let manifestURL = "\(store.display)/entries/\(base).json"
        let lineage = try run(["lineage", "ft", "--remote", "team", "--zoo", b])
        XCTAssertEqual(lineage.status, 0, lineage.stderr)
        XCTAssertEqual(lines(lineage.stderr).count, 2, lineage.stderr)
        let baseLine = try XCTUnwrap(lines(lineage.stdout).first { $0.contains(String(base.prefix(12))) }, lineage.stdout)
        XCTAssertTrue(baseLine.contains("\(base.prefix(12))  (damaged manifest \(manifestURL))"), baseLine)
        XCTAssertFalse(lineage.stdout.contains("not in zoo"), lineage.stdout)
        XCTAssertTrue(lineage.stdout.hasPrefix(String(ft.prefix(12))), lineage.stdout)

        // Garbage in the index shard of a digit no entry starts with, and in one an entry's does.
        let digits = Set([base, ft, other].map { $0.first! })
        let unused = try XCTUnwrap(RemoteStore.shardDigits.first { !digits.contains($0) })
        let used = other.first!
        for digit in [unused, used] {
            XCTAssertEqual(try store.client.send("PUT", store.key(RemoteStore.indexKey(digit)), body: .data(Data("\u{0}garbage".utf8))).status, 200)
        }
        let shardWarnings = [unused, used].sorted().map { "warning: index \(store.display)/index/\($0).json is damaged (not a manifest index shard {\"version\": 1, \"manifests\": {...}}); bissl gc --remote team --remove-damaged removes it" }
        let gc = try run(["gc", "--remote", "team", "--grace", "0", "--zoo", b])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertEqual(Array(lines(gc.stdout).prefix(4)), [
            "warning: manifest \(manifestURL) is damaged (not a version-1 manifest of entry \(base.prefix(12))); bissl gc --remote team --remove-damaged removes it",
            "warning: ref \(store.display)/refs/-bad is damaged (not a valid label: labels are 1-100 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit, not 6 or more hex digits alone); bissl gc --remote team --remove-damaged removes it",
        ] + shardWarnings, gc.stdout)
        XCTAssertEqual(lines(gc.stdout).last, "removed 0 objects (0 B), aborted 0 uploads", gc.stdout)
        // gc's index update leaves a damaged shard as it is: only --remove-damaged deletes it.
        for digit in [unused, used] { XCTAssertTrue(try store.exists(RemoteStore.indexKey(digit))) }
        let removed = try run(["gc", "--remote", "team", "--grace", "0", "--remove-damaged", "--zoo", b, "--json"])
        XCTAssertEqual(removed.status, 0, removed.stderr)
        let report = try JSONDecoder().decode(RemoteGCReport.self, from: Data(removed.stdout.utf8))
        XCTAssertEqual(report.removedDamaged, ["entries/\(base).json", "refs/-bad"] + [unused, used].sorted().map { "index/\($0).json" })
        XCTAssertFalse(try store.exists(RemoteStore.indexKey(unused)) || store.exists("refs/-bad"))
        // The next gc files the manifests in a new shard; the listing is clean again.
        let again = try run(["gc", "--remote", "team", "--grace", "0", "--zoo", b])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(try store.exists(RemoteStore.indexKey(used)))
        XCTAssertEqual(try run(["list", "--remote", "team", "--zoo", b]).stderr, "")
    }

    /// The object of a damaged manifest with an intact copy in the index is known: `gc --remote`
    /// keeps it and still deletes objects nothing references.
    func testGCKnowsTheObjectOfADamagedManifestFromItsIndexCopy() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (a, store, _, base, _, _) = try pushedZoo(server, dir)
        XCTAssertEqual(try store.client.send("PUT", store.key(RemoteStore.manifestKey(base)), body: .data(Data("{}".utf8))).status, 200)
        let orphan = dir.appendingPathComponent("orphan.h5")
        try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 5), to: orphan)
        let (sha, size) = try FileSHA256.digest(of: orphan)
        XCTAssertNotNil(try store.uploadObject(orphan, sha256: sha, size: size, progress: nil))
        let report = try RemoteZoo(store: store).gc(grace: 0)
        XCTAssertEqual(report.damaged.map(\.key), ["entries/\(base).json"])
        XCTAssertEqual(report.removedObjects, [RemoteStore.objectKey(sha256: sha)])
        XCTAssertEqual(report.keptForDamaged, 0)
        XCTAssertTrue(try store.exists(RemoteStore.objectKey(sha256: try FileSHA256.digest(of: a.layout.objectURL(base)).sha256)))
        XCTAssertTrue(try store.exists(RemoteStore.manifestKey(base)), "reported, not deleted")
    }

    /// Pulling content that this zoo's `gc` had unlisted as damaged gives back its local labels,
    /// and says so with the line `bissl import` prints.
    func testPullOfContentGCUnlistedAsDamagedSaysWhichLabelsCameBack() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let (_, _, config, _, _, other) = try pushedZoo(server, dir)
        let b = try freshZoo(dir, "b", config)
        XCTAssertEqual(try run(["pull", "other", "--zoo", b]).status, 0)
        XCTAssertEqual(try run(["tag", "other", "mine", "--zoo", b]).status, 0)
        unlink(ZooLayout(root: URL(fileURLWithPath: b)).objectURL(other).path)
        let gc = try run(["gc", "--zoo", b])
        XCTAssertTrue(gc.stdout.contains("unlisted damaged entry \(other.prefix(12))"), gc.stdout)

        let pulled = try run(["pull", "other", "--zoo", b])
        XCTAssertEqual(pulled.status, 0, pulled.stderr)
        let out = lines(pulled.stdout)
        XCTAssertTrue(out.first?.hasPrefix("pulled \(other.prefix(12)) (other)  ") ?? false, pulled.stdout)
        XCTAssertEqual(out.dropFirst().first, "  restored mine: the labels this content had before bissl gc unlisted it as damaged", pulled.stdout)
        XCTAssertEqual(try run(["show", "mine", "--zoo", b]).status, 0)

        // Again, with the local tag now held by another entry: reported as not restored.
        unlink(ZooLayout(root: URL(fileURLWithPath: b)).objectURL(other).path)
        XCTAssertEqual(try run(["gc", "--zoo", b]).status, 0)
        let c = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 9), to: dir.appendingPathComponent("c.h5"))
        XCTAssertEqual(try run(["import", c.path, "--tag", "mine", "--zoo", b]).status, 0)
        let again = try run(["pull", "other", "--zoo", b, "--json"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let report = try JSONDecoder().decode(TransferReport.self, from: Data(again.stdout.utf8))
        XCTAssertEqual(report.entries.map(\.labelsNotRestored), [["mine"]])
        XCTAssertEqual(report.entries.map(\.labelsRestored), [nil])
    }
}
