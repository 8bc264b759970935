import Checkpoint
import Foundation

/// What is on disk under a zoo's `objects/`, `tmp/`, `trash/`, `refs/` and `tombstones/`, as
/// `verify`, `reindex` and `gc` need it, each entry sorted by what the zoo's writers name it.
struct ZooScan {
    /// Object files named like a content id: id -> path.
    var objects: [String: URL] = [:]
    /// Files the zoo's writers make and may leave when they end early, each with the pid its name
    /// carries.
    var leftovers: [Leftover] = []
    /// What the zoo's folders hold that no writer of bissl names so (a user's `README.txt` in
    /// `objects/`, a folder in `tmp/`): never removed, reported by `verify` and `gc`.
    var foreign: [URL] = []
    /// Trashed objects (`trash/<id>.<pid>.h5`, regular files): id -> path.
    var trash: [String: URL] = [:]
    /// Tombstone files: id -> path.
    var tombstones: [String: URL] = [:]

    struct Leftover {
        var url: URL
        var pid: Int32?
        var kind: Kind
    }

    enum Kind {
        /// A writer's temporary (`.<name>.tmp-<pid>-<n>`, `.<name>.zip-<pid>-<n>`; a staged import is
        /// `tmp/.staged.h5.tmp-<pid>-<n>`), a regular file its writer holds a lock on from its
        /// creation until it is renamed or removed (`TemporaryFileLock`): when it can be locked, its
        /// writer is gone.
        case temporary
        /// What an interrupted push or pull keeps to resume from (`tmp/<sha256>.<pid>.pull`, a
        /// folder, `tmp/<sha256>.<pid>.<digest>.push`, a regular file; `TransferRecords`): not
        /// locked, so only its age tells that no transfer still uses it.
        case transfer
    }

