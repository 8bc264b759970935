import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The lock a writer holds on its temporary (a file, or a staging folder) for as long as the
/// temporary exists, and the test a cleaner makes before removing one it believes abandoned.
///
/// The lock is an open-file-description record lock over the whole file (`fcntl` with
/// `F_OFD_SETLK`, Linux 3.15; fcntl(2), "Open file description locks"). A pid names a process only
/// within one pid namespace on one host: a live writer in a container sharing the folder, or on
/// another NFS client, has a pid that looks dead here. A record lock is seen by every process that
/// opens the same file: containers sharing a volume see each other's, and NFS forwards record locks
/// to the server (NLM or NFSv4 locking). Record locks are independent of `flock(2)` locks, so HDF5's
/// own `flock` on a file it creates or opens never conflicts with the writer's lock (and a user's
/// `HDF5_USE_FILE_LOCKING=TRUE` works); they do conflict with POSIX record locks (`lockf`,
/// `F_SETLK`), which another program may use to hold a temporary. Unlike a POSIX record lock, an
/// open-file-description lock is not dropped when the process closes some other descriptor of the
/// same file (as `fsync`ing through a new descriptor, or HDF5 closing its own, does).
///
/// The writer holds a *read* lock (`F_RDLCK`), so readers of the published file are never refused
/// while the writer still holds it just after its rename; a cleaner's exclusive `F_WRLCK` fails
/// while any lock is held. A cleaner removes a temporary file only while holding that exclusive
/// lock (`removeIfUnlocked`), and a writer that has just created its temporary checks, once locked,
/// that the name still leads to the file it locked (a cleaner may have removed it between `open` and
/// the lock) and creates it again if not: no interleaving removes a live writer's temporary file.
/// A folder cannot be opened for writing, so no exclusive lock can be taken on it: a cleaner asks
/// whether any lock is held (`F_OFD_GETLK`) instead (`folderIsUnlocked`).
///
/// Where record locks are refused (a file system answering `ENOLCK`, `EOPNOTSUPP` or `EINVAL`) the
/// writer goes on without the lock and a cleaner, unable to take the exclusive lock there either,
/// keeps the temporary (`Removal.cannotLock`).
public final class TemporaryFileLock: @unchecked Sendable {
    private let lock = NSLock()
    private var fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { if fd >= 0 { close(fd) } }

    /// Releases the lock (closes the descriptor); later calls do nothing. Call it once the temporary
    /// was renamed into place or removed.
    public func release() {
        lock.lock()
        defer { lock.unlock() }
        if fd >= 0 { close(fd); fd = -1 }
    }

    /// True while this process holds the lock on the file (false when record locks were refused).
    public private(set) var isHeld = false

