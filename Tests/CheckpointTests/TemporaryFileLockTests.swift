import Foundation
#if canImport(Glibc)
import Glibc
#endif
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

    /// True when another open file holds a record lock on `url` (an exclusive non-blocking
    /// open-file-description lock fails: fcntl(2), F_OFD_SETLK = 37).
    private func lockedElsewhere(_ url: URL) -> Bool {
        let fd = open(url.path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var request = Glibc.flock()
        request.l_type = Int16(F_WRLCK)
        request.l_whence = Int16(SEEK_SET)
        return fcntl(fd, 37, &request) != 0 && (errno == EAGAIN || errno == EACCES)
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

        let hub: Set<String> = ["model.safetensors"]
        let removed = TemporaryFiles.removeAbandoned(for: dir.appendingPathComponent("o.h5"), stagingFiles: hub)
        XCTAssertEqual(removed.removed.map(\.path), [abandoned.path], "only the unlocked one goes")
        XCTAssertEqual(removed.kept, [], "a locked temporary is in use, not reported")
        XCTAssertEqual(names, [file.lastPathComponent, folder.lastPathComponent, zip.lastPathComponent])

        // Once the writer is gone (its lock with it), the temporaries are abandoned.
        holders.forEach { $0.stop() }
        XCTAssertEqual(Set(TemporaryFiles.removeAbandoned(for: dir.appendingPathComponent("o.h5"), stagingFiles: hub).removed.map(\.path)),
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
            XCTAssertEqual(TemporaryFiles.removeAbandoned(for: out).removed, [])
        }
        XCTAssertEqual(seen, [true, true])
        XCTAssertEqual(try Data(contentsOf: out), Data([1, 2, 3]))
        XCTAssertFalse(lockedElsewhere(out), "released once published")
        XCTAssertEqual(names, ["a.bin"])
    }

    /// A folder made at the output path after the caller's check (convert checks first) gave the
    /// rename's raw "Is a directory": it is named as the check names one, and kept with what it holds.
    func testAFolderMadeAtTheOutputWhileItIsWrittenIsNamedAndKept() throws {
        let out = dir.appendingPathComponent("c.h5")
        for holding in [false, true] {
            XCTAssertThrowsError(try AtomicFile.write(to: out) { tmp in
                let handle = try AtomicFile.create(tmp, for: out)
                try handle.write(contentsOf: Data("checkpoint".utf8))
                try handle.close()
                try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
                if holding { try Data("mine".utf8).write(to: out.appendingPathComponent("notes.txt")) }
            }) { error in
                XCTAssertEqual("\(error)", "cannot write \(out.path): it is a folder")
            }
            XCTAssertEqual(names, ["c.h5"], "no temporary left")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), holding ? ["notes.txt"] : [])
            try FileManager.default.removeItem(at: out)
        }
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
        XCTAssertEqual(TemporaryFileLock.removeIfUnlocked(file) { XCTFail("must not run") }, .inUse)
        XCTAssertTrue(TemporaryFileLock.isLocked(file))
        lock.release()
        XCTAssertFalse(TemporaryFileLock.isLocked(file))
        XCTAssertEqual(TemporaryFileLock.removeIfUnlocked(file) { _ = unlink(file.path) }, .removed)
        XCTAssertEqual(names, [])
        let nowhere = dir.appendingPathComponent("missing/t")
        XCTAssertThrowsError(try TemporaryFileLock.createFile(nowhere, for: nowhere)) {
            XCTAssertEqual("\($0)", "cannot write \(nowhere.path): no such folder \(self.dir.path)/missing")
        }
    }

    /// HDF5 takes a `flock` on the files it creates and opens (unless HDF5_USE_FILE_LOCKING says
    /// not to): the writer's record lock must not conflict with it, whoever takes which first.
    func testAFlockOnATemporaryAndItsWritersLockDoNotConflict() throws {
        let file = dir.appendingPathComponent("t")
        let lock = try TemporaryFileLock.createFile(file, for: file)
        defer { lock.release() }
        XCTAssertTrue(lock.isHeld)
        let fd = open(file.path, O_RDWR | O_CLOEXEC)
        defer { close(fd) }
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0, "HDF5's exclusive flock is granted while the writer holds its lock")
        XCTAssertTrue(lockedElsewhere(file), "and the writer's lock still keeps cleaners off")
        XCTAssertEqual(TemporaryFileLock.removeIfUnlocked(file) { XCTFail("must not run") }, .inUse)
    }

    /// A folder or a symbolic link named like a temporary of the destination is the user's unless it
    /// holds only what a staging folder of that destination holds: kept and reported, never emptied.
    func testAFolderNamedLikeATemporaryIsKeptWithWhatItHoldsUnlessItIsAStagingFolder() throws {
        let dead = try LockHolder.endedPID()
        let users = dir.appendingPathComponent(".out.h5.tmp-\(dead)-1")
        try FileManager.default.createDirectory(at: users, withIntermediateDirectories: false)
        try Data("mine".utf8).write(to: users.appendingPathComponent("notes.txt"))
        try Data(count: 10).write(to: users.appendingPathComponent("model.safetensors"))
        let link = dir.appendingPathComponent(".out.h5.tmp-\(dead)-2")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: users.path)

        let out = dir.appendingPathComponent("out.h5")
        var result = TemporaryFiles.removeAbandoned(for: out)
        XCTAssertEqual(result.removed, [])
        XCTAssertEqual(result.kept, [.init(path: users.path, reason: "it is a folder, and no writer of this output makes one"),
                                     .init(path: link.path, reason: "it is a symbolic link, which no writer makes")])
        result = TemporaryFiles.removeAbandoned(for: out, stagingFiles: ["model.safetensors"])
        XCTAssertEqual(result.removed, [])
        XCTAssertEqual(result.kept.first, .init(path: users.path, reason: "it is a folder holding notes.txt, which no writer puts there"))
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: users.path)), ["notes.txt", "model.safetensors"])

        // What a killed export leaves: its staging folder with the files it writes (one half-written).
        let staging = dir.appendingPathComponent(".hub.tmp-\(dead)-3")
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: false)
        try Data(count: 5000).write(to: staging.appendingPathComponent("model.safetensors"))
        try Data(count: 10).write(to: staging.appendingPathComponent(".config.json.tmp-\(dead)-4"))
        result = TemporaryFiles.removeAbandoned(for: dir.appendingPathComponent("hub"), stagingFiles: ["model.safetensors", "config.json"])
        XCTAssertEqual(result.removed.map(\.path), [staging.path])
        XCTAssertEqual(result.kept, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: staging.path))
    }

    /// An output name of up to NAME_MAX (255) bytes: its temporary's name is shortened (the name cut,
    /// with a hash of it) so that it fits, and the cleaner still recognises it.
    func testAnOutputNameOf255BytesIsWrittenThroughAShortenedTemporary() throws {
        for name in [String(repeating: "n", count: 251) + ".npz", String(repeating: "é", count: 125) + "ab.h5"] {
            XCTAssertEqual(name.utf8.count, 255)
            let out = dir.appendingPathComponent(name)
            var temporary = ""
            try AtomicFile.write(to: out) { tmp in
                temporary = tmp.lastPathComponent
                try Data([1]).write(to: tmp)
            }
            XCTAssertEqual(try Data(contentsOf: out), Data([1]))
            XCTAssertLessThanOrEqual(temporary.utf8.count, 255)
            XCTAssertEqual(TemporaryFiles.writerPID(in: temporary, destination: name), getpid())
            XCTAssertNil(TemporaryFiles.writerPID(in: temporary, destination: String(name.dropLast()) + "x"), "another long name has another stem")
            var zip = ZipWriter(url: out)
            _ = try zip.add(name: "a.npy", data: Data(count: 10))
            try zip.finish()
            XCTAssertEqual(names.filter { $0.hasPrefix(".") }, [])
            try FileManager.default.removeItem(at: out)
        }
        let longest = TemporaryFiles.temporaryName(for: String(repeating: "x", count: 255), kind: "zip")
        XCTAssertLessThanOrEqual(longest.utf8.count, 255)
        XCTAssertEqual(TemporaryFiles.stem("short.h5"), "short.h5", "names that fit are kept whole")
    }
}
