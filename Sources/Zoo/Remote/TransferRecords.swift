import Checkpoint
import Foundation

/// What a zoo keeps in `tmp/` so that an interrupted push or pull resumes instead of starting over
/// (schemas/remote.md, "Resuming"): per object, a record of what reached the other side. Names are
/// `<sha256 of the object>.<pid>.<kind>`, so `gc` keeps them while their process runs; and each is
/// locked while its transfer runs (`TemporaryFileLock`, as every writer's temporary is), so neither
/// `gc` nor another transfer takes it from a live process whose pid means nothing here (another pid
/// namespace sharing the zoo, another NFS client). A new transfer of the same object takes over an
/// interrupted one's (`claim`) only when its pid has ended and no lock is held on it.
enum TransferRecords {
    /// The record path of this process's transfer, locked while the transfer runs.
    struct Claim {
        /// `<dir>/<sha256>.<pid>.<kind>`: a folder for a pull, a file for a push record.
        var url: URL
        /// True when it holds what an interrupted transfer of the same object left.
        var resumed: Bool
        /// The writer's lock on `url`: release it once `url` is removed.
        var lock: TemporaryFileLock
    }

    /// Creates `<dir>/<sha256>.<pid>.<kind>` for this process (a folder when `folder`, else an empty
    /// file) and locks it, then moves into it what an interrupted transfer of the same object and
    /// kind left (`resumed`): this process's own earlier one, else the first whose pid is not running,
    /// in either case only when no process holds a lock on it, taken under that lock's exclusive
    /// form (`TemporaryFileLock.removeIfUnlocked`), so only one claimant gets it. Transfers still
    /// running keep theirs.
    /// - Throws: `ZooError.io` when `dir` cannot be created or a live process of another pid
    ///   namespace holds the path this process's pid names; `CheckpointError.io` when the path
    ///   cannot be created.
    static func claim(in dir: URL, sha256: String, kind: String, folder: Bool) throws -> Claim {
        let manager = FileManager.default
        do {
            try manager.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw ZooError.io("cannot create \(dir.path): \(error.localizedDescription)")
        }
        let mine = dir.appendingPathComponent("\(sha256).\(getpid()).\(kind)")
        var candidates: [URL] = []
        // Left by an earlier transfer of this process, or of an ended one that had its pid: moved
        // aside to be taken over like the others, unless a live process elsewhere holds it.
        if (try? manager.attributesOfItem(atPath: mine.path)) != nil {
            let aside = dir.appendingPathComponent("\(mine.lastPathComponent).\(UInt32.random(in: 0...UInt32.max)).aside")
            guard takeIfUnlocked(mine, { rename(mine.path, aside.path) == 0 }) else {
                throw ZooError.io("cannot use \(mine.path): another process holds it (a transfer of this object in another pid namespace); try again when it ends")
            }
            candidates.append(aside)
        }
        let lock = folder ? try TemporaryFileLock.createFolder(mine, for: mine) : try TemporaryFileLock.createFile(mine, for: mine)
        let names = (try? manager.contentsOfDirectory(atPath: dir.path)) ?? []
        for name in names.sorted() where name.hasPrefix(sha256 + ".") && name.hasSuffix("." + kind) {
            let pid = Int32(name.dropFirst(sha256.count + 1).dropLast(kind.count + 1))
            guard let pid, pid != getpid(), !ZooScan.isAlive(pid) else { continue }
            candidates.append(dir.appendingPathComponent(name))
        }
        for old in candidates {
            let moved = takeIfUnlocked(old) {
                defer { try? manager.removeItem(at: old) }
                return folder ? adoptFolder(old, into: mine) : adoptFile(old, into: mine)
            }
            if moved { return Claim(url: mine, resumed: true, lock: lock) }
        }
        return Claim(url: mine, resumed: false, lock: lock)
    }

