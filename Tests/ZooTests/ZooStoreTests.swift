import Checkpoint
import Foundation
import GRDB
import XCTest
@testable import Zoo
import TestSupport

/// Object store, catalog, labels and REF resolution through the library API.
final class ZooStoreTests: XCTestCase {
    private func makeZoo() throws -> (Zoo, ZooLayout) {
        let layout = ZooLayout(root: try ZooTestSupport.tempDir(self).appendingPathComponent("zoo"))
        let zoo = try Zoo.open(layout, create: true)
        addTeardownBlock { try? zoo.close() }
        return (zoo, layout)
    }

    func testImportWritesContentAddressedObjectAndListsIt() throws {
        let (zoo, layout) = try makeZoo()
        let checkpoint = ZooTestSupport.checkpoint(seed: 1, metrics: ["top1": 0.75, "loss": 1.5],
                                                   datasets: [.init(role: "pretext", uri: "data/imagenet", fingerprint: ZooTestSupport.fingerprint),
                                                              .init(role: "downstream-train", uri: "data/cifar10", fingerprint: ZooTestSupport.fingerprint)])
        let result = try zoo.add(checkpoint, name: "first", tags: ["b", "a"])
        XCTAssertTrue(result.added)
        XCTAssertEqual(result.id, ContentID.compute(checkpoint))
        let object = layout.root.appendingPathComponent("objects/\(result.id.prefix(2))/\(result.id.dropFirst(2)).h5")
        XCTAssertTrue(FileManager.default.fileExists(atPath: object.path))
        XCTAssertEqual(try CheckpointFile.storedContentID(object), result.id)
        XCTAssertEqual(try CheckpointFile.read(object, verifyContentID: true), checkpoint)
        XCTAssertEqual(try String(contentsOf: layout.root.appendingPathComponent("refs/names/first"), encoding: .utf8), result.id + "\n")
        XCTAssertEqual(try String(contentsOf: layout.root.appendingPathComponent("refs/tags/a"), encoding: .utf8), result.id + "\n")

        let listed = try zoo.list()
        XCTAssertEqual(listed.count, 1)
        let r = listed[0]
        XCTAssertEqual(r.name, "first")
        XCTAssertEqual(r.tags, ["a", "b"])
        XCTAssertEqual(r.summary.stage, "imported")
        XCTAssertEqual(r.summary.headlineMetric, "top1")  // preferred over loss
        XCTAssertEqual(r.summary.headlineValue, 0.75)
        XCTAssertEqual(r.summary.dataset, "data/cifar10")  // the downstream dataset, not the pretext one
        XCTAssertEqual(r.summary.tensorCount, 8)
        XCTAssertEqual(r.summary.components, ["backbone", "classifier"])
        XCTAssertEqual(r.summary.created, "2026-11-29T10:00:00Z")
        XCTAssertEqual(r.summary.size, (try FileManager.default.attributesOfItem(atPath: object.path)[.size] as! NSNumber).int64Value)
        XCTAssertEqual(r.summary.metrics, ["top1": 0.75, "loss": 1.5])
    }

