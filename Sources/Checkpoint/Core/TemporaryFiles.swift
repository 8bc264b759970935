import Crypto
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
    /// Longest name a folder entry may have (Linux `NAME_MAX`, bytes).
    static let nameMax = 255
    /// Longest suffix a writer appends to `.<stem>`: `.tmp-` (or `.zip-`), a pid of up to 10 digits,
    /// `-`, a number of up to 10 digits.
    static let longestSuffix = 26

    /// The name of a new temporary of the file named `destination`: `.<stem>.<kind>-<pid>-<n>`, `n` a
    /// random 32-bit number, so that concurrent writers of one destination each have their own.
    /// - Parameter kind: `tmp` (`AtomicFile`, a Hub folder's staging folder) or `zip` (`ZipWriter`).
    public static func temporaryName(for destination: String, kind: String = "tmp") -> String {
        ".\(stem(destination)).\(kind)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// The part of a temporary's name that stands for its destination: the name itself when the
    /// longest temporary name still fits `NAME_MAX`; else (a name of more than 228 bytes) its first
    /// bytes, cut at a character boundary, then `~` and the first 16 hex digits of the SHA-256 of
    /// the whole name, 228 bytes at most: distinct names keep distinct stems, and a cleaner computes
    /// the same stem from the destination to recognise its temporaries.
    public static func stem(_ destination: String) -> String {
        let limit = nameMax - 1 - longestSuffix
        let bytes = Array(destination.utf8)
        guard bytes.count > limit else { return destination }
        let hash = SHA256.hash(data: bytes).prefix(8).map { String(format: "%02x", $0) }.joined()
        var keep = limit - 1 - hash.count
        while keep > 0, bytes[keep] & 0xC0 == 0x80 { keep -= 1 }   // not inside a UTF-8 sequence
        return String(decoding: bytes[..<keep], as: UTF8.self) + "~" + hash
    }

    /// The writer's pid when `name` is a temporary of the file named `destination` as this module's
    /// writers name them (`.<stem>.tmp-<pid>-<n>` or `.<stem>.zip-<pid>-<n>`, decimal `pid` > 0 and
    /// `n` < 2^32, `stem` as `stem(_:)` gives it); nil for any other name.
    public static func writerPID(in name: String, destination: String) -> Int32? {
        let prefix = "." + stem(destination) + "."
        guard name.hasPrefix(prefix) else { return nil }
        return writerPID(suffix: name.dropFirst(prefix.count))
    }

    /// The writer's pid when `name` is a temporary of any destination (`.<stem>.tmp-<pid>-<n>` or
    /// `.<stem>.zip-<pid>-<n>`, as `writerPID(in:destination:)`); nil for any other name.
    public static func writerPID(inTemporaryName name: String) -> Int32? {
        guard name.hasPrefix("."), let dot = name.lastIndex(of: "."), dot > name.index(after: name.startIndex) else { return nil }
        return writerPID(suffix: name[name.index(after: dot)...])
    }

    /// The pid in `tmp-<pid>-<n>` or `zip-<pid>-<n>`.
    private static func writerPID(suffix rest: Substring) -> Int32? {
        guard rest.hasPrefix("tmp-") || rest.hasPrefix("zip-") else { return nil }
        let numbers = rest.dropFirst(4).split(separator: "-", omittingEmptySubsequences: false)
        guard numbers.count == 2, numbers.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 >= "0" && $0 <= "9" } }),
              let pid = Int32(numbers[0]), pid > 0, UInt32(numbers[1]) != nil else { return nil }
        return pid
    }

    /// Bytes a regular file occupies on disk (`st_blocks`, 512-byte units: what removing it frees;
    /// less than its size for a sparse file).
    public static func allocatedBytes(_ info: stat) -> Int64 { Int64(info.st_blocks) * 512 }

    /// A temporary that a writer left next to a destination when it ended before cleaning up (SIGKILL,
    /// a crash, a power loss), removed by `removeAbandoned(for:stagingFiles:)`.
    public struct Abandoned: Equatable, Sendable {
        /// The file or staging folder removed.
        public var path: String
        /// Bytes the removed files occupied on disk.
        public var bytes: Int64
    }

    /// Something named like a temporary of the destination whose writer no longer runs here, kept:
    /// the cleaner cannot show that it is an abandoned temporary.
    public struct Kept: Equatable, Sendable {
        public var path: String
        /// Why it was kept, a clause (`it is a folder holding notes.txt, which no writer puts there`).
        public var reason: String
    }

    /// Removes the temporaries of `destination` whose writer no longer runs, so that a convert or
    /// export killed with SIGKILL (which no handler sees) does not leave a hidden file of the output's
    /// size behind for good: the next write of the same destination removes it.
    ///
    /// Only names this module's writers give the temporaries of exactly that destination are
    /// considered (`writerPID(in:destination:)`), in the folder of the file finally written (a
    /// symbolic link's target, as the writers do). A regular file is removed only while this process
    /// holds an exclusive lock on it (every writer holds a lock on its temporary from its creation to
    /// its rename, whichever pid namespace or NFS client it runs in: `TemporaryFileLock`), whatever
    /// pid its name carries (pids are reused: a live process may have a dead writer's pid). Anything
    /// else is considered only when no process here has the pid the name carries (`kill(pid, 0)`
    /// fails with `ESRCH`). A folder is a Hub
    /// folder's staging folder only when no lock is held on it and it holds nothing but regular files
    /// named in `stagingFiles` and temporaries of those: then those files (each locked) and the folder
    /// are removed. Anything else so named (a folder holding other things, a symbolic link, a file
    /// this process cannot lock) is kept and returned in `kept`; one a writer holds a lock on is in use
    /// and neither removed nor reported.
    /// - Parameter stagingFiles: the names a staging folder of `destination` holds (empty: the
    ///   destination is a file, so no folder is its temporary).
    /// - Returns: what was removed and what was kept, each in name order; failures to remove are
    ///   reported as kept (the write goes on).
    public static func removeAbandoned(for destination: URL, stagingFiles: Set<String> = []) -> (removed: [Abandoned], kept: [Kept]) {
        let target = (try? AtomicFile.finalTarget(of: destination)) ?? destination
        let folder = target.deletingLastPathComponent()
        var removed: [Abandoned] = [], kept: [Kept] = []
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted() {
            guard let pid = writerPID(in: name, destination: target.lastPathComponent) else { continue }
            let url = folder.appendingPathComponent(name)
            var info = stat()
            guard lstat(url.path, &info) == 0 else { continue }
            // A regular file is judged by its lock alone (its writer holds it from creation to rename,
            // `TemporaryFileLock`; pids are reused, and a writer killed in a container was often pid 1);
            // anything else only once no process here has the pid its name carries.
            if info.st_mode & S_IFMT != S_IFREG, pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH { continue }
            switch info.st_mode & S_IFMT {
            case S_IFREG:
                switch removeFile(url) {
                case .removed(let bytes): removed.append(Abandoned(path: url.path, bytes: bytes))
                case .inUse: continue
                case .kept(let reason): kept.append(Kept(path: url.path, reason: reason))
                }
            case S_IFDIR:
                switch removeStagingFolder(url, holding: stagingFiles) {
                case .removed(let bytes): removed.append(Abandoned(path: url.path, bytes: bytes))
                case .inUse: continue
                case .kept(let reason): kept.append(Kept(path: url.path, reason: reason))
                }
            case S_IFLNK: kept.append(Kept(path: url.path, reason: "it is a symbolic link, which no writer makes"))
            default: kept.append(Kept(path: url.path, reason: "it is not a regular file, which no writer makes"))
            }
        }
        return (removed, kept)
    }

    /// What removing one abandoned temporary came to.
    public enum Outcome: Equatable, Sendable {
        /// Removed; the bytes it occupied on disk.
        case removed(Int64)
        /// A writer holds a lock on it: it still runs.
        case inUse
        /// Kept: why, a clause.
        case kept(String)
    }

    /// Unlinks the regular file `url` while holding its exclusive lock (`TemporaryFileLock`).
    public static func removeFile(_ url: URL) -> Outcome {
        var bytes: Int64 = 0
        var failure: String?
        let result = TemporaryFileLock.removeIfUnlocked(url) {
            var info = stat()
            if lstat(url.path, &info) == 0 { bytes = allocatedBytes(info) }
            if unlink(url.path) != 0 { failure = String(cString: strerror(errno)) }
        }
        switch result {
        case .removed: return failure.map { .kept("it cannot be removed (\($0))") } ?? .removed(bytes)
        case .inUse: return .inUse
        case .notARegularFile: return .kept("it is not a regular file, which no writer makes")
        case .cannotLock(let reason): return .kept("it cannot be locked to show that no writer uses it (\(reason))")
        }
    }

    /// Removes a staging folder that no lock is held on and that holds only regular files named in
    /// `names` or temporaries of those (each removed under its own lock), then the folder itself;
    /// anything else keeps it whole.
    public static func removeStagingFolder(_ url: URL, holding names: Set<String>) -> Outcome {
        switch TemporaryFileLock.folderIsUnlocked(url) {
        case true?: break
        case false?: return .inUse
        case nil: return .kept("it is a folder this process cannot open or ask for locks to see whether a writer holds it")
        }
        let fm = FileManager.default
        guard let entries = try? fm.contentsOfDirectory(atPath: url.path) else { return .kept("it is a folder this process cannot list") }
        let foreign = entries.sorted().filter { entry in
            var info = stat()
            let isFile = lstat(url.appendingPathComponent(entry).path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
            return !isFile || !(names.contains(entry) || names.contains { writerPID(in: entry, destination: $0) != nil })
        }
        if names.isEmpty { return .kept("it is a folder, and no writer of this output makes one") }
        if let first = foreign.first {
            return .kept("it is a folder holding \(first)\(foreign.count > 1 ? " and \(foreign.count - 1) more" : ""), which no writer puts there")
        }
        var bytes: Int64 = 0
        for entry in entries.sorted() {
            switch removeFile(url.appendingPathComponent(entry)) {
            case .removed(let b): bytes += b
            case .inUse: return .inUse
            case .kept(let reason): return .kept("its \(entry): \(reason)")
            }
        }
        guard rmdir(url.path) == 0 else { return .kept("it cannot be removed (\(String(cString: strerror(errno))))") }
        return .removed(bytes)
    }
}
