import Foundation

/// The temporary files writers have open right now, removed when the process is stopped by SIGINT
/// or SIGTERM (Ctrl-C, `kill`), so an interrupted write leaves no hidden `.<name>.tmp-…` next to
/// its output.
///
/// Every writer's temporary goes through here: `AtomicFile` registers its temporary name, the ZIP
/// writer (`.pth`, `.npz`) its streamed archive. The first registration installs one handler for
/// SIGINT and SIGTERM (unless the signal was ignored when the process started, as under `nohup`).
/// The handler is async-signal-safe (POSIX.1-2017 2.4.3): it only reads a fixed-size table
/// allocated before installation, calls `unlink` on each registered path, restores the default
/// disposition with `signal` and re-raises with `raise`, so the process still ends "killed by
/// SIGINT" (exit status 130 in a shell) as without the handler.
///
/// At most `capacity` paths (each shorter than `PATH_MAX`) are tracked at once; a path beyond that
/// is simply not tracked (the write itself works as before).
public enum TemporaryFiles {
    /// Number of temporaries tracked at the same time.
    public static let capacity = 64
    static let slotSize = Int(PATH_MAX)

    /// A registered path; pass it to `unregister` once the file is renamed or removed.
    public struct Token: Sendable {
        fileprivate let slot: Int
    }

    /// Tracks `path` until `unregister`; returns nil when the table is full or the path too long.
    public static func register(_ path: String) -> Token? {
        let bytes = Array(path.utf8)
        guard bytes.count < slotSize, !bytes.contains(0) else { return nil }
        let table = Table.shared
        table.lock.lock()
        defer { table.lock.unlock() }
        guard let slot = (0..<capacity).first(where: { table.used[$0] == 0 }) else { return nil }
        let buffer = table.paths + slot * slotSize
        bytes.withUnsafeBufferPointer { source in
            buffer.withMemoryRebound(to: UInt8.self, capacity: slotSize) { target in
                target.update(from: source.baseAddress!, count: source.count)
                target[source.count] = 0
            }
        }
        table.used[slot] = 1   // published only once the path is complete
        return Token(slot: slot)
    }

    /// Stops tracking a path (after it was renamed into place or removed).
    public static func unregister(_ token: Token?) {
        guard let token else { return }
        let table = Table.shared
        table.lock.lock()
        table.used[token.slot] = 0
        table.lock.unlock()
    }

    /// Installs the SIGINT/SIGTERM handler now rather than at the first registration. A component that
    /// takes the signals over for itself (`StopRequest`: stop at the next step boundary) calls this
    /// BEFORE installing its own disposition, so that a later first write does not replace it; that
    /// component then calls `removeAll()` itself before it ends the process.
    public static func installHandlerNow() { _ = Table.shared }

    /// Removes every tracked temporary now (for a process about to exit on a signal it handled itself).
    public static func removeAll() {
        let table = Table.shared
        table.lock.lock()
        defer { table.lock.unlock() }
        for slot in 0..<capacity where table.used[slot] != 0 {
            unlink(table.paths + slot * slotSize)
            table.used[slot] = 0
        }
    }

    /// The paths tracked now (for tests).
    static var registered: [String] {
        let table = Table.shared
        table.lock.lock()
        defer { table.lock.unlock() }
        return (0..<capacity).filter { table.used[$0] != 0 }.map { String(cString: table.paths + $0 * slotSize) }
    }

    /// The fixed table, allocated once, and the signal handlers installed right after it exists.
    private final class Table: @unchecked Sendable {
        let paths: UnsafeMutablePointer<CChar>
        let used: UnsafeMutablePointer<sig_atomic_t>
        let lock = NSLock()

        static let shared: Table = {
            let table = Table()
            handlerPaths = table.paths
            handlerUsed = table.used
            for sig in [SIGINT, SIGTERM] {
                let previous = signal(sig, removeAndReraise)
                // Keep an inherited "ignore" (SIG_IGN is the handler value 1).
                if let previous, unsafeBitCast(previous, to: Int.self) == 1 { signal(sig, previous) }
            }
            return table
        }()

        private init() {
            paths = .allocate(capacity: TemporaryFiles.capacity * TemporaryFiles.slotSize)
            paths.initialize(repeating: 0, count: TemporaryFiles.capacity * TemporaryFiles.slotSize)
            used = .allocate(capacity: TemporaryFiles.capacity)
            used.initialize(repeating: 0, count: TemporaryFiles.capacity)
        }
    }
}

// Raw pointers read by the signal handler (set once, before the handler is installed).
nonisolated(unsafe) private var handlerPaths: UnsafeMutablePointer<CChar>?
nonisolated(unsafe) private var handlerUsed: UnsafeMutablePointer<sig_atomic_t>?

