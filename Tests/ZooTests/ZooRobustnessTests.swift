import Checkpoint
import Foundation
import GRDB
import XCTest
@testable import Zoo
import TestSupport

/// Findings of a tester run, each reproduced: lost catalogs (CLI side), lineage cycles, read-only
/// zoos, tampered objects and files, writing into objects/, labels on re-import, --stage validation,
/// diff across architectures and of multi-candidate files, duplicated import warnings.
final class ZooRobustnessTests: XCTestCase {
    private func makeZoo() throws -> (Zoo, ZooLayout) {
        let layout = ZooLayout(root: try ZooTestSupport.tempDir(self).appendingPathComponent("zoo"))
        let zoo = try Zoo.open(layout, create: true)
        addTeardownBlock { try? zoo.close() }
        return (zoo, layout)
    }

    private func ok(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> BisslBinary.Result {
        let r = try BisslBinary.run(args)
        XCTAssertEqual(r.status, 0, "bissl \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    private func fails(_ args: [String], containing expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try BisslBinary.run(args)
        XCTAssertNotEqual(r.status, 0, "bissl \(args.joined(separator: " ")) should fail: \(r.stdout)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains(expected), "expected '\(expected)' in: \(r.stderr)", file: file, line: line)
    }

    // MARK: 1. lost catalog through the CLI

    func testListAfterTheCatalogIsDeletedRebuildsItAndSaysSoOnce() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let c = ZooTestSupport.checkpoint(seed: 400)
        let h5 = try ZooTestSupport.writeH5(c, to: dir.appendingPathComponent("a.h5"))
        _ = try ok(["import", h5.path, "--zoo", zoo, "--name", "a"])
        for suffix in ["", "-wal", "-shm"] { unlink(zoo + "/catalog.sqlite" + suffix) }
        let list = try ok(["list", "--zoo", zoo])
        XCTAssertEqual(list.stderr, "note: catalog missing: rebuilt from 1 object\n")
        XCTAssertTrue(list.stdout.contains(String(ContentID.compute(c).prefix(12)) + "  a "), list.stdout)
        let again = try ok(["list", "--zoo", zoo])
        XCTAssertEqual(again.stderr, "", "rebuilt once")
    }

    // MARK: 2. lineage cycles

    func testImportRefusesASelfParent() throws {
        let (zoo, _) = try makeZoo()
        let plain = ZooTestSupport.checkpoint(seed: 410)
        let own = ContentID.compute(plain)  // provenance does not enter the content id
        let selfParent = ZooTestSupport.checkpoint(seed: 410, stage: "finetune", parents: [.init(id: own, relation: "finetuned-from")])
        XCTAssertThrowsError(try zoo.add(selfParent)) { XCTAssertTrue("\($0)".contains("own content id"), "\($0)") }
        XCTAssertEqual(try zoo.list().count, 0)
    }

    func testLineageRemoveAndVerifyTerminateOnCycles() throws {
        let (zoo, layout) = try makeZoo()
        // A names B as parent and B names A: content ids cover tensors only, so provenance can say so.
        // Import refuses the second one (and a longer cycle); an older bissl imported it, as here.
        let idA = ContentID.compute(ZooTestSupport.checkpoint(seed: 411))
        let idB = ContentID.compute(ZooTestSupport.checkpoint(seed: 412))
        let idC = ContentID.compute(ZooTestSupport.checkpoint(seed: 414))
        _ = try zoo.add(ZooTestSupport.checkpoint(seed: 411, stage: "finetune", parents: [.init(id: idB, relation: "finetuned-from")]), name: "a")
        let b = ZooTestSupport.checkpoint(seed: 412, stage: "finetune", parents: [.init(id: idA, relation: "finetuned-from")])
        XCTAssertThrowsError(try zoo.add(b, name: "b")) {
            XCTAssertTrue("\($0)".contains("its parent \(idA.prefix(12)) descends from it (\(idB.prefix(12))), so the lineage would be a cycle"), "\($0)")
        }
        _ = try zoo.add(ZooTestSupport.checkpoint(seed: 414, stage: "finetune", parents: [.init(id: idA, relation: "finetuned-from")]), name: "c")
        XCTAssertThrowsError(try zoo.add(ZooTestSupport.checkpoint(seed: 412, stage: "finetune", parents: [.init(id: idC, relation: "finetuned-from")]))) {
            XCTAssertTrue("\($0)".contains("its parent \(idC.prefix(12)) descends from it"), "\($0)")
        }
        XCTAssertEqual(try zoo.list().count, 2, "nothing added by the refusals")
        _ = try zoo.remove(idC)
        try zoo.catalog.write { db in try Catalog.insert(EntrySummary(id: idB, checkpoint: b, size: 1, modified: Date()), db) }
        // A self-parent written straight into the catalog (as an older bissl could have imported it).
        let selfID = String(repeating: "5", count: 64)
        try zoo.catalog.write { db in
            try Catalog.insert(EntrySummary(id: selfID, checkpoint: ZooTestSupport.checkpoint(seed: 413, stage: "finetune", parents: [.init(id: selfID, relation: "finetuned-from")]),
                                            size: 1, modified: Date()), db)
        }
        let both = try zoo.lineage("a", direction: .both)
        XCTAssertEqual(Set(both.nodes.map(\.id)), [idA, idB])
        XCTAssertEqual(Set(both.edges.map { "\($0.child.prefix(4))<-\($0.parent.prefix(4))" }), ["\(idA.prefix(4))<-\(idB.prefix(4))", "\(idB.prefix(4))<-\(idA.prefix(4))"])
        XCTAssertEqual(try zoo.lineage(selfID, direction: .up).nodes.map(\.id), [selfID])

        let cycles = try zoo.lineageCycles()
        XCTAssertEqual(cycles.count, 2, "\(cycles)")
        XCTAssertTrue(cycles.allSatisfy { $0.level == .problem && $0.message.hasPrefix("lineage cycle: ") })
        XCTAssertTrue(cycles.contains { $0.message.contains("\(selfID.prefix(12)) -> \(selfID.prefix(12))") })
        XCTAssertTrue(try zoo.verify().problems.contains { $0.message.hasPrefix("lineage cycle: ") })

        // A self-parent is not its own descendant: rm needs no --force.
        let removed = try zoo.remove(selfID)
        XCTAssertEqual(removed.descendants, [])
        XCTAssertFalse(removed.tombstone)
        // The CLI's lineage of a cycle ends.
        let text = try ok(["lineage", "a", "--zoo", layout.root.path])
        XCTAssertTrue(text.stdout.contains("(repeat, see above)"), text.stdout)
    }

    // MARK: 3. read-only zoos

    func testReadOnlyOpenWritesNothing() throws {
        let (zoo, layout) = try makeZoo()
        let id = try zoo.add(ZooTestSupport.checkpoint(seed: 420), name: "a").id
        try zoo.close()
        let before = try ZooTestSupport.snapshot(layout.root)
        let reader = try Zoo.open(layout, readOnly: true)
        XCTAssertEqual(try reader.list().map(\.id), [id])
        XCTAssertEqual(try reader.verify().findings, [])
        try reader.close()
        XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: layout.catalog.path + "-journal"))
        // Who may not write the zoo reads with SQLITE_OPEN_READONLY; without a -wal file through the
        // immutable URI (no -shm can be created). Exercised for real by the setpriv test below.
        XCTAssertEqual(Catalog.readMode(canWrite: true, walExists: false), .readWrite)
        XCTAssertEqual(Catalog.readMode(canWrite: false, walExists: true), .readOnly)
        XCTAssertEqual(Catalog.readMode(canWrite: false, walExists: false), .immutable)
    }

