import Checkpoint
import Foundation

/// What a zoo keeps in `tmp/` so that an interrupted push or pull resumes instead of starting over
/// (schemas/remote.md, "Resuming"): per object, a record of what reached the other side. Names are
/// `<sha256 of the object>.<pid>.<kind>`, so `gc` keeps them while their process runs and removes
/// them once it has ended (`ZooScan.pid(in:)`); a new transfer of the same object takes one over by
/// renaming it to its own pid (`claim`), which only one process can do.
enum TransferRecords {
    /// The path `<dir>/<sha256>.<pid>.<kind>` for this process, after taking over the path of an
    /// interrupted transfer of the same object and kind when there is one (a pid no longer running);
    /// `resumed` tells which. Transfers still running keep theirs.
    static func claim(in dir: URL, sha256: String, kind: String) -> (url: URL, resumed: Bool) {
        let mine = dir.appendingPathComponent("\(sha256).\(getpid()).\(kind)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        for name in names.sorted() where name.hasPrefix(sha256 + ".") && name.hasSuffix("." + kind) {
            let pid = Int32(name.dropFirst(sha256.count + 1).dropLast(kind.count + 1))
            guard let pid, pid != getpid(), !ZooScan.isAlive(pid) else { continue }
            if rename(dir.appendingPathComponent(name).path, mine.path) == 0 { return (mine, true) }
        }
        return (mine, FileManager.default.fileExists(atPath: mine.path))
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
    /// each time). Threads of one transfer may save at once: each writes its own temporary.
    /// - Throws: `CheckpointError.io` when the record cannot be written or renamed.
    static func write<T: Encodable>(_ value: T, _ url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try AtomicFile.write(try encoder.encode(value), to: url, durable: false)
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
    var size: Int64
    var rangeSize: Int64
    var done: [Int64]
}