extension TemporaryFiles {
    /// Unlinks every tracked temporary without taking the lock: for a signal handler about to end
    /// the process (async-signal-safe: `unlink` only). Nothing is tracked before the first registration.
    static func unlinkAllInSignalHandler() {
        guard let paths = handlerPaths, let used = handlerUsed else { return }
        for slot in 0..<capacity where used[slot] != 0 {
            unlink(paths + slot * Int(PATH_MAX))
        }
    }
}

/// SIGINT/SIGTERM handler: only async-signal-safe calls (`unlink`, `signal`, `raise`).
private func removeAndReraise(_ sig: Int32) {
    TemporaryFiles.unlinkAllInSignalHandler()
    signal(sig, SIG_DFL)
    raise(sig)
}

extension TemporaryFiles {
    /// A temporary that a writer killed before it could clean up (SIGKILL, a crash, a power loss) left
    /// next to a destination, as `removeAbandoned(for:)` found it.
    public struct Abandoned: Equatable, Sendable {
        /// The file or folder removed.
        public var path: String
        /// The pid its name carries (no process has it here any more).
        public var pid: Int32
        /// Bytes of the regular files removed.
        public var bytes: Int64
    }

    /// Removes the temporaries of `destination` whose writer no longer runs, so that a convert or
    /// export killed with SIGKILL (which no handler sees) does not leave a hidden file of the output's
    /// size behind for good: the next write of the same destination removes it.
    ///
    /// Only names this module's writers give the temporaries of exactly that destination are
    /// considered: `.<name>.tmp-<pid>-<n>` (`AtomicFile`; a Hub folder's staging folder) and
    /// `.<name>.zip-<pid>-<n>` (`ZipWriter`), `pid` and `n` decimal, in the folder of the file finally
    /// written (a symbolic link's target, as the writers do). One is removed only when no open file
    /// holds a lock on it (every writer holds one on its temporary while it runs, whichever pid
    /// namespace or NFS client it runs in: `TemporaryFileLock`) and, as well, no process here has
    /// that pid (`kill(pid, 0)` fails with `ESRCH`); a running process's temporary, this process's,
    /// one whose pid belongs to another user's process (`EPERM`) and one this process cannot open
    /// to lock are kept. A folder (a Hub folder's staging folder) is removed with what it holds; a
    /// symbolic link is removed, never followed.
    /// - Returns: what was removed, in name order; failures to remove are skipped (the write goes on).
    @discardableResult
    public static func removeAbandoned(for destination: URL) -> [Abandoned] {
        let target = (try? AtomicFile.finalTarget(of: destination)) ?? destination
        let folder = target.deletingLastPathComponent()
        let fm = FileManager.default
        var removed: [Abandoned] = []
        for name in ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).sorted() {
            guard let pid = writerPID(in: name, destination: target.lastPathComponent), pid != getpid(),
                  kill(pid, 0) != 0, errno == ESRCH else { continue }
            let url = folder.appendingPathComponent(name)
            var info = stat()
            guard lstat(url.path, &info) == 0 else { continue }
            var bytes: Int64 = 0
            var gone = false
            TemporaryFileLock.removeIfUnlocked(url) {
                if info.st_mode & S_IFMT == S_IFDIR {
                    let contents = fm.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey])
                    while let item = contents?.nextObject() as? URL {
                        if let v = try? item.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey]), v.isRegularFile == true {
                            bytes += Int64(v.fileSize ?? 0)
                        }
                    }
                    gone = (try? fm.removeItem(at: url)) != nil
                } else {
                    if info.st_mode & S_IFMT == S_IFREG { bytes = Int64(info.st_size) }
                    gone = unlink(url.path) == 0
                }
            }
            if gone { removed.append(Abandoned(path: url.path, pid: pid, bytes: bytes)) }
        }
        return removed
    }

    /// The writer's pid when `name` is a temporary of the file named `destination` as this module's
    /// writers name them (`.<destination>.tmp-<pid>-<n>` or `.<destination>.zip-<pid>-<n>`, decimal
    /// `pid` > 0 and `n` < 2^32); nil for any other name.
    static func writerPID(in name: String, destination: String) -> Int32? {
        let prefix = "." + destination + "."
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard rest.hasPrefix("tmp-") || rest.hasPrefix("zip-") else { return nil }
        let numbers = rest.dropFirst(4).split(separator: "-", omittingEmptySubsequences: false)
        guard numbers.count == 2, numbers.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 >= "0" && $0 <= "9" } }),
              let pid = Int32(numbers[0]), pid > 0, UInt32(numbers[1]) != nil else { return nil }
        return pid
    }
}