    /// The real case: the zoo belongs to root, the command runs as `nobody` (setpriv), who can read
    /// but not write the zoo folder or the catalog.
    func testReadCommandsWorkForAUserWhoCanOnlyReadTheZoo() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), let bissl = BisslBinary.url else {
            throw XCTSkip("needs root and setpriv to run as another user")
        }
        let dir = try ZooTestSupport.tempDir(self)
        chmod(dir.path, 0o755)
        let zoo = dir.appendingPathComponent("zoo").path
        let a = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 421), to: dir.appendingPathComponent("a.h5"))
        let b = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 422, stage: "finetune", parents: [.init(id: ContentID.compute(ZooTestSupport.checkpoint(seed: 421)), relation: "finetuned-from")]),
                                           to: dir.appendingPathComponent("b.h5"))
        _ = try ok(["import", a.path, "--zoo", zoo, "--name", "a"])
        _ = try ok(["import", b.path, "--zoo", zoo, "--name", "b"])
        let before = try ZooTestSupport.snapshot(URL(fileURLWithPath: zoo))
        let out = "/tmp/bissl-ro-\(UUID().uuidString).pth"
        defer { unlink(out) }
        for args in [["list"], ["show", "a"], ["export", "a", "-o", out], ["diff", "a", "b"], ["lineage", "b"], ["verify"]] {
            let r = try BisslBinary.run(["--reuid=65534", "--regid=65534", "--clear-groups", bissl.path] + args + ["--zoo", zoo],
                                        executable: URL(fileURLWithPath: "/usr/bin/setpriv"))
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("readonly"), r.stderr)
        }
        XCTAssertEqual(try ZooTestSupport.snapshot(URL(fileURLWithPath: zoo)), before)
        // Writing commands still say the zoo is not writable.
        let tag = try BisslBinary.run(["--reuid=65534", "--regid=65534", "--clear-groups", bissl.path, "tag", "a", "t", "--zoo", zoo],
                                      executable: URL(fileURLWithPath: "/usr/bin/setpriv"))
        XCTAssertNotEqual(tag.status, 0)
        XCTAssertTrue(tag.stderr.contains("not writable"), tag.stderr)
    }

    // MARK: 4. tampered content

    func testTamperedObjectIsRefusedByExportDiffShowAndTamperedFileByImport() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let layout = ZooLayout(root: URL(fileURLWithPath: zoo))
        let c = ZooTestSupport.checkpoint(seed: 430, extraFloats: 4096)
        let id = ContentID.compute(c)
        let h5 = try ZooTestSupport.writeH5(c, to: dir.appendingPathComponent("a.h5"))
        _ = try ok(["import", h5.path, "--zoo", zoo, "--name", "a"])
        // Flip float bytes of layer1.0.conv1.weight in place: the stored content_id attribute stays.
        var bytes = try Data(contentsOf: layout.objectURL(id))
        let at = bytes.count - 8000
        for i in at..<(at + 8) { bytes[i] ^= 0xFF }
        chmod(layout.objectURL(id).path, 0o644)
        try bytes.write(to: layout.objectURL(id))
        let tamperedID = ContentID.compute(try CheckpointFile.read(layout.objectURL(id)))
        XCTAssertNotEqual(tamperedID, id)
        let out = dir.appendingPathComponent("out.pth").path
        for args in [["export", "a", "-o", out], ["show", "a"], ["diff", "a", h5.path]] {
            try fails(args + ["--zoo", zoo], containing: "object \(id.prefix(12)) is corrupt: holds content \(tamperedID.prefix(12)); run bissl verify")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        // The same bytes as a file to import: the stored id no longer matches the tensors.
        let tamperedFile = dir.appendingPathComponent("tampered.h5")
        try bytes.write(to: tamperedFile)
        try fails(["import", tamperedFile.path, "--zoo", dir.appendingPathComponent("zoo2").path],
                  containing: "stored content id \(id) does not match its tensors (content id \(tamperedID))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("zoo2").path))
        // convert checks it the same way and writes nothing.
        let converted = dir.appendingPathComponent("converted.safetensors").path
        try fails(["convert", tamperedFile.path, converted],
                  containing: "stored content id \(id) does not match its tensors (content id \(tamperedID))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: converted))
    }

    // MARK: 5. writing into objects/

    func testExportAndConvertRefuseOutputsInsideObjects() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let layout = ZooLayout(root: URL(fileURLWithPath: zoo))
        let a = ZooTestSupport.checkpoint(seed: 440), b = ZooTestSupport.checkpoint(seed: 441)
        let h5a = try ZooTestSupport.writeH5(a, to: dir.appendingPathComponent("a.h5"))
        let h5b = try ZooTestSupport.writeH5(b, to: dir.appendingPathComponent("b.h5"))
        _ = try ok(["import", h5a.path, "--zoo", zoo, "--name", "a"])
        _ = try ok(["import", h5b.path, "--zoo", zoo, "--name", "b"])
        let objectA = layout.objectURL(ContentID.compute(a))
        let before = try Data(contentsOf: objectA)
        // Directly, through a symlink to the zoo, and with .. components.
        let link = dir.appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: URL(fileURLWithPath: zoo))
        let viaLink = link.path + "/objects/" + objectA.path.split(separator: "/").suffix(2).joined(separator: "/")
        let viaDots = zoo + "/refs/../objects/" + objectA.path.split(separator: "/").suffix(2).joined(separator: "/")
        for target in [objectA.path, viaLink, viaDots] {
            try fails(["export", "b", "-o", target, "--zoo", zoo], containing: "inside the zoo's objects folder")
            try fails(["convert", h5b.path, target], containing: "inside the zoo's objects folder")
        }
        try fails(["convert", h5b.path, zoo + "/objects/new.h5"], containing: "inside the zoo's objects folder")
        XCTAssertEqual(try Data(contentsOf: objectA), before)
        // Elsewhere both still write.
        _ = try ok(["export", "b", "-o", dir.appendingPathComponent("b.pth").path, "--zoo", zoo])
        _ = try ok(["convert", h5b.path, dir.appendingPathComponent("b2.pth").path])
    }

    // MARK: 6. labels on re-import

    func testReimportAppliesNewLabelsAndRefusesConflicts() throws {
        let (zoo, layout) = try makeZoo()
        let c = ZooTestSupport.checkpoint(seed: 450)
        let first = try zoo.add(c)
        XCTAssertNil(first.name)
        let other = try zoo.add(ZooTestSupport.checkpoint(seed: 451), name: "taken").id
        let again = try zoo.add(c, name: "n", tags: ["t1", "t2"])
        XCTAssertFalse(again.added)
        XCTAssertEqual(again.labelsAdded, ["n", "t1", "t2"])
        XCTAssertEqual(again.name, "n")
        XCTAssertEqual(again.tags, ["t1", "t2"])
        XCTAssertEqual(try zoo.resolve("n"), first.id)
        XCTAssertEqual(try String(contentsOf: layout.refURL("t2", kind: .tag), encoding: .utf8), first.id + "\n")
        // Labels it already holds change nothing; a taken label or a second name are refused.
        XCTAssertEqual(try zoo.add(c, tags: ["t1"]).labelsAdded, [])
        XCTAssertThrowsError(try zoo.add(c, tags: ["taken"])) { XCTAssertTrue("\($0)".contains("already the name of entry \(other.prefix(12))"), "\($0)") }
        XCTAssertThrowsError(try zoo.add(c, name: "m")) { XCTAssertTrue("\($0)".contains("already named 'n'"), "\($0)") }
        XCTAssertEqual(try zoo.labels(of: first.id).map(\.label), ["n", "t1", "t2"])
        XCTAssertEqual(try zoo.verify().findings, [])

        let h5 = try ZooTestSupport.writeH5(c, to: layout.root.deletingLastPathComponent().appendingPathComponent("c.h5"))
        let r = try ok(["import", h5.path, "--zoo", layout.root.path, "--tag", "t3"])
        XCTAssertTrue(r.stdout.contains("identical content; added label t3 to it"), r.stdout)
    }

    // MARK: 7. --stage validation

    func testListRefusesAnUnknownStage() throws {
        let (zoo, layout) = try makeZoo()
        _ = try zoo.add(ZooTestSupport.checkpoint(seed: 460))
        try fails(["list", "--stage", "bogus", "--zoo", layout.root.path], containing: "unknown stage 'bogus': use one of imported, pretext, bissl, finetune, probe")
        XCTAssertTrue(try ok(["list", "--stage", "imported", "--zoo", layout.root.path]).stdout.contains("imported"))
    }

    // MARK: 8. diff

    func testDiffOfAMultiCandidateFileSaysToImportWithSelect() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let ema = ZooTestSupport.fixture("layout/ema.pth").path
        let r = try BisslBinary.run(["diff", ema, ZooTestSupport.fixture("layout/train.pth").path, "--zoo", dir.appendingPathComponent("nozoo").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("import it with bissl import \(ema) --select KEYPATH first"), r.stderr)
        XCTAssertFalse(r.stderr.contains("pick one with --select"), r.stderr)
    }

    func testDiffAcrossArchitecturesReportsThemNotComparable() throws {
        // aliases.pth is resnet18-w1-small, c3_full.pth resnet50-w1-small (tools/fixtures): the stems
        // have equal shapes, so a naive relative change would be computed from them alone.
        let a = try Interchange.load(ZooTestSupport.fixture("layout/aliases.pth"), options: LayoutOptions(), allowPlainTensors: true)
        let b = try Interchange.load(ZooTestSupport.fixture("layout/c3_full.pth"), options: LayoutOptions(), allowPlainTensors: true)
        let diff = try CheckpointDiff(a, b)
        XCTAssertEqual(diff.summary.architecturesDiffer, "resnet18-w1-small -> resnet50-w1-small")
        XCTAssertNil(diff.summary.relativeChange)
        XCTAssertTrue(diff.stages.allSatisfy { $0.relativeChange == nil })
        let text = DiffTextRenderer.render(diff)
        XCTAssertTrue(text.contains("architectures differ (resnet18-w1-small -> resnet50-w1-small): weights not comparable"), text)
        XCTAssertFalse(text.contains("relative change"), text)
        // Notes cells: at most 3 notes, then "...", with the count first.
        for line in text.split(separator: "\n") where line.contains("replaced") {
            XCTAssertLessThanOrEqual(line.components(separatedBy: "; ").count, 4, String(line))
        }
        XCTAssertTrue(text.contains(" tensors: "), text)
        // Same architecture: still computed.
        XCTAssertNotNil(try CheckpointDiff(b, b).summary.relativeChange)
    }

    // MARK: 9. warnings once

    func testImportPrintsEachHealthWarningOnce() throws {
        let dir = try ZooTestSupport.tempDir(self)
        var c = ZooTestSupport.checkpoint(seed: 470)
        c.components["backbone"]!["bn1.running_var"] = Tensor(float32: [0, 1, 1, 1], shape: [4])
        // What convert records: the loader's BatchNorm findings in provenance.warnings.
        c.provenance.warnings = HealthCheck.warnings(c)
        XCTAssertEqual(c.provenance.warnings.count, 1)
        let warning = c.provenance.warnings[0]
        XCTAssertTrue(warning.contains("bn1.running_var"), warning)
        let h5 = try ZooTestSupport.writeH5(c, to: dir.appendingPathComponent("z.h5"))
        let r = try ok(["import", h5.path, "--zoo", dir.appendingPathComponent("zoo").path])
        XCTAssertEqual(r.stdout.components(separatedBy: warning).count - 1, 1, r.stdout)
    }
}

extension ZooRobustnessTests {
    /// The breadth-first walk that replaced the recursive SQL follows a 1,000-deep chain to its root
    /// (its speed is measured by `make bench`).
    func testLineageOfAThousandDeepChain() throws {
        let (zoo, _) = try makeZoo()
        let ids = (0..<1000).map { String(format: "%064x", $0 + 1) }
        let base = ZooTestSupport.checkpoint(seed: 480)
        try zoo.catalog.write { db in
            for (i, id) in ids.enumerated() {
                var c = base
                c.provenance.parents = i == 0 ? [] : [.init(id: ids[i - 1], relation: "finetuned-from")]
                try Catalog.insert(EntrySummary(id: id, checkpoint: c, size: 1, modified: Date()), db)
            }
        }
        let lineage = try zoo.lineage(ids[999], direction: .up)
        XCTAssertEqual(lineage.nodes.map(\.id), ids.reversed())
        XCTAssertEqual(lineage.edges.count, 999)
    }
}