    func testIdenticalContentAgainChangesNothing() throws {
        let (zoo, layout) = try makeZoo()
        let a = ZooTestSupport.checkpoint(seed: 2)
        let first = try zoo.add(a, name: "one")
        let before = try ZooTestSupport.snapshot(layout.root)
        // Same tensors, different provenance: same content id, so the same entry.
        var b = a
        b.provenance.commandLine = ["something", "else"]
        let again = try zoo.add(b)
        XCTAssertFalse(again.added)
        XCTAssertEqual(again.id, first.id)
        XCTAssertEqual(again.name, "one")
        XCTAssertEqual(again.labelsAdded, [])
        XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before)
        // A second name is refused (labels on re-import follow the rules of tag: ZooRobustnessTests).
        XCTAssertThrowsError(try zoo.add(b, name: "two", tags: ["t"])) { XCTAssertTrue("\($0)".contains("already named 'one'"), "\($0)") }
        XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before)
        XCTAssertEqual(try zoo.list().count, 1)
    }

    func testLabelsAreUniqueAndValidated() throws {
        let (zoo, _) = try makeZoo()
        let a = try zoo.add(ZooTestSupport.checkpoint(seed: 3), name: "alpha")
        XCTAssertThrowsError(try zoo.add(ZooTestSupport.checkpoint(seed: 4), name: "alpha")) { error in
            XCTAssertTrue("\(error)".contains("label 'alpha' is already the name of entry \(a.id.prefix(12))"), "\(error)")
        }
        XCTAssertEqual(try zoo.list().count, 1, "a refused import adds nothing")
        for bad in ["", "-x", "has space", "a/b", "abcdef", "0123456789", String(repeating: "x", count: 101)] {
            XCTAssertThrowsError(try LabelRules.validate(bad), bad)
        }
        for good in ["abcde", "best-top1", "r50_v1.2", "A+B", "abcdefg"] {
            XCTAssertNoThrow(try LabelRules.validate(good), good)
        }
        XCTAssertThrowsError(try zoo.add(ZooTestSupport.checkpoint(seed: 5), name: "x", tags: ["x"]))
    }

    func testTagUntag() throws {
        let (zoo, layout) = try makeZoo()
        let a = try zoo.add(ZooTestSupport.checkpoint(seed: 6), name: "a")
        let b = try zoo.add(ZooTestSupport.checkpoint(seed: 7))
        XCTAssertEqual(try zoo.tag("a", "best").added, true)
        XCTAssertEqual(try zoo.tag(a.id, "best").added, false)
        XCTAssertThrowsError(try zoo.tag(b.id, "best")) { XCTAssertTrue("\($0)".contains("already the tag of entry \(a.id.prefix(12))")) }
        XCTAssertEqual(try zoo.resolve("best"), a.id)
        XCTAssertEqual(try zoo.list(ListFilter(tag: "be*")).map(\.id), [a.id])
        XCTAssertEqual(try zoo.untag("best").id, a.id)
        XCTAssertFalse(FileManager.default.fileExists(atPath: layout.refURL("best", kind: .tag).path))
        XCTAssertThrowsError(try zoo.resolve("best"))
        XCTAssertThrowsError(try zoo.untag("best")) { XCTAssertTrue("\($0)".contains("no name or tag 'best'")) }
        XCTAssertEqual(try zoo.tag(b.id, "best").id, b.id, "a freed tag can be reused")
    }

    func testResolveFullPrefixNameTagAndAmbiguity() throws {
        let (zoo, _) = try makeZoo()
        let a = try zoo.add(ZooTestSupport.checkpoint(seed: 8), name: "named", tags: ["tagged"])
        XCTAssertEqual(try zoo.resolve(a.id), a.id)
        XCTAssertEqual(try zoo.resolve(a.id.uppercased()), a.id)
        XCTAssertEqual(try zoo.resolve(String(a.id.prefix(6))), a.id)
        XCTAssertEqual(try zoo.resolve("named"), a.id)
        XCTAssertEqual(try zoo.resolve("tagged"), a.id)
        XCTAssertThrowsError(try zoo.resolve(String(a.id.prefix(5)))) { XCTAssertTrue("\($0)".contains("at least 6 hex digits"), "\($0)") }
        XCTAssertThrowsError(try zoo.resolve("nothing")) { XCTAssertTrue("\($0)".contains("no entry, name or tag 'nothing'"), "\($0)") }

        // Two ids sharing 8 hex digits cannot be made on purpose with SHA-256: insert catalog rows
        // for them directly (the catalog is what resolution reads).
        let p1 = "abcdef01" + String(repeating: "1", count: 56), p2 = "abcdef01" + String(repeating: "2", count: 56)
        try zoo.catalog.write { db in
            for id in [p1, p2] {
                try Catalog.insert(EntrySummary(id: id, checkpoint: ZooTestSupport.checkpoint(seed: 9), size: 1, modified: Date()), db)
            }
            try Catalog.addLabel("second", kind: .name, id: p2, db)
        }
        XCTAssertThrowsError(try zoo.resolve("abcdef01")) { error in
            guard case ZooError.ambiguous(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("2 entries start with it"), message)
            XCTAssertTrue(message.contains(String(p1.prefix(16))) && message.contains(String(p2.prefix(16)) + " (second)"), message)
        }
        XCTAssertEqual(try zoo.resolve("abcdef011"), p1)
    }

    func testListFilters() throws {
        let (zoo, _) = try makeZoo()
        let pre = try zoo.add(ZooTestSupport.checkpoint(seed: 10, stage: "pretext", method: "simclr", endedAt: "2026-01-01T00:00:00Z"))
        let fin = try zoo.add(ZooTestSupport.checkpoint(
            seed: 11, stage: "finetune", method: "supervised", parents: [.init(id: pre.id, relation: "finetuned-from")],
            metrics: ["top1": 0.5], datasets: [.init(role: "downstream-train", uri: "/data/flowers102", fingerprint: ZooTestSupport.fingerprint)],
            endedAt: "2026-02-01T00:00:00Z"))
        XCTAssertEqual(try zoo.list().map(\.id), [fin.id, pre.id], "newest first")
        XCTAssertEqual(try zoo.list(ListFilter(stage: "pretext")).map(\.id), [pre.id])
        XCTAssertEqual(try zoo.list(ListFilter(method: "supervised")).map(\.id), [fin.id])
        XCTAssertEqual(try zoo.list(ListFilter(dataset: "flowers")).map(\.id), [fin.id])
        XCTAssertEqual(try zoo.list(ListFilter(stage: "finetune", dataset: "cifar")).map(\.id), [])
        XCTAssertEqual(try zoo.list(ListFilter(stage: "finetune"))[0].summary.parents.map(\.id), [pre.id])
    }

    /// `visitListing` (the byte rows of `bissl list`) gives, row for row and filter for filter, what the
    /// records of `list` say: order, name, first parent and parent count, NaN metric, dataset.
    func testListingRowsAgreeWithRecords() throws {
        let (zoo, _) = try makeZoo()
        let a = try zoo.add(ZooTestSupport.checkpoint(seed: 20, stage: "pretext", method: "simclr", endedAt: "2026-01-01T00:00:00Z"), name: "a").id
        let b = try zoo.add(ZooTestSupport.checkpoint(seed: 21, stage: "pretext", method: "byol", metrics: ["loss": .nan],
                                                      endedAt: "2026-01-02T00:00:00Z")).id
        _ = try zoo.add(ZooTestSupport.checkpoint(
            seed: 22, stage: "finetune", parents: [.init(id: b, relation: "finetuned-from"), .init(id: a, relation: "finetuned-from")],
            metrics: ["top1": 0.5], datasets: [.init(role: "downstream-train", uri: "/data/flowers102#split=/s/train.txt", fingerprint: ZooTestSupport.fingerprint)],
            endedAt: "2026-02-01T00:00:00Z"), name: "ft", tags: ["best"])
        struct Fields: Equatable {
            var id, stage, created: String
            var name, method, arch, parent, dataset, metric: String?
            var parents: Int
            var value: Double?
            var carried: Bool
            var size: Int64
            init(_ r: ListingRow) {
                func s(_ b: UnsafeRawBufferPointer?) -> String? { b.map { String(decoding: $0, as: UTF8.self) } }
                id = s(r.id)!; stage = s(r.stage)!; created = s(r.created)!
                name = s(r.name); method = s(r.method); arch = s(r.arch); parent = s(r.firstParent); dataset = s(r.dataset)
                metric = s(r.headlineMetric); parents = r.parentCount; value = r.headlineValue; carried = r.carried; size = r.size
            }
        }
        for filter in [ListFilter(), ListFilter(stage: "pretext"), ListFilter(tag: "be*"), ListFilter(dataset: "flowers"), ListFilter(method: "none")] {
            var rows: [Fields] = []
            try zoo.visitListing(filter) { rows.append(Fields($0)) }
            let records = try zoo.list(filter, withProvenance: false)
            XCTAssertEqual(rows, records.map { $0.withListingRow(Fields.init) }, "\(filter)")
            XCTAssertEqual(rows.count, records.count)
        }
        var all: [Fields] = []
        try zoo.visitListing { all.append(Fields($0)) }
        XCTAssertEqual(all.map(\.name), ["ft", nil, "a"])
        XCTAssertEqual(all.map(\.parents), [2, 0, 0])
        XCTAssertEqual(all[0].parent, b, "the first parent in provenance order")
        XCTAssertEqual(all[1].metric, "loss")
        XCTAssertNil(all[1].value, "NaN")
    }

    /// A catalog of schema version 1 is migrated when opened: its rows have no details and no
    /// recorded file facts, so `show` reads the object and reads hash it, until `verify` fills both;
    /// `list` reads names and parents from the rows (migration 4).
    func testVersionOneCatalogIsMigratedAndVerifyFillsDetailsAndFacts() throws {
        let root = try ZooTestSupport.tempDir(self).appendingPathComponent("zoo")
        let layout = ZooLayout(root: root)
        var zoo = try Zoo.open(layout, create: true)
        let parent = try zoo.add(ZooTestSupport.checkpoint(seed: 14), name: "fourteen").id
        let id = try zoo.add(ZooTestSupport.checkpoint(seed: 13, parents: [.init(id: parent, relation: "finetuned-from")]), name: "thirteen").id
        try zoo.close()
        let db = try DatabaseQueue(path: layout.catalog.path)
        try db.write {
            try $0.execute(sql: "DROP INDEX entries_listing")   // migrations 5, 4 and 3
            for column in ["carried", "name", "first_parent", "parent_count"] { try $0.execute(sql: "ALTER TABLE entries DROP COLUMN \(column)") }
            try $0.execute(sql: "CREATE INDEX entries_created ON entries(created)")
            try $0.execute(sql: "DROP TABLE verified")   // migration 2
            try $0.execute(sql: "ALTER TABLE entries DROP COLUMN details")
            try $0.execute(sql: "PRAGMA user_version = 1")
        }
        try db.close()
        zoo = try Zoo.open(layout)
        defer { try? zoo.close() }
        // Migration 4 copied each entry's name, first parent and parent count into its row.
        var listed: [String: (name: String?, parent: String?, count: Int)] = [:]
        try zoo.visitListing { row in
            func text(_ b: UnsafeRawBufferPointer?) -> String? { b.map { String(decoding: $0, as: UTF8.self) } }
            listed[text(row.id)!] = (text(row.name), text(row.firstParent), row.parentCount)
        }
        XCTAssertEqual(listed[id]?.name, "thirteen")
        XCTAssertEqual(listed[id]?.parent, parent)
        XCTAssertEqual(listed[id]?.count, 1)
        XCTAssertEqual(listed[parent]?.name, "fourteen")
        XCTAssertEqual(listed[parent]?.count, 0)
        XCTAssertNil(try zoo.record(id).summary.details)
        XCTAssertNotNil(try zoo.load(id, rehash: false).hashed, "no recorded facts: hashed")
        XCTAssertEqual(try zoo.verify().findings, [])
        XCTAssertEqual(try zoo.record(id).summary.details, EntryDetails(try zoo.checkpoint(id)))
        XCTAssertNil(try zoo.load(id, rehash: false).hashed, "facts recorded by verify: trusted")
    }

    func testNewerCatalogSchemaIsRefusedUntouched() throws {
        let root = try ZooTestSupport.tempDir(self).appendingPathComponent("zoo")
        let layout = ZooLayout(root: root)
        let zoo = try Zoo.open(layout, create: true)
        _ = try zoo.add(ZooTestSupport.checkpoint(seed: 12))
        try zoo.close()
        let db = try DatabaseQueue(path: layout.catalog.path)
        try db.write { try $0.execute(sql: "PRAGMA user_version = 7") }
        try db.close()
        let before = try ZooTestSupport.snapshot(root)
        XCTAssertThrowsError(try Zoo.open(layout)) { error in
            XCTAssertEqual("\(error)", "\(layout.catalog.path): catalog written by a newer bissl (schema 7 > \(CatalogSchema.currentVersion)); upgrade bissl")
        }
        XCTAssertThrowsError(try Zoo.open(layout, create: true))
        XCTAssertThrowsError(try Zoo.reindex(layout))
        XCTAssertEqual(try ZooTestSupport.snapshot(root), before)
    }

    func testMissingZooAndNotADirectory() throws {
        let dir = try ZooTestSupport.tempDir(self)
        XCTAssertThrowsError(try Zoo.open(ZooLayout(root: dir.appendingPathComponent("none")))) {
            XCTAssertTrue("\($0)".hasPrefix("no zoo at "), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("none").path), "a read opens nothing")
        let file = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try Zoo.open(ZooLayout(root: file), create: true)) { XCTAssertTrue("\($0)".contains("is not a directory"), "\($0)") }
        XCTAssertThrowsError(try Zoo.open(ZooLayout(root: file.appendingPathComponent("zoo")), create: true)) {
            XCTAssertTrue("\($0)".contains("cannot create zoo at"), "\($0)")
        }
    }

    func testZooLocationPrecedence() {
        XCTAssertEqual(ZooLayout.resolve(explicit: "/a", environment: ["BISSL_ZOO": "/b"]).root.path, "/a")
        XCTAssertEqual(ZooLayout.resolve(explicit: nil, environment: ["BISSL_ZOO": "/b"]).root.path, "/b")
        XCTAssertEqual(ZooLayout.resolve(explicit: nil, environment: [:]).root.path,
                       URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("zoo").standardizedFileURL.path)
    }
}
