import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// A convert or export killed with SIGKILL (no handler runs) leaves its hidden temporary beside the
/// output; the next write of the same output removes it when its writer is gone, and nothing else.
final class AbandonedTemporaryTests: CLITestCase {
    /// A pid no process has: a child that ran and was reaped (pids are not reused within the test).
    private func endedPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    private func file(_ name: String, bytes: Int = 1000) throws -> URL {
        let url = tmp.appendingPathComponent(name)
        try Data(repeating: 7, count: bytes).write(to: url)
        return url
    }

    private var names: Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: tmp.path)) ?? []) }

    func testTheNextConvertRemovesTheTemporariesOfKilledWritesOfItsOutputOnly() throws {
        let input = tmp.appendingPathComponent("in.h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: input)
        let dead = try endedPID(), alive = getpid()   // this test process runs while bissl does
        let killedH5 = try file(".o.h5.tmp-\(dead)-123", bytes: 4096)
        let killedNPZ = try file(".o.npz.zip-\(dead)-77")
        // A folder so named is not a temporary of a file output: kept with what it holds, and named.
        let folder = tmp.appendingPathComponent(".o.h5.tmp-\(dead)-9")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        try Data(count: 10).write(to: folder.appendingPathComponent("model.safetensors"))
        // Named with a live pid (this test process's) but locked by no one: abandoned all the same
        // (pids are reused; a container's killed writer was often pid 1, which always runs).
        let livePID = try file(".o.h5.tmp-\(alive)-456")
        // A running writer's (it holds its lock).
        let running = try file(".o.h5.tmp-\(alive)-457")
        let holder = try LockHolder(running)
        defer { holder.stop() }
        let kept = [
            running,
            try file(".other.h5.tmp-\(dead)-1"),         // another destination's
            try file(".o.h5.tmp-\(dead)-1.bak"),         // not our naming
            try file("o.h5.tmp-\(dead)-1"),              // not hidden: not ours
            try file(".o.h5.tmp-\(dead)"),               // no random part
        ]

        let r = try Fixtures.runBissl(["convert", input.path, tmp.appendingPathComponent("o.h5").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: killedH5.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: livePID.path), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("model.safetensors").path))
        XCTAssertTrue(r.stdout.contains("note: removed \(killedH5.path) (4.1 KB), left by an earlier write of this output that did not finish: no process holds its lock"), r.stdout)
        XCTAssertTrue(r.stdout.contains("note: kept \(folder.path), named like a temporary of this output: it is a folder, and no writer of this output makes one; remove it yourself if it is not needed"), r.stdout)
        for url in kept + [killedNPZ] { XCTAssertTrue(names.contains(url.lastPathComponent), "\(url.lastPathComponent) must stay") }

        // The ZIP writer's temporary goes with the next .npz write of that name.
        let npz = try Fixtures.runBissl(["convert", input.path, tmp.appendingPathComponent("o.npz").path])
        XCTAssertEqual(npz.status, 0, npz.stderr)
        XCTAssertFalse(names.contains(killedNPZ.lastPathComponent), npz.stdout)
        for url in kept { XCTAssertTrue(names.contains(url.lastPathComponent), "\(url.lastPathComponent) must stay") }
    }

    func testConvertKeepsATemporaryAnotherProcessHoldsALockOnThoughThePidInItsNameIsDead() throws {
        // A writer in a container sharing the folder (another pid namespace) or on another NFS client.
        let input = tmp.appendingPathComponent("in.h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: input)
        let writing = try file(".o.h5.tmp-\(try endedPID())-5")
        let holder = try LockHolder(writing)
        let r = try Fixtures.runBissl(["convert", input.path, tmp.appendingPathComponent("o.h5").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(names.contains(writing.lastPathComponent), r.stdout)
        XCTAssertFalse(r.stdout.contains("note: removed"), r.stdout)
        holder.stop()
    }

    /// HDF5's own lock (a `flock`), forced on by the environment, and the writer's record lock on its
    /// temporary do not conflict: convert and import work as without it.
    func testConvertAndImportWorkWithHDF5FileLockingForcedOn() throws {
        let input = tmp.appendingPathComponent("in.h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: input)
        var environment = ProcessInfo.processInfo.environment
        environment["HDF5_USE_FILE_LOCKING"] = "TRUE"
        let output = tmp.appendingPathComponent("o.h5").path
        let convert = try BisslBinary.run(["convert", input.path, output], environment: environment)
        XCTAssertEqual(convert.status, 0, convert.stderr)
        let imported = try BisslBinary.run(["import", output, "--zoo", zooDir.path], environment: environment)
        XCTAssertEqual(imported.status, 0, imported.stderr)
    }

    /// An output that is a symbolic link to the input (or the reverse) is the same file: convert would
    /// replace its own input.
    func testConvertRefusesAnOutputThatIsTheInputThroughASymbolicLink() throws {
        let input = tmp.appendingPathComponent("in.h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: input)
        let before = try Data(contentsOf: input)
        let link = tmp.appendingPathComponent("link.pth")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: input.path)
        for (from, to) in [(input.path, link.path), (link.path, input.path)] {
            let r = try Fixtures.runBissl(["convert", from, to])
            XCTAssertNotEqual(r.status, 0, r.stdout)
            XCTAssertTrue(r.stderr.contains("input and output are the same file"), r.stderr)
        }
        XCTAssertEqual(try Data(contentsOf: input), before)
    }

    func testExportRemovesTheTemporaryOfAKilledExportOfTheSameFile() throws {
        let z = try Zoo.open(ZooLayout(root: zooDir), create: true)
        _ = try z.add(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), name: "e")
        try z.close()
        let killed = try file(".e.pth.zip-\(try endedPID())-5")
        let r = try bissl(["export", "e", "-o", tmp.appendingPathComponent("e.pth").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(names.contains(killed.lastPathComponent), r.stdout)
        XCTAssertTrue(names.contains("e.pth"))
    }
}
