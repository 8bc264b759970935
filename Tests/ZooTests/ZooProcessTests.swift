import Checkpoint
import Foundation
import GRDB
import XCTest
@testable import Zoo
import TestSupport

/// Process-level tests: the built `bissl` binary (see `BisslBinary`) run as users run it, several at
/// once, and killed with SIGKILL in the middle of imports.
final class ZooProcessTests: XCTestCase {
    /// Asserts a failed command: non-zero exit, exactly one stderr line `error: <...expected...>`.
    private func assertOneLineError(_ r: BisslBinary.Result, contains expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        XCTAssertEqual(lines.count, 1, "stderr: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(expected), "expected '\(expected)' in: \(r.stderr)", file: file, line: line)
    }

    func testImportListShowExportRoundTrip() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let source = ZooTestSupport.checkpoint(seed: 200, stage: "finetune", metrics: ["top1": 0.625])
        let h5 = try ZooTestSupport.writeH5(source, to: dir.appendingPathComponent("in.h5"))
        let first = try BisslBinary.run(["import", h5.path, "--zoo", zoo, "--name", "ft", "--tag", "best"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let id = ContentID.compute(source)
        XCTAssertEqual(first.stdout.split(separator: "\n").first.map(String.init), id)
        let again = try BisslBinary.run(["import", h5.path, "--zoo", zoo, "--json"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["id"] as? String, id)
        XCTAssertEqual(json["added"] as? Bool, false)
        XCTAssertEqual(json["name"] as? String, "ft")

        // BISSL_ZOO is honoured when --zoo is absent.
        var env = ProcessInfo.processInfo.environment
        env["BISSL_ZOO"] = zoo
        let list = try BisslBinary.run(["list", "--json"], environment: env)
        XCTAssertEqual(list.status, 0, list.stderr)
        let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as! [[String: Any]]
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows[0]["stage"] as? String, "finetune")
        XCTAssertEqual(rows[0]["headlineValue"] as? Double, 0.625)
        let text = try BisslBinary.run(["list", "--zoo", zoo, "--stage", "finetune"])
        XCTAssertTrue(text.stdout.contains(String(id.prefix(12)) + "  ft    finetune"), text.stdout)
        XCTAssertTrue(text.stdout.contains("top1=0.625"), text.stdout)

        let show = try BisslBinary.run(["show", String(id.prefix(7)), "--zoo", zoo, "--json"])
        XCTAssertEqual(show.status, 0, show.stderr)
        let shown = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(shown["id"] as? String, id)
        XCTAssertEqual((shown["components"] as? [String: [String: Any]])?["backbone"]?["tensors"] as? Int, 6)

        let out = dir.appendingPathComponent("out.h5")
        let export = try BisslBinary.run(["export", "best", "-o", out.path, "--zoo", zoo])
        XCTAssertEqual(export.status, 0, export.stderr)
        XCTAssertEqual(try CheckpointFile.read(out, verifyContentID: true).components, source.components)
    }

    func testBadInputIsOneErrorLineAndChangesNothing() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let layout = ZooLayout(root: dir.appendingPathComponent("zoo"))
        let zooPath = layout.root.path
        let h5 = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 201), to: dir.appendingPathComponent("a.h5"))
        XCTAssertEqual(try BisslBinary.run(["import", h5.path, "--zoo", zooPath, "--name", "a"]).status, 0)
        let other = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 202), to: dir.appendingPathComponent("b.h5"))
        // Two catalog rows sharing a long prefix, for the ambiguous case.
        let p1 = "abcdef01" + String(repeating: "1", count: 56), p2 = "abcdef01" + String(repeating: "2", count: 56)
        do {
            let zoo = try Zoo.open(layout)
            try zoo.catalog.write { db in
                for id in [p1, p2] { try Catalog.insert(EntrySummary(id: id, checkpoint: ZooTestSupport.checkpoint(seed: 9), size: 1, modified: Date()), db) }
            }
            try zoo.close()
        }
        var before = try ZooTestSupport.snapshot(layout.root)
        let out = dir.appendingPathComponent("out.pth").path
        let cases: [([String], String)] = [
            (["show", "nosuch", "--zoo", zooPath], "no entry, name or tag 'nosuch'"),
            (["export", "abcdef01", "-o", out, "--zoo", zooPath], "'abcdef01' is ambiguous: 2 entries start with it"),
            (["rm", "abcdef0", "--zoo", zooPath], "is ambiguous"),
            (["tag", "nosuch", "t", "--zoo", zooPath], "no entry, name or tag 'nosuch'"),
            (["untag", "nosuch", "--zoo", zooPath], "no name or tag 'nosuch'"),
            (["import", other.path, "--zoo", zooPath, "--name", "a"], "label 'a' is already the name of entry"),
            (["tag", "a", "abcdef12", "--zoo", zooPath], "would read as an entry id prefix"),
            (["list", "--zoo", dir.appendingPathComponent("nozoo").path], "no zoo at"),
        ]
        for (args, expected) in cases {
            assertOneLineError(try BisslBinary.run(args), contains: expected)
            XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before, "\(args)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        // A file that is not a checkpoint creates nothing, not even the zoo.
        let html = dir.appendingPathComponent("model.pth")
        try Data("<!DOCTYPE html><html><body>Not Found</body></html>".utf8).write(to: html)
        assertOneLineError(try BisslBinary.run(["import", html.path, "--zoo", dir.appendingPathComponent("fresh").path]), contains: "HTML")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("fresh").path))
        assertOneLineError(try BisslBinary.run(["import", html.path, "--zoo", zooPath]), contains: "HTML")
        XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before)

        // Unwritable zoo locations (the tests may run as root, so permissions cannot be relied on).
        assertOneLineError(try BisslBinary.run(["import", other.path, "--zoo", "/proc/bissl-zoo-test"]), contains: "cannot create zoo at /proc/bissl-zoo-test")
        assertOneLineError(try BisslBinary.run(["import", other.path, "--zoo", h5.path]), contains: "is not a directory")
        assertOneLineError(try BisslBinary.run(["import", other.path, "--zoo", h5.path + "/zoo"]), contains: "cannot create zoo at")

        // A corrupt object: export and show fail, verify names it; a missing object likewise.
        let a = try BisslBinary.run(["list", "--json", "--tag", "a", "--zoo", zooPath])
        let aID = (try JSONSerialization.jsonObject(with: Data(a.stdout.utf8)) as! [[String: Any]])[0]["id"] as! String
        let object = layout.objectURL(aID)
        var bytes = try Data(contentsOf: object)
        // Destroy the HDF5 signature (after the tensor index, at the start of HDF5's superblock).
        let signature = try XCTUnwrap(bytes.range(of: Data([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])))
        bytes.replaceSubrange(signature, with: Data(repeating: 0, count: 8))
        try bytes.write(to: object)
        before = try ZooTestSupport.snapshot(layout.root)
        assertOneLineError(try BisslBinary.run(["export", "a", "-o", out, "--zoo", zooPath]), contains: "object of entry \(aID.prefix(12)) is damaged")
        assertOneLineError(try BisslBinary.run(["show", "a", "--zoo", zooPath]), contains: "is damaged")
        let verify = try BisslBinary.run(["verify", "a", "--zoo", zooPath])
        XCTAssertEqual(verify.status, 1)
        XCTAssertTrue(verify.stdout.contains("problem: \(aID.prefix(12)): object of entry"), verify.stdout)
        XCTAssertEqual(verify.stderr, "error: 1 damaged entry in \(zooPath); each 'fix:' line above says what repairs it\n")
        unlink(object.path)
        before = try ZooTestSupport.snapshot(layout.root)
        assertOneLineError(try BisslBinary.run(["export", "a", "-o", out, "--zoo", zooPath]), contains: "object file of entry \(aID.prefix(12)) is missing")
        XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        // A catalog of a newer schema.
        let db = try DatabaseQueue(path: layout.catalog.path)
        try db.write { try $0.execute(sql: "PRAGMA user_version = 42") }
        try db.close()
        before = try ZooTestSupport.snapshot(layout.root)
        for args in [["list"], ["import", other.path], ["gc"], ["verify", "--reindex"]] {
            assertOneLineError(try BisslBinary.run(args + ["--zoo", zooPath]), contains: "catalog written by a newer bissl (schema 42 > \(CatalogSchema.currentVersion))")
            XCTAssertEqual(try ZooTestSupport.snapshot(layout.root), before, "\(args)")
        }
    }

    /// 4 processes import different files into one fresh zoo at the same moment, 3 rounds: every entry
    /// is listed, verify is clean, no file is left over.
    func testConcurrentImportsLoseNothing() throws {
        let dir = try ZooTestSupport.tempDir(self)
        guard let binary = BisslBinary.url else { return XCTFail("bissl binary not found: run swift build --build-tests") }
        for round in 0..<3 {
            let layout = ZooLayout(root: dir.appendingPathComponent("zoo\(round)"))
            var expected = Set<String>()
            var processes: [Process] = []
            for p in 0..<4 {
                // Each process imports two files in a row, so imports overlap with the others'.
                var files: [String] = []
                for k in 0..<2 {
                    let c = ZooTestSupport.checkpoint(seed: 1000 + round * 10 + p * 2 + k, extraFloats: 100_000)
                    expected.insert(ContentID.compute(c))
                    files.append(try ZooTestSupport.writeH5(c, to: dir.appendingPathComponent("r\(round)p\(p)k\(k).h5")).path)
                }
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/bin/sh")
                process.arguments = ["-c", "\"$0\" import \"$1\" --zoo \"$3\" --tag p\(p)a && \"$0\" import \"$2\" --zoo \"$3\" --tag p\(p)b",
                                     binary.path, files[0], files[1], layout.root.path]
                process.standardOutput = FileHandle.nullDevice
                processes.append(process)
            }
            for process in processes { try process.run() }
            for process in processes { process.waitUntilExit() }
            XCTAssertEqual(processes.map(\.terminationStatus), [0, 0, 0, 0])
            let zoo = try Zoo.open(layout)
            defer { try? zoo.close() }
            XCTAssertEqual(Set(try zoo.list().map(\.id)), expected, "round \(round)")
            XCTAssertEqual(try zoo.list().flatMap(\.tags).sorted(), (0..<4).flatMap { ["p\($0)a", "p\($0)b"] })
            XCTAssertEqual(try zoo.verify().findings, [], "round \(round)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: layout.tmp.path), [])
        }
    }

    /// An import killed with SIGKILL at a random moment never leaves a listed partial entry; verify
    /// reports no damage; gc removes what the killed writer left; later imports work.
    func testImportKilledAtRandomMomentsLeavesNoPartialEntry() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let layout = ZooLayout(root: dir.appendingPathComponent("zoo"))
        guard let binary = BisslBinary.url else { return XCTFail("bissl binary not found: run swift build --build-tests") }
        let wantedKills = 20
        let fileCount = 40
        var files: [URL] = []
        var ids: [String] = []
        for t in 0..<fileCount {
            let c = ZooTestSupport.checkpoint(seed: 5000 + t, extraFloats: 250_000)  // ~1 MB objects
            ids.append(ContentID.compute(c))
            files.append(try ZooTestSupport.writeH5(c, to: dir.appendingPathComponent("k\(t).h5")))
        }
        func start(_ file: URL) throws -> Process {
            let p = Process()
            p.executableURL = binary
            p.arguments = ["import", file.path, "--zoo", layout.root.path, "--name", "n-\(file.deletingPathExtension().lastPathComponent)"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        // Time one complete import to spread the kills over its duration; whenever an import finishes
        // before its kill, later delays shrink, so that at least `wantedKills` kills land inside imports
        // however fast this machine is. A killed file is tried again later (it must not be listed).
        let clock = Date()
        let timing = try start(files[0])
        timing.waitUntilExit()
        XCTAssertEqual(timing.terminationStatus, 0)
        let duration = Date().timeIntervalSince(clock)
        var rng = SplitMix(seed: 42)
        var killed = 0, completed = 1, attempts = 0
        var scale = 1.0
        var checked: Set<String> = [ids[0]]
        while killed < wantedKills, attempts < 100,
              let t = (1..<fileCount).first(where: { !checked.contains(ids[$0]) }) {
            attempts += 1
            let process = try start(files[t])
            let delay = duration * scale * Double(rng.next() % 1000) / 1000
            Thread.sleep(forTimeInterval: delay)
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                killed += 1
            } else {
                completed += 1
                scale *= 0.7
            }
            process.waitUntilExit()

            // Entries listed since the last trial are read back with their content id recomputed:
            // a listed partial entry would be a problem. (Earlier entries cannot change.)
            let zoo = try Zoo.open(layout)
            defer { try? zoo.close() }
            let listed = Set(try zoo.list().map(\.id))
            let fresh = listed.subtracting(checked)
            checked = listed
            if !fresh.isEmpty {
                let report = try zoo.verify(fresh.sorted())
                XCTAssertEqual(report.findings, [], "attempt \(attempts) after \(delay) s")
            }
        }
        XCTAssertGreaterThanOrEqual(killed, wantedKills, "kills inside imports (one import takes \(duration) s)")
        print("SIGKILL trials: \(attempts), killed \(killed), completed \(completed - 1); one import takes \(String(format: "%.3f", duration)) s")

        let zoo = try Zoo.open(layout)
        defer { try? zoo.close() }
        let afterKills = try zoo.verify()
        XCTAssertEqual(afterKills.problems, [], "verify reports no damage after the kills")
        XCTAssertTrue(afterKills.findings.allSatisfy { $0.level == .leftover }, "\(afterKills.findings)")
        let gcReport = try zoo.gc()
        print("after the kills: \(afterKills.findings.count) leftovers; gc listed \(gcReport.relistedObjects.count) complete unlisted objects again, \(gcReport.writerLeftovers.count) writer files, \(gcReport.strayRefs.count) refs")
        XCTAssertEqual(try zoo.verify().findings, [], "gc leaves a clean zoo")
        let listed = Set(try zoo.list().map(\.id))
        XCTAssertTrue(listed.isSubset(of: Set(ids)))
        XCTAssertGreaterThanOrEqual(listed.count, completed)
        XCTAssertEqual(ZooScan(layout).objects.count, listed.count, "no unlisted object after gc")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: layout.tmp.path), [])
        // Every file imports afterwards: killed imports block nothing.
        for (t, file) in files.enumerated() where !listed.contains(ids[t]) {
            let p = try start(file)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "re-import of trial \(t)")
        }
        XCTAssertEqual(Set(try zoo.list().map(\.id)), Set(ids))
        XCTAssertEqual(try zoo.verify().findings, [])
    }
}