    init(_ layout: ZooLayout) {
        let fm = FileManager.default
        func entries(_ dir: URL) -> [(name: String, url: URL, type: mode_t)] {
            ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).sorted().compactMap { name in
                let url = dir.appendingPathComponent(name)
                var info = stat()
                guard lstat(url.path, &info) == 0 else { return nil }
                return (name, url, info.st_mode & S_IFMT)
            }
        }
        /// A writer's temporary, else something foreign.
        func temporaryOrForeign(_ e: (name: String, url: URL, type: mode_t)) {
            if e.type == S_IFREG, let pid = TemporaryFiles.writerPID(inTemporaryName: e.name) {
                leftovers.append(Leftover(url: e.url, pid: pid, kind: .temporary))
            } else {
                foreign.append(e.url)
            }
        }
        for shard in entries(layout.objects) {
            guard shard.type == S_IFDIR, shard.name.utf8.count == 2, ZooLayout.isHex(shard.name) else { foreign.append(shard.url); continue }
            for e in entries(shard.url) {
                let id = shard.name + String(e.name.dropLast(3))
                if e.type == S_IFREG, e.name.hasSuffix(".h5"), ZooLayout.isFullID(id) { objects[id] = e.url } else { temporaryOrForeign(e) }
            }
        }
        for e in entries(layout.tmp) {
            if let pid = Self.transferPID(e.name, type: e.type) {
                leftovers.append(Leftover(url: e.url, pid: pid, kind: .transfer))
            } else {
                temporaryOrForeign(e)
            }
        }
        for e in entries(layout.trash) {
            // rm's `<id>.<pid>.h5` (`Zoo.remove`).
            let parts = e.name.split(separator: ".", omittingEmptySubsequences: false)
            if e.type == S_IFREG, parts.count == 3, ZooLayout.isFullID(String(parts[0])), Int32(parts[1]) != nil, parts[2] == "h5" {
                trash[String(parts[0])] = e.url
            } else {
                temporaryOrForeign(e)
            }
        }
        for e in entries(layout.refs) where !(e.type == S_IFDIR && LabelKind.allCases.contains { $0.directory == e.name }) {
            foreign.append(e.url)   // `refs/` holds `names/` and `tags/` only
        }
        for kind in LabelKind.allCases {
            // Other names are ref files, judged by `RefFiles`.
            for e in entries(layout.refs.appendingPathComponent(kind.directory, isDirectory: true)) where e.name.hasPrefix(".") {
                temporaryOrForeign(e)
            }
        }
        for e in entries(layout.tombstones) {
            let id = String(e.name.dropLast(5))
            if e.type == S_IFREG, e.name.hasSuffix(".json"), ZooLayout.isFullID(id) { tombstones[id] = e.url } else { temporaryOrForeign(e) }
        }
    }

    /// The pid of a pull folder `<sha256>.<pid>.pull` or a push record `<sha256>.<pid>.<digest>.push`
    /// (`TransferRecords`); nil for any other name or type.
    static func transferPID(_ name: String, type: mode_t) -> Int32? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0].utf8.count == 64, ZooLayout.isHex(String(parts[0])),
              let pid = Int32(parts[1]), pid > 0 else { return nil }
        if parts.count == 3, parts[2] == "pull", type == S_IFDIR { return pid }
        if parts.count == 4, parts[3] == "push", !parts[2].isEmpty, ZooLayout.isHex(String(parts[2])), type == S_IFREG { return pid }
        return nil
    }

    /// The writer's pid in a file name: AtomicFile's `.<name>.tmp-<pid>-<random>` or a transfer's
    /// `<sha256>.<pid>.<kind>`.
    static func pid(in name: String) -> Int32? {
        if let pid = TemporaryFiles.writerPID(inTemporaryName: name) { return pid }
        let parts = name.split(separator: ".")
        if parts.count >= 3, ZooLayout.isFullID(String(parts[0])) { return Int32(parts[1]) }
        return nil
    }

    /// True when a process with this pid runs (so its files may still be in use).
    static func isAlive(_ pid: Int32?) -> Bool {
        guard let pid, pid > 0 else { return false }
        if pid == getpid() { return true }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    /// The files a pull folder holds (`ZooPull`: the object downloaded, its record) besides their
    /// `AtomicFile` temporaries.
    static let pullFolderFiles: Set<String> = ["object.h5", "record.json"]

    /// What `gc` does with a temporary, or a transfer whose pid no process here has (and `verify`
    /// says it would).
    enum Verdict: Equatable {
        /// Abandoned: gc removes it (a temporary no writer holds a lock on; a transfer older than
        /// the grace period).
        case abandoned
        /// A writer holds its lock: it runs (in another pid namespace or on another host).
        case running
        /// An interrupted transfer younger than the grace period that running it again resumes;
        /// what it is and how to resume it.
        case resumable(String)
        /// Kept, and why (a clause).
        case kept(String)
    }

    /// Judges `leftover`: a temporary by its lock alone (whatever pid its name carries: pids are
    /// reused), a transfer (whose pid no process here has) by the
    /// last time it made progress against `cutoff` (`TransferRecords.lastProgress`), except that an
    /// interrupted pull of an entry `inZoo` says the zoo holds already (another pull or an import
    /// brought it) is abandoned at once: there is nothing left to resume.
    static func verdict(_ leftover: Leftover, cutoff: Date, inZoo: (String) -> Bool) -> Verdict {
        switch leftover.kind {
        case .temporary:
            switch TemporaryFileLock.removeIfUnlocked(leftover.url, {}) {
            case .removed: return .abandoned
            case .inUse: return .running
            case .notARegularFile: return .kept("it is no longer a regular file")
            case .cannotLock(let reason): return .kept("it cannot be locked to show that no writer uses it (\(reason))")
            }
        case .transfer:
            if let entry = TransferRecords.pulledEntry(leftover.url), inZoo(entry) { return .abandoned }
            var info = stat()
            let made = lstat(leftover.url.path, &info) == 0 ? Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec)) : nil
            let last = TransferRecords.lastProgress(leftover.url) ?? made
            if let resumable = TransferRecords.describeResumable(leftover.url), let last, last > cutoff { return .resumable(resumable) }
            if let last, last > cutoff {
                return .kept("an interrupted transfer that changed within the grace period: its process may still run in another pid namespace or on another host")
            }
            return .abandoned
        }
    }
}
