import Foundation
import XCTest
@testable import Checkpoint
import TestSupport

/// Writers hold a lock on their temporaries, and the cleaner of abandoned temporaries removes only
/// those it can lock: the pid in a name says nothing about a writer in another pid namespace (a
/// container sharing the folder) or on another NFS client.
final class TemporaryFileLockTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = try Fixtures.scratch()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// True when another open file holds a lock on `url` (an exclusive non-blocking lock fails).
    private func lockedElsewhere(_ url: URL) -> Bool {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK
    }

    private var names: Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []) }

    func testATemporaryLockedByAnotherProcessIsKeptThoughThePidInItsNameIsDead() throws {
        let dead = try LockHolder.endedPID()
        let file = dir.appendingPathComponent(".o.h5.tmp-\(dead)-1")
        try Data(count: 100).write(to: file)
        let folder = dir.appendingPathComponent(".o.h5.tmp-\(dead)-2")   // a Hub folder's staging folder
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        let zip = dir.appendingPathComponent(".o.h5.zip-\(dead)-3")
        try Data(count: 100).write(to: zip)
        let abandoned = dir.appendingPathComponent(".o.h5.tmp-\(dead)-4")
        try Data(count: 100).write(to: abandoned)
        let holders = try [file, folder, zip].map { try LockHolder($0) }

        let removed = TemporaryFiles.removeAbandoned(for: dir.appendingPathComponent("o.h5"))
        XCTAssertEqual(removed.map(\.path), [abandoned.path], "only the unlocked one goes")
        XCTAssertEqual(names, [file.lastPathComponent, folder.lastPathComponent, zip.lastPathComponent])

        // Once the writer is gone (its lock with it), the temporaries are abandoned.
        holders.forEach { $0.stop() }
        XCTAssertEqual(Set(TemporaryFiles.removeAbandoned(for: dir.appendingPathComponent("o.h5")).map(\.path)),
                       [file.path, folder.path, zip.path])
        XCTAssertEqual(names, [])
    }

    func testAtomicFileHoldsALockOnItsTemporaryWhileItIsWritten() throws {
        let out = dir.appendingPathComponent("a.bin")
        var seen: [Bool] = []
        try AtomicFile.write(to: out) { tmp in
            seen.append(FileManager.default.fileExists(atPath: tmp.path) && lockedElsewhere(tmp))
            let handle = try AtomicFile.create(tmp, for: out)   // O_TRUNC: the same file, still locked
            try handle.write(contentsOf: Data([1, 2, 3]))
            try handle.close()
            seen.append(lockedElsewhere(tmp))
            XCTAssertEqual(TemporaryFiles.removeAbandoned(for: out), [])
        }
        XCTAssertEqual(seen, [true, true])
        XCTAssertEqual(try Data(contentsOf: out), Data([1, 2, 3]))
        XCTAssertFalse(lockedElsewhere(out), "released once published")
        XCTAssertEqual(names, ["a.bin"])
    }

    func testAnHDF5CheckpointIsWrittenIntoTheLockedTemporary() throws {
        // HDF5 takes its own flock on files it creates, which would conflict with the writer's lock.
        let out = dir.appendingPathComponent("c.h5")
        let checkpoint = Checkpoint(components: ["backbone": ["w": Tensor(float32: [1, 2, 3, 4], shape: [2, 2])]],
                                    architecture: nil, provenance: Provenance(stage: "pretext", method: "simclr"))
        try CheckpointFile.write(checkpoint, to: out)
        XCTAssertEqual(try CheckpointFile.read(out).components, checkpoint.components)

        let staged = dir.appendingPathComponent(".staged.h5.tmp-1-1")
        let (_, lock) = try CheckpointFile.writeStaged(checkpoint, to: staged)
        XCTAssertTrue(lockedElsewhere(staged), "a staged file stays locked until its caller places it")
        XCTAssertEqual(try CheckpointFile.read(staged).components, checkpoint.components, "readers are not refused")
        lock.release()
        XCTAssertFalse(lockedElsewhere(staged))
    }

    func testTheZipWritersTemporaryIsLockedUntilFinished() throws {
        let out = dir.appendingPathComponent("z.npz")
        var writer = ZipWriter(url: out)
        _ = try writer.add(name: "a.npy", data: Data(count: 10))
        let temporaries = names.filter { $0.hasPrefix(".z.npz.zip-") }
        XCTAssertEqual(temporaries.count, 1)
        XCTAssertTrue(lockedElsewhere(dir.appendingPathComponent(temporaries.first!)))
        try writer.finish()
        XCTAssertEqual(names, ["z.npz"])
        XCTAssertFalse(lockedElsewhere(out))
    }

    func testACleanerRemovesNothingItCannotLockAndAWriterMakesItsTemporaryAgainIfItWasRemoved() throws {
        let file = dir.appendingPathComponent("t")
        let lock = try TemporaryFileLock.createFile(file, for: file)
        XCTAssertTrue(lock.isHeld)
        XCTAssertFalse(TemporaryFileLock.removeIfUnlocked(file) { XCTFail("must not run") })
        XCTAssertTrue(TemporaryFileLock.isLocked(file))
        lock.release()
        XCTAssertFalse(TemporaryFileLock.isLocked(file))
        XCTAssertTrue(TemporaryFileLock.removeIfUnlocked(file) { _ = unlink(file.path) })
        XCTAssertEqual(names, [])
        let nowhere = dir.appendingPathComponent("missing/t")
        XCTAssertThrowsError(try TemporaryFileLock.createFile(nowhere, for: nowhere)) {
            XCTAssertEqual("\($0)", "cannot write \(nowhere.path): no such folder \(self.dir.path)/missing")
        }
    }
}