    /// Runs `take` on what an interrupted transfer left at `url` when no process holds its lock, and
    /// returns what `take` returns (false when it did not run). A file is taken under the lock's
    /// exclusive form (`TemporaryFileLock.removeIfUnlocked`), so only one claimant runs `take`; a
    /// folder cannot be locked exclusively, so it is taken when no lock is held on it
    /// (`TemporaryFileLock.folderIsUnlocked`) and `take` moves it or its record by `rename`, which
    /// only one claimant can do.
    private static func takeIfUnlocked(_ url: URL, _ take: () -> Bool) -> Bool {
        var info = stat()
        guard lstat(url.path, &info) == 0 else { return false }
        if info.st_mode & S_IFMT == S_IFDIR {
            return TemporaryFileLock.folderIsUnlocked(url) == true && take()
        }
        var taken = false
        TemporaryFileLock.removeIfUnlocked(url) { taken = take() }
        return taken
    }

    /// Moves the files of an interrupted pull's folder (`record.json`, then `object.h5`) into
    /// `folder`; true when the record moved. The record first: of two claimants, only the one whose
    /// rename of it succeeded takes the object too. Only a folder itself, never one a symbolic link
    /// leads to.
    private static func adoptFolder(_ old: URL, into folder: URL) -> Bool {
        var info = stat()
        guard lstat(old.path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR,
              rename(old.appendingPathComponent("record.json").path, folder.appendingPathComponent("record.json").path) == 0
        else { return false }
        _ = rename(old.appendingPathComponent("object.h5").path, folder.appendingPathComponent("object.h5").path)
        return true
    }

    /// Copies an interrupted push's record (a regular file of at most 1 MiB) into `file`; true when copied.
    private static func adoptFile(_ old: URL, into file: URL) -> Bool {
        var info = stat()
        guard lstat(old.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size <= 1 << 20,
              let data = try? Data(contentsOf: old) else { return false }
        return (try? overwrite(data, file)) != nil
    }

    /// What an interrupted transfer left at `url` (an entry of a zoo's `tmp/`) and how to resume it:
    /// a pull folder `<sha256>.<pid>.pull` whose `record.json` decodes, or a push record
    /// `<sha256>.<pid>.<remote digest>.push` that decodes; nil for anything else (a leftover).
    static func describeResumable(_ url: URL) -> String? {
        let parts = url.lastPathComponent.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0].count == 64, ZooLayout.isHex(String(parts[0])), Int32(parts[1]) != nil else { return nil }
        let object = parts[0].prefix(12)
        func mb(_ n: Int64) -> String { String(format: "%.1f MB", Double(n) / 1e6) }
        if parts.count == 3, parts[2] == "pull",
           let record = read(DownloadRecord.self, url.appendingPathComponent("record.json")), record.version == 1 {
            let done = min(record.done.reduce(0, +), record.size)
            return "resumable transfer: an interrupted pull of object \(object) (\(mb(done)) of \(mb(record.size)) on disk); "
                + "pulling the entry again resumes it (bissl gc keeps it for the grace period, 24h unless --grace says otherwise)"
        }
        if parts.count == 4, parts[3] == "push", let record = read(UploadRecord.self, url), record.version == 1, record.partSize > 0 {
            let total = (record.size + record.partSize - 1) / record.partSize
            return "resumable transfer: an interrupted push of object \(object) (\(record.parts.count) of \(total) parts on the remote); "
                + "pushing the entry again resumes it (bissl gc keeps this record, and bissl gc --remote the upload, for the grace period, 24h unless --grace says otherwise)"
        }
        return nil
    }

    /// The entry an interrupted pull's folder `url` was downloading the object of, from its
    /// `record.json` (`DownloadRecord.entry`); nil for a push record, a record that does not decode
    /// or one that does not say.
    static func pulledEntry(_ url: URL) -> String? {
        guard url.lastPathComponent.hasSuffix(".pull"),
              let entry = read(DownloadRecord.self, url.appendingPathComponent("record.json"))?.entry,
              ZooLayout.isFullID(entry) else { return nil }
        return entry
    }

    /// When the interrupted transfer at `url` (a pull folder or a push record) last made progress:
    /// the latest modification time of the record and, for a pull, its partial object.
    static func lastProgress(_ url: URL) -> Date? {
        let files = url.lastPathComponent.hasSuffix(".pull") ? [url.appendingPathComponent("record.json"), url.appendingPathComponent("object.h5")] : [url]
        return files.compactMap { (try? FileManager.default.attributesOfItem(atPath: $0.path))?[.modificationDate] as? Date }.max()
    }

    /// Reads a record, nil when it is missing or does not decode (a transfer then starts over).
    static func read<T: Decodable>(_ type: T.Type, _ url: URL) -> T? {
        guard let data = try? Data(contentsOf: url), data.count <= 1 << 20 else { return nil }
        return try? JSONDecoder().decode(type, from: data)
    }

    /// Replaces a record atomically (`AtomicFile.write`), without `fsync`: a record is a hint that
    /// the transfer checks (ListParts, the SHA-256 of the download), and the bytes it counts may not
    /// be flushed yet either (an `fsync` per save held a download connection idle for milliseconds
    /// each time). Threads of one transfer may save at once: each writes its own temporary. For a
    /// record inside a claimed folder (a pull's `record.json`).
    /// - Throws: `CheckpointError.io` when the record cannot be written or renamed.
    static func write<T: Encodable>(_ value: T, _ url: URL) throws {
        try AtomicFile.write(try encode(value), to: url, durable: false)
    }

    /// Rewrites the claimed record file `url` (a push record) in place, keeping the file its
    /// `Claim.lock` holds (a rename would put an unlocked file in its place): the new bytes over the
    /// old from offset 0, then the file cut to their length, without `fsync` (see `write`). Saves of
    /// several threads take turns. A push record only grows while its upload runs (parts are
    /// appended), so a process killed between the two steps leaves a whole record.
    /// - Throws: `ZooError.io` when the file cannot be written.
    static func overwrite<T: Encodable>(_ value: T, _ url: URL) throws {
        try overwrite(try encode(value), url)
    }

    private static let overwriting = NSLock()

    private static func overwrite(_ data: Data, _ url: URL) throws {
        try overwriting.withLock {
            let fd = open(url.path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw ZooError.io("cannot write \(url.path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            let written = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            guard written == data.count, ftruncate(fd, off_t(data.count)) == 0 else {
                throw ZooError.io("cannot write \(url.path): \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return try encoder.encode(value)
        } catch {
            throw ZooError.io("cannot encode a transfer record: \(error)")
        }
    }
}

/// The record of a multipart upload in progress, `tmp/<sha256>.<pid>.<remote digest>.push`: enough
/// to ask the server which parts it holds (`ListParts`) and complete the upload with them.
struct UploadRecord: Codable, Equatable {
    /// Layout version of the record (1).
    var version = 1
    /// `<endpoint or "aws">|<bucket>|<key>`: the object the upload creates.
    var target: String
    var uploadID: String
    /// Object bytes, and bytes per part (the last part holds the rest).
    var size: Int64
    var partSize: Int64
    /// Parts the server acknowledged: part number (1-based) and the ETag it answered.
    var parts: [Part]

    struct Part: Codable, Equatable {
        var number: Int
        var etag: String
    }
}

/// The record of a download in progress, `record.json` in `tmp/<sha256>.<pid>.pull/` beside the
/// partial `object`: the object is fetched in ranges of `rangeSize` bytes, `done[i]` bytes of range
/// `i` are written (a lower bound: it is saved after the bytes are).
struct DownloadRecord: Codable, Equatable {
    var version = 1
    /// The content id of the entry whose object this is (absent in records of earlier versions): once
    /// the zoo lists that entry (another pull or an import brought it), the download is a leftover.
    var entry: String?
    var size: Int64
    var rangeSize: Int64
    var done: [Int64]
}
