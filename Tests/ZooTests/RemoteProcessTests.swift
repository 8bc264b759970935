import Checkpoint
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// The remote commands as users run them (the `bissl` binary, AWS credentials in the environment),
/// concurrent pushers, and a pusher killed mid-upload, against a real S3 server (`SeaweedServer`).
final class RemoteProcessTests: XCTestCase {
    private func run(_ args: [String]) throws -> BisslBinary.Result {
        try BisslBinary.run(args, environment: SeaweedServer.environment)
    }

    /// Starts `bissl args...` without waiting; stdout and stderr go to files in `dir`.
    private func start(_ args: [String], _ dir: URL, _ tag: String) throws -> (Process, URL) {
        guard let binary = BisslBinary.url else { throw CheckpointError.io("bissl binary not found") }
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        p.environment = SeaweedServer.environment
        let err = dir.appendingPathComponent("\(tag).err")
        FileManager.default.createFile(atPath: err.path, contents: nil)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return (p, err)
    }

    /// Imports `checkpoint` into a new zoo `dir/name` with `remote` added; returns the zoo path and id.
    private func zoo(_ dir: URL, _ name: String, _ checkpoint: Checkpoint, label: String, remote: RemoteConfig) throws -> (String, String) {
        let path = dir.appendingPathComponent(name).path
        let file = try ZooTestSupport.writeH5(checkpoint, to: dir.appendingPathComponent("\(name).h5"))
        let imported = try run(["import", file.path, "--zoo", path, "--name", label])
        XCTAssertEqual(imported.status, 0, imported.stderr)
        let added = try run(["remote", "add", remote.name, remote.url, "--endpoint", remote.endpoint!, "--zoo", path])
        XCTAssertEqual(added.status, 0, added.stderr)
        return (path, ContentID.compute(checkpoint))
    }

    func testCLIAndConcurrentPushers() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let remote = try server.remote()

