import Foundation

/// The `flock(2)` a writer holds on its temporary (a file, or a staging folder) for as long as the
/// temporary exists, and the test a cleaner makes before removing one it believes abandoned.
///
/// A pid names a process only within one pid namespace on one host: a live writer in a container
/// sharing the folder, or on another NFS client, has a pid that looks dead here. A lock is seen by
/// every process that opens the same file: Linux keeps `flock` locks with the open file, so
/// containers sharing a volume see each other's, and the NFS client emulates `flock` with
/// whole-file byte-range locks the server arbitrates (flock(2), "NFS details").
///
/// The writer holds a *shared* lock (`LOCK_SH`) so that readers of the published file are not
/// refused while the writer still holds it just after its rename (HDF5's `H5Fopen` takes `LOCK_SH`
/// itself); a cleaner's exclusive `LOCK_EX | LOCK_NB` fails while any lock is held. A cleaner
/// removes a temporary only while holding that exclusive lock (`removeIfUnlocked`), and a writer
/// that has just created its temporary checks, once locked, that the name still leads to the file
/// it locked (a cleaner may have removed it between `open` and `flock`) and creates it again if
/// not: no interleaving removes a live writer's temporary.
///
/// Where `flock` is refused (a file system answering `ENOLCK` or `EOPNOTSUPP`; an exclusive lock on
/// a folder over NFS, which needs a descriptor open for writing) the writer goes on without the lock
/// and a cleaner, unable to take the exclusive lock there either, keeps the temporary.
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

    /// True while this process holds the lock on the file (false when `flock` was refused).
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
            var r: Int32
            repeat { r = flock(fd, LOCK_SH) } while r != 0 && errno == EINTR
            guard r == 0 else { return result }   // flock refused here: go on unlocked (see above)
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

    /// Runs `remove` (which removes `url`) while holding an exclusive lock on `url`, when no other
    /// open file holds a lock on it (`LOCK_EX | LOCK_NB` succeeds): a writer that still runs, in
    /// this pid namespace or another, on this host or another NFS client, holds one. Only regular
    /// files and folders are opened to be locked: no writer makes a symbolic link (never followed),
    /// a FIFO or a device node, so `remove` runs for those without a lock.
    /// - Returns: false, without calling `remove`, when `url` is locked, is gone, or cannot be opened
    ///   or locked (a file of another user this process may not open, a folder over NFS): a cleaner
    ///   keeps what it cannot prove abandoned.
    /// - Throws: what `remove` throws.
    @discardableResult
    public static func removeIfUnlocked(_ url: URL, _ remove: () throws -> Void) rethrows -> Bool {
        var info = stat()
        guard lstat(url.path, &info) == 0 else { return false }
        let type = info.st_mode & S_IFMT
        if type != S_IFREG && type != S_IFDIR {
            try remove()
            return true
        }
        let fd = exclusivelyLocked(url.path, isFolder: type == S_IFDIR)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard sameFile(fd, url.path) else { return false }
        try remove()
        return true
    }

    /// True when another open file holds a lock on `url` (or it cannot be opened to find out), so a
    /// cleaner keeps it; false for a missing file and what is neither a regular file nor a folder.
    public static func isLocked(_ url: URL) -> Bool {
        var info = stat()
        guard lstat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG || info.st_mode & S_IFMT == S_IFDIR else { return false }
        let fd = exclusivelyLocked(url.path, isFolder: info.st_mode & S_IFMT == S_IFDIR)
        guard fd >= 0 else { return true }
        close(fd)
        return false
    }

    /// A descriptor of `path` holding `LOCK_EX`, or -1. Opened for writing when permitted (an
    /// exclusive lock over NFS needs it), else for reading; never through a symbolic link, never
    /// blocking on a FIFO.
    private static func exclusivelyLocked(_ path: String, isFolder: Bool) -> Int32 {
        let flags = O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        var fd = isFolder ? -1 : Foundation.open(path, O_RDWR | flags)
        if fd < 0 { fd = Foundation.open(path, O_RDONLY | flags) }
        guard fd >= 0 else { return -1 }
        var r: Int32
        repeat { r = flock(fd, LOCK_EX | LOCK_NB) } while r != 0 && errno == EINTR
        guard r == 0 else { close(fd); return -1 }
        return fd
    }
}