    /// Creates the empty file `url` (which must not exist; mode 0666 less the umask) and takes the
    /// writer's lock on it. The writer fills it through its path afterwards (`open` with `O_TRUNC`,
    /// `H5Fcreate` with `H5F_ACC_TRUNC`: the same file, still locked).
    /// - Parameter destination: the file finally written, named in errors.
    /// - Throws: `CheckpointError.io` naming `destination` when the file cannot be created.
    public static func createFile(_ url: URL, for destination: URL) throws -> TemporaryFileLock {
        try create(url, for: destination) {
            Foundation.open(url.path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        }
    }

    /// Creates the folder `url` (which must not exist; mode 0777 less the umask) and takes the
    /// writer's lock on it, as `createFile` does for a file.
    /// - Throws: `CheckpointError.io` naming `destination` when the folder cannot be created.
    public static func createFolder(_ url: URL, for destination: URL) throws -> TemporaryFileLock {
        try create(url, for: destination) {
            guard mkdir(url.path, 0o777) == 0 else { return -1 }
            return Foundation.open(url.path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
    }

    private static func create(_ url: URL, for destination: URL, _ make: () -> Int32) throws -> TemporaryFileLock {
        // A cleaner can remove the new file only between its creation and the lock, and only once
        // (the next creation is locked before the same cleaner looks again); 8 rounds is ample.
        for _ in 0..<8 {
            let fd = make()
            guard fd >= 0 else { throw CheckpointError.io(cannotWrite(destination, folder: url.deletingLastPathComponent(), errno: errno)) }
            let result = TemporaryFileLock(fd: fd)
            guard recordLock(fd, F_OFD_SETLKW_, type: F_RDLCK) == 0 else { return result }   // refused here: go on unlocked (see above)
            result.isHeld = true
            if sameFile(fd, url.path) { return result }
            result.release()   // a cleaner removed it before the lock: make it again
        }
        throw CheckpointError.io("cannot write \(destination.path): its temporary \(url.lastPathComponent) was removed by another process 8 times in a row")
    }

    /// `cannot write PATH: REASON` for a file to be created in `folder`: a missing folder in the
    /// project's wording (`no such folder DIR`, as `cannot read PATH: no such file`), else the
    /// system's message.
    static func cannotWrite(_ destination: URL, folder: URL, errno code: Int32) -> String {
        let folder = folder.path
        switch code {
        case ENOENT: return "cannot write \(destination.path): no such folder \(folder)"
        case ENOTDIR: return "cannot write \(destination.path): \(folder) is not a folder"
        default: return "cannot write \(destination.path): \(String(cString: strerror(code)))"
        }
    }

    /// True when `path` (not followed) is the file open as `fd`.
    private static func sameFile(_ fd: Int32, _ path: String) -> Bool {
        var open = stat(), named = stat()
        return fstat(fd, &open) == 0 && lstat(path, &named) == 0 && open.st_dev == named.st_dev && open.st_ino == named.st_ino
    }

    /// What `removeIfUnlocked` did.
    public enum Removal: Equatable, Sendable {
        /// `remove` ran while this process held the exclusive lock: no writer held the file.
        case removed
        /// Another open file holds a lock on it: a writer that still runs, in this pid namespace or
        /// another, on this host or another NFS client.
        case inUse
        /// It is gone, or it is not a regular file (no writer makes a folder, link, FIFO or device
        /// node by that name that this call would remove): nothing ran.
        case notARegularFile
        /// It could not be opened for writing or locked (a file of another user, a file system
        /// without record locks); the reason, the system's message.
        case cannotLock(String)
    }

    /// Runs `remove` (which removes `url`) while holding an exclusive lock on `url`, when `url` is a
    /// regular file (not followed) and no other open file holds a lock on it.
    /// - Returns: `.removed` when `remove` ran; else why not (a cleaner keeps what it cannot prove
    ///   abandoned).
    /// - Throws: what `remove` throws.
    @discardableResult
    public static func removeIfUnlocked(_ url: URL, _ remove: () throws -> Void) rethrows -> Removal {
        var info = stat()
        guard lstat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return .notARegularFile }
        let fd = Foundation.open(url.path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return .cannotLock(String(cString: strerror(errno))) }
        defer { close(fd) }
        guard recordLock(fd, F_OFD_SETLK_, type: F_WRLCK) == 0 else {
            return errno == EAGAIN || errno == EACCES ? .inUse : .cannotLock(String(cString: strerror(errno)))
        }
        guard sameFile(fd, url.path) else { return .notARegularFile }
        try remove()
        return .removed
    }

    /// True when another open file holds a lock on the regular file `url` (or it cannot be opened or
    /// locked to find out, or it is not a regular file), so a cleaner keeps it.
    public static func isLocked(_ url: URL) -> Bool {
        var info = stat()
        guard lstat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return true }
        let fd = Foundation.open(url.path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        return recordLock(fd, F_OFD_SETLK_, type: F_WRLCK) != 0
    }

    /// True when no open file holds a lock on the folder `url` (not followed; `F_OFD_GETLK` finds no
    /// conflicting lock), false when one does, nil when it cannot be opened or asked. A question, not a lock: a writer of another pid
    /// namespace that created the folder but has not locked it yet is not seen, so a cleaner removes
    /// from a folder only the files it can lock itself, and the folder only once it is empty.
    public static func folderIsUnlocked(_ url: URL) -> Bool? {
        let fd = Foundation.open(url.path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var query = Glibc.flock()
        query.l_type = Int16(F_WRLCK)
        query.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, F_OFD_GETLK_, &query) == 0 else { return nil }
        return query.l_type == Int16(F_UNLCK)
    }

    // Linux's open-file-description lock commands (fcntl.h with _GNU_SOURCE; not in Glibc's Swift module).
    private static let F_OFD_GETLK_: Int32 = 36
    private static let F_OFD_SETLK_: Int32 = 37
    private static let F_OFD_SETLKW_: Int32 = 38

    /// `fcntl(fd, command, {type, whole file})`, retried on `EINTR`; 0 or -1 with `errno` set.
    private static func recordLock(_ fd: Int32, _ command: Int32, type: Int32) -> Int32 {
        var request = Glibc.flock()
        request.l_type = Int16(type)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = 0
        request.l_len = 0   // to the end, however the file grows
        var r: Int32
        repeat { r = fcntl(fd, command, &request) } while r != 0 && errno == EINTR
        return r
    }
}