        // Two zoos holding the same entry push it at once: both succeed, one manifest results.
        let same = ZooTestSupport.checkpoint(seed: 30)
        let (z1, id) = try zoo(dir, "z1", same, label: "base", remote: remote)
        let (z2, _) = try zoo(dir, "z2", same, label: "base", remote: remote)
        let pushers = try [z1, z2].enumerated().map { try start(["push", "base", "--zoo", $1], dir, "same\($0)") }
        for (p, err) in pushers {
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, (try? String(contentsOf: err, encoding: .utf8)) ?? "")
        }
        let store = try server.store(remote)
        XCTAssertEqual(try store.entryIDs(), [id])
        XCTAssertEqual(try store.ref("base")?.id, id)

        // Two zoos push different entries under one name at once: exactly one wins; the loser's one
        // error line names the entry holding the name.
        let (z3, a) = try zoo(dir, "z3", ZooTestSupport.checkpoint(seed: 31), label: "shared", remote: remote)
        let (z4, b) = try zoo(dir, "z4", ZooTestSupport.checkpoint(seed: 32), label: "shared", remote: remote)
        let racers = try [z3, z4].enumerated().map { try start(["push", "shared", "--zoo", $1], dir, "race\($0)") }
        for (p, _) in racers { p.waitUntilExit() }
        let statuses = racers.map { $0.0.terminationStatus }
        XCTAssertEqual(statuses.filter { $0 == 0 }.count, 1, "exactly one pusher wins: \(statuses)")
        let winner = try XCTUnwrap(store.ref("shared")).id
        XCTAssertEqual(winner, statuses[0] == 0 ? a : b)
        let loserErr = try String(contentsOf: racers[statuses[0] == 0 ? 1 : 0].1, encoding: .utf8)
        XCTAssertEqual(loserErr.split(separator: "\n").count, 1, loserErr)
        XCTAssertTrue(loserErr.hasPrefix("error: 'shared' on remote team is the name of entry \(winner.prefix(12))"), loserErr)
        XCTAssertTrue(loserErr.contains("; a name cannot change, so push this entry under a tag: bissl untag shared (the entry stays), bissl tag "), loserErr)

        // The commands' text and JSON output; a first pull into a new zoo.
        let listed = try run(["list", "--remote", "team", "--zoo", z1])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertTrue(listed.stdout.contains(String(winner.prefix(12))) && listed.stdout.contains("shared"), listed.stdout)
        let json = try run(["list", "--remote", "team", "--zoo", z1, "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [[String: Any]]
        XCTAssertEqual(Set(rows.map { $0["id"] as! String }).count, rows.count)
        XCTAssertTrue(rows.contains { $0["id"] as? String == id && $0["name"] as? String == "base" })
        let remotes = try run(["remote", "list", "--zoo", z1])
        XCTAssertTrue(remotes.stdout.contains("team") && remotes.stdout.contains(remote.url), remotes.stdout)
        let fresh = dir.appendingPathComponent("fresh").path
        XCTAssertEqual(try run(["remote", "add", "team", remote.url, "--endpoint", server.endpoint, "--zoo", fresh]).status, 0)
        let pulled = try run(["pull", "base", "--zoo", fresh, "--json"])
        XCTAssertEqual(pulled.status, 0, pulled.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(pulled.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(report["id"] as? String, id)
        let show = try run(["show", "base", "--zoo", fresh])
        XCTAssertEqual(show.status, 0, show.stderr)
        let missing = try run(["pull", "nosuchlabel", "--zoo", fresh])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.hasPrefix("error: no entry, name or tag 'nosuchlabel' on remote team"), missing.stderr)
    }

    func testPusherKilledMidUploadLeavesNoEntryAndRetrySucceeds() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let remote = try server.remote()
        // 2.5 M float32 = 10 MB at 4 MB/s: the upload takes ~2.5 s; killed after 1 s.
        let (z, id) = try zoo(dir, "z", ZooTestSupport.checkpoint(seed: 40, extraFloats: 2_500_000), label: "big", remote: remote)
        let (p, _) = try start(["push", "big", "--zoo", z, "--max-rate", "4M"], dir, "killed")
        Thread.sleep(forTimeInterval: 1)
        XCTAssertTrue(p.isRunning, "the push ended before it could be killed")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let store = try server.store(remote)
        XCTAssertEqual(try store.entryIDs(), [], "no manifest: the entry is not on the remote")
        XCTAssertEqual(try store.list("objects/").count, 0, "an upload broken off stores no object")
        let listed = try run(["list", "--remote", "team", "--zoo", z])
        XCTAssertTrue(listed.stdout.hasPrefix("no entries in remote team"), listed.stdout)
        let again = try run(["push", "big", "--zoo", z, "--json"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try store.entryIDs(), [id])
        let gc = try run(["gc", "--remote", "team", "--grace", "0", "--zoo", z, "--json"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(gc.stdout.utf8)) as! [String: Any]
        XCTAssertEqual((report["removedObjects"] as? [String])?.count, 0)
    }

    /// A manifest whose object size is not the server's (a huge one, as a hostile or damaged
    /// remote may hold) fails the pull with one error line naming the entry and the remote, before
    /// anything is planned or written: no download folder, no entry.
    func testManifestSizeIsCheckedAgainstTheServerBeforeAnythingIsWritten() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let remote = try server.remote()
        let (z, id) = try zoo(dir, "z", ZooTestSupport.checkpoint(seed: 42), label: "base", remote: remote)
        XCTAssertEqual(try run(["push", "base", "--zoo", z]).status, 0)
        let store = try server.store(remote)
        var manifest = try XCTUnwrap(store.manifest(id))
        let actual = manifest.object.size
        let fresh = dir.appendingPathComponent("fresh")
        XCTAssertEqual(try run(["remote", "add", "team", remote.url, "--endpoint", server.endpoint, "--zoo", fresh.path]).status, 0)
        // 2^62 bytes: planning its 8 MiB ranges alone would take 4.4 TB. Then one byte more than the object.
        for declared in [Int64(1) << 62, actual + 1] {
            manifest.object.size = declared
            XCTAssertEqual(try store.client.send("PUT", store.key(RemoteStore.manifestKey(id)), body: .data(RemoteStore.encodeManifest(manifest))).status, 200)
            let pulled = try run(["pull", "base", "--zoo", fresh.path])
            XCTAssertEqual(pulled.status, 1, "exit status 1, not a crash: \(pulled.stderr)")
            XCTAssertEqual(pulled.stderr.split(separator: "\n").count, 1, pulled.stderr)
            XCTAssertTrue(pulled.stderr.hasPrefix("error: the object of entry \(id.prefix(12)) on remote team is corrupt: "), pulled.stderr)
            XCTAssertTrue(pulled.stderr.contains("holds \(actual) bytes, its manifest says \(declared); not imported"), pulled.stderr)
            XCTAssertEqual(files(fresh.appendingPathComponent("tmp")), [], "nothing left behind")
            XCTAssertFalse(try run(["list", "--zoo", fresh.path]).stdout.contains(String(id.prefix(12))))
        }
    }

    /// A remote URL whose prefix holds no bissl zoo (a mistyped prefix) is told apart from an
    /// empty zoo: `remote add` says so and names the zoos near it, the readers fail with one line
    /// naming them, and the push that starts a zoo says it did.
    func testPrefixWithoutZooIsNamedNotReadAsEmpty() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let team = try server.remote(prefix: "zoos/team")
        let bucket = team.url.dropFirst("s3://".count).prefix { $0 != "/" }
        let path = dir.appendingPathComponent("z").path
        let file = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 43), to: dir.appendingPathComponent("z.h5"))
        XCTAssertEqual(try run(["import", file.path, "--zoo", path, "--name", "base"]).status, 0)
        func add(_ name: String, _ url: String) throws -> [Substring] {
            let added = try run(["remote", "add", name, url, "--endpoint", server.endpoint, "--zoo", path])
            XCTAssertEqual(added.status, 0, added.stderr)
            return added.stdout.split(separator: "\n")
        }
        // A new prefix: no zoo yet, none nearby. The first push starts one and says so.
        XCTAssertEqual(try add("team", team.url), ["added remote team \(team.url) at \(server.endpoint): it holds no bissl zoo yet; the first push starts one there"])
        let first = try run(["push", "base", "--remote", "team", "--zoo", path])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.hasPrefix("started a bissl zoo on remote team (\(team.url) held none)\npushed "), first.stdout)
        let again = try run(["push", "base", "--remote", "team", "--zoo", path])
        XCTAssertFalse(again.stdout.contains("started"), again.stdout)
        XCTAssertEqual(try add("good", team.url), ["added remote good \(team.url) at \(server.endpoint): a bissl zoo with 1 entry"])

        // A mistyped last component, and a prefix given too short: the zoo next to them is named.
        let warning = "warning: bissl zoos nearby: s3://\(bucket)/zoos/team; if remote %@ should be one of them, fix its URL (bissl remote remove %@, then bissl remote add)"
        for (name, url) in [("typo", "s3://\(bucket)/zoos/tema"), ("short", "s3://\(bucket)/zoos")] {
            XCTAssertEqual(try add(name, url), [Substring("added remote \(name) \(url) at \(server.endpoint): it holds no bissl zoo yet\(name == "short" ? " (it holds other keys)" : ""); the first push starts one there"),
                                                Substring(String(format: warning, name, name))])
        }
        // Every reader of the mistyped remote fails with one line; none reads it as an empty zoo.
        let id = try XCTUnwrap(server.store(team).entryIDs().first)
        for command in [["list", "--remote", "typo"], ["lineage", "base", "--remote", "typo"], ["pull", "base", "--remote", "typo"], ["gc", "--remote", "typo"]] {
            let r = try run(command + ["--zoo", path])
            XCTAssertEqual(r.status, 1, "\(command): \(r.stdout)")
            XCTAssertEqual(r.stderr, "error: remote typo (s3://\(bucket)/zoos/tema) holds no bissl zoo: there is no bissl-remote.json, so nothing was ever pushed there; bissl zoos nearby: s3://\(bucket)/zoos/team; check its URL (bissl remote list), or push an entry to start a zoo there\n", "\(command)")
        }
        XCTAssertTrue(try run(["list", "--remote", "good", "--zoo", path]).stdout.contains(String(id.prefix(12))))
    }

    /// Polls `done` every 50 ms until it holds, while `p` runs; fails when `p` ends first or 60 s pass.
    private func wait(for p: Process, _ what: String, _ done: () -> Bool) {
        let deadline = Date().addingTimeInterval(60)
        while !done() {
            guard p.isRunning, Date() < deadline else { return XCTFail("\(what): the process ended or 60 s passed first") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    private func files(_ dir: URL) -> [URL] {
        ((try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? []).sorted { $0.path < $1.path }
    }

    /// `bissl verify` on `zoo` after a killed transfer of `kind`: the record is reported once as a
    /// resumable transfer of that kind, never as a leftover, and does not fail the check.
    private func assertVerifyReportsResumable(_ zoo: String, _ kind: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let verified = try run(["verify", "--zoo", zoo, "--json"])
        XCTAssertEqual(verified.status, 0, verified.stderr, file: file, line: line)
        let report = try JSONDecoder().decode(VerifyOutput.self, from: Data(verified.stdout.utf8)).report
        XCTAssertEqual(report.findings.filter { $0.level == .leftover }, [], file: file, line: line)
        let transfers = report.findings.filter { $0.level == .transfer }
        XCTAssertEqual(transfers.count, 1, "\(report.findings)", file: file, line: line)
        XCTAssertTrue(transfers.first?.path?.hasSuffix(".\(kind)") ?? false, "\(transfers)", file: file, line: line)
        XCTAssertTrue(transfers.first?.message.contains("interrupted \(kind)") ?? false, "\(transfers)", file: file, line: line)
        let text = try run(["verify", "--zoo", zoo])
        XCTAssertTrue(text.stdout.contains("1 resumable transfer"), text.stdout, file: file, line: line)
        XCTAssertFalse(text.stdout.contains("bissl gc removes it"), text.stdout, file: file, line: line)
    }

    private struct VerifyOutput: Decodable { var report: VerifyReport }

    func testKilledPushAndPullResume() throws {
        let server = try SeaweedServer(self)
        let dir = try ZooTestSupport.tempDir(self)
        let remote = try server.remote()
        // 5 M float32 = 20 MB: three 8 MiB parts or ranges (the last one short) at 2 MB/s per connection.
        let (z, id) = try zoo(dir, "z", ZooTestSupport.checkpoint(seed: 41, extraFloats: 5_000_000), label: "big", remote: remote)
        let object = URL(fileURLWithPath: z).appendingPathComponent("objects/\(id.prefix(2))/\(id.dropFirst(2)).h5")
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: object.path)[.size] as? NSNumber).int64Value
        let tmp = URL(fileURLWithPath: z).appendingPathComponent("tmp")

        // Push killed once its record names a part the server acknowledged (the short third one).
        let (push, _) = try start(["push", "big", "--zoo", z, "--max-rate", "2M"], dir, "push")
        wait(for: push, "a part recorded") {
            files(tmp).contains { $0.path.hasSuffix(".push") && !(TransferRecords.read(UploadRecord.self, $0)?.parts.isEmpty ?? true) }
        }
        kill(push.processIdentifier, SIGKILL)
        push.waitUntilExit()
        try assertVerifyReportsResumable(z, "push")
        let store = try server.store(remote)
        XCTAssertEqual(try store.entryIDs(), [], "no manifest: the entry is not on the remote")
        let pushed = try run(["push", "big", "--zoo", z, "--json"])
        XCTAssertEqual(pushed.status, 0, pushed.stderr)
        let sent = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(pushed.stdout.utf8)) as? [String: Any])?["bytes"] as? Int)
        XCTAssertLessThan(Int64(sent), size, "the acknowledged parts are not sent again")
        XCTAssertEqual(try store.entryIDs(), [id])
        XCTAssertEqual(try store.pendingUploads().count, 0)
        XCTAssertEqual(files(tmp), [])

        // Pull into a new zoo killed once its record shows bytes on disk; the rerun fetches the rest.
        let fresh = dir.appendingPathComponent("fresh")
        XCTAssertEqual(try run(["remote", "add", "team", remote.url, "--endpoint", server.endpoint, "--zoo", fresh.path]).status, 0)
        let freshTmp = fresh.appendingPathComponent("tmp")
        let (pull, _) = try start(["pull", "big", "--zoo", fresh.path, "--max-rate", "2M"], dir, "pull")
        wait(for: pull, "bytes recorded") {
            files(freshTmp).contains { folder in
                (TransferRecords.read(DownloadRecord.self, folder.appendingPathComponent("record.json"))?.done.reduce(0, +) ?? 0) > 0
            }
        }
        kill(pull.processIdentifier, SIGKILL)
        pull.waitUntilExit()
        try assertVerifyReportsResumable(fresh.path, "pull")
        let record = try XCTUnwrap(files(freshTmp).compactMap { TransferRecords.read(DownloadRecord.self, $0.appendingPathComponent("record.json")) }.first)
        XCTAssertEqual(record.entry, id, "the record names the entry, so gc knows when it has arrived")
        // gc keeps it (within the grace period), so the rerun still resumes.
        let gc = try run(["gc", "--zoo", fresh.path])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("kept interrupted transfer"), gc.stdout)
        let listed = try run(["list", "--zoo", fresh.path])
        XCTAssertFalse(listed.stdout.contains(String(id.prefix(12))), "a killed pull lists nothing: \(listed.stdout)")
        let pulled = try run(["pull", "big", "--zoo", fresh.path, "--json"])
        XCTAssertEqual(pulled.status, 0, pulled.stderr)
        let received = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(pulled.stdout.utf8)) as? [String: Any])?["bytes"] as? Int)
        XCTAssertLessThan(Int64(received), size, "what the killed pull wrote is not fetched again")
        let copy = fresh.appendingPathComponent("objects/\(id.prefix(2))/\(id.dropFirst(2)).h5")
        XCTAssertEqual(try Data(contentsOf: copy), try Data(contentsOf: object))
        XCTAssertEqual(files(freshTmp), [])
        XCTAssertEqual(try run(["verify", "--zoo", fresh.path]).status, 0)
    }
}
