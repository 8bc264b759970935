import Foundation

/// Writes a file so that a crash never leaves a half-written one: the content goes to a temporary
/// name in the same folder (`.<name>.tmp-<pid>-<random>`, the name shortened when that would pass
/// `NAME_MAX`: `TemporaryFiles.temporaryName`), is flushed with `fsync` (unless the
/// caller asks for no durability), then renamed over the destination. On any error the temporary
/// file is removed and nothing else changes; while it exists the temporary is registered with
/// `TemporaryFiles`, so SIGINT/SIGTERM removes it too, and locked (`TemporaryFileLock`), so no
/// cleaner of abandoned temporaries removes it, whichever pid namespace or host it runs in.
/// Concurrent writers of one destination each have their own temporary (the random part), so the
/// last rename wins with a whole file.
public enum AtomicFile {
    /// Calls `body` with the temporary path to fill, then publishes it at `url`. The temporary exists
    /// (empty, locked) when `body` runs: `body` fills it through its path (`open` with `O_TRUNC`,
    /// `H5Fcreate` with `H5F_ACC_TRUNC`), or renames a file of its own over it, locked the same way.
    /// - Parameter durable: true (the default) flushes the file before the rename and its folder
    ///   after it, so the new content survives a power loss once this returns; false skips both
    ///   flushes: the rename is still atomic (readers see the old file or the new one, whole), but
    ///   after a power loss the destination may hold the old content or be empty. For hints that
    ///   their reader checks (a transfer's resume record), where an `fsync` per save costs more
    ///   than the hint is worth.
    /// - Throws: whatever `body` throws, or `CheckpointError.io` when flushing or renaming fails
    ///   (`cannot write PATH: it is a folder` when a folder is at `url` by then).
    ///
    /// When `url` is a symbolic link (possibly to a file not yet existing), the link's target is
    /// written and the link stays, as `open(2)` with `O_TRUNC` would do, instead of replacing the
    /// link by a regular file: the temporary goes next to the target and is renamed over it.
    public static func write(to requested: URL, durable: Bool = true, _ body: (URL) throws -> Void) throws {
        let url = try finalTarget(of: requested)
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(TemporaryFiles.temporaryName(for: url.lastPathComponent))
        let token = TemporaryFiles.register(tmp.path)
        defer { TemporaryFiles.unregister(token) }
        let lock = try TemporaryFileLock.createFile(tmp, for: url)
        defer { lock.release() }   // after the rename: the published file is no temporary any more
        do {
            try body(tmp)
            if durable { try fsyncFile(tmp) }
            guard rename(tmp.path, url.path) == 0 else {
                // A folder made at the output path since the caller checked it (rename(2): EISDIR)
                // is named as the callers' check names one (`cannot write PATH: it is a folder`).
                throw CheckpointError.io("cannot write \(url.path): \(errno == EISDIR ? "it is a folder" : String(cString: strerror(errno)))")
            }
            if durable { fsyncDirectory(dir) }
        } catch {
            unlink(tmp.path)
            throw error
        }
    }

    /// Creates `url` (which must not exist yet, empty and locked as in `write(to:durable:_:)`), calls
    /// `body` to fill it, then flushes it with `fsync`; no rename, no folder flush: for a file its
    /// caller publishes by renaming it (the zoo's staged imports). On any error the file is removed;
    /// while `body` runs it is registered with `TemporaryFiles`, so SIGINT/SIGTERM removes it too.
    /// - Returns: the file's lock: the caller keeps it until the file is renamed into place or
    ///   removed, then releases it (a cleaner of abandoned temporaries keeps the file until then).
    /// - Throws: whatever `body` throws, or `CheckpointError.io` when creating or flushing fails.
    public static func writeInPlace(to url: URL, _ body: () throws -> Void) throws -> TemporaryFileLock {
        let token = TemporaryFiles.register(url.path)
        defer { TemporaryFiles.unregister(token) }
        let lock = try TemporaryFileLock.createFile(url, for: url)
        do {
            try body()
            try fsyncFile(url)
        } catch {
            unlink(url.path)
            lock.release()
            throw error
        }
        return lock
    }

    /// Writes `data` atomically to `url` (`durable` as in `write(to:durable:_:)`).
    public static func write(_ data: Data, to url: URL, durable: Bool = true) throws {
        try write(to: url, durable: durable) { tmp in
            let handle = try create(tmp, for: url)
            do {
                try handle.write(contentsOf: data)
                try handle.close()
            } catch {
                throw CheckpointError.io("cannot write \(url.path): \(reason(error))")
            }
        }
    }

    /// The operating system's message for a failed file operation (`strerror` of the POSIX error
    /// Foundation wraps, e.g. "No space left on device"), else Foundation's description.
    public static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return ns.localizedDescription
    }

    /// Creates the empty file `tmp` (mode 0666 less the umask) and opens it for writing, in place.
    /// Writers use this instead of `FileManager.createFile`, which on Linux writes through a hidden
    /// `.dat.nosync…` file of its own that no cleanup knows about.
    /// - Throws: `CheckpointError.io` naming `destination` when the file cannot be created.
    public static func create(_ tmp: URL, for destination: URL) throws -> FileHandle {
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
        guard fd >= 0 else {
            throw CheckpointError.io("cannot write \(destination.path): \(String(cString: strerror(errno)))")
        }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    /// `url` with symbolic links in its last component followed (relative targets resolved against
    /// the link's folder), up to 40 links as Linux's `MAXSYMLINKS`.
    /// - Throws: `CheckpointError.io` for a link loop or an unreadable link.
    static func finalTarget(of url: URL) throws -> URL {
        var current = url
        for _ in 0..<40 {
            var info = stat()
            guard lstat(current.path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current.path, &buffer, Int(PATH_MAX))
            guard n > 0 else {
                throw CheckpointError.io("cannot write \(url.path): cannot read the symbolic link \(current.path): \(String(cString: strerror(errno)))")
            }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            current = target.hasPrefix("/") ? URL(fileURLWithPath: target)
                : current.deletingLastPathComponent().appendingPathComponent(target)
        }
        throw CheckpointError.io("cannot write \(url.path): too many levels of symbolic links")
    }

    private static func fsyncFile(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw CheckpointError.io("cannot open \(url.path) to flush it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw CheckpointError.io("cannot flush \(url.path): \(String(cString: strerror(errno)))") }
    }

    private static func fsyncDirectory(_ url: URL) {
        let fd = open(url.path, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}
