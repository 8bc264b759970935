import Checkpoint
import Crypto
import Foundation

/// Bytes moved so far by a transfer that may run over several connections; reports every change to
/// `report(done, total)` (under a lock, so the callback needs no locking of its own).
final class TransferCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var parts: [Int: Int64] = [:]
    let total: Int64
    let report: (@Sendable (Int64, Int64) -> Void)?

    init(total: Int64, report: (@Sendable (Int64, Int64) -> Void)?) {
        self.total = total
        self.report = report
    }

    /// Part `part` has moved `bytes` bytes so far.
    func set(_ part: Int, _ bytes: Int64) {
        guard let report else { return }
        lock.withLock {
            parts[part] = bytes
            report(parts.values.reduce(0, +), total)
        }
    }
}

extension RemoteStore {
    /// Uploads the file at `url` as `objects/<sha256>.h5` unless the remote holds that object:
    /// one conditional PUT (`If-None-Match: *`) up to `multipartThreshold` bytes, else a multipart
    /// upload of `partSize` parts over parallel connections completed with `If-None-Match: *`.
    ///
    /// With `scratch` set (the zoo's `tmp/`), a multipart upload is resumable: its upload id and the
    /// parts the server acknowledged are recorded there (`UploadRecord`) as they complete, and a
    /// later call for the same object and remote asks the server which of them it still holds
    /// (`ListParts`), sends only the others, and starts a new upload when the old one is gone. A
    /// failed upload then stays for that rerun (`gc --remote` aborts it after its grace period);
    /// without `scratch` it is aborted at once.
    /// - Returns: the bytes this call sent when it stored the object (less than `size` when it
    ///   resumed an upload), nil when the remote had the object already.
    /// - Throws: `ZooError.io` for transport failures and refused requests.
    func uploadObject(_ url: URL, sha256: String, size: Int64, progress: (@Sendable (Int64, Int64) -> Void)?) throws -> Int64? {
        let relative = Self.objectKey(sha256: sha256)
        let target = "\(config.endpoint ?? "aws")|\(bucket)|\(key(relative))"
        // The record file, locked while this upload runs (none where it cannot be created: a zoo
        // on a read-only disk pushes without resuming).
        let claimed = scratch.flatMap { try? TransferRecords.claim(in: $0, sha256: sha256, kind: "\(Self.digest(target)).push", folder: false) }
        // Kept for a rerun while it records an unfinished upload (an interrupted one's it took over,
        // or this one's once written), removed once the object is stored.
        var keepRecord = claimed?.resumed ?? false
        defer {
            if let claimed {
                if !keepRecord { unlink(claimed.url.path) }
                claimed.lock.release()
            }
        }
        if try exists(relative) {
            keepRecord = false
            return nil
        }
        let counter = TransferCounter(total: size, report: progress)
        if size <= multipartThreshold {
            keepRecord = false
            let r = try client.send("PUT", key(relative), headers: ["If-None-Match": "*"], body: .file(path: url.path, offset: 0, length: size),
                                    progress: { counter.set(0, $0) })
            if r.status == 412 { return nil }
            guard r.status == 200 else { throw failure("PUT", relative, r) }
            return size
        }
        let parts = Int((size + partSize - 1) / partSize)
        let partSize = self.partSize
        @Sendable func length(_ n: Int) -> Int64 { min(partSize, size - Int64(n - 1) * partSize) }
        var record = UploadRecord(target: target, uploadID: "", size: size, partSize: partSize, parts: [])
        if let claimed, let old = TransferRecords.read(UploadRecord.self, claimed.url),
           old.version == 1, old.target == target, old.size == size, old.partSize == partSize,
           let held = try listParts(relative, old.uploadID) {
            // Parts recorded here and still held by the server, with the same ETag and length.
            record = old
            record.parts = old.parts.filter { p in
                p.number >= 1 && p.number <= parts && held[p.number].map { Self.sameETag($0.etag, p.etag) && $0.size == length(p.number) } == true
            }
        } else {
            let start = try client.send("POST", key(relative), query: [("uploads", "")])
            guard start.status == 200, let uploadID = XMLRecords.firstValue("UploadId", in: start.body), !uploadID.isEmpty else {
                throw failure("POST (start multipart upload)", relative, start)
            }
            record.uploadID = uploadID
        }
        // Resumable when the record can be written (a zoo on a read-only disk pushes without).
        let shared = Locked(record)
        let resumable = claimed.map { (try? TransferRecords.overwrite(record, $0.url)) != nil } ?? false
        keepRecord = resumable
        let recordURL = claimed?.url
        @Sendable func save() {
            if resumable, let recordURL { try? TransferRecords.overwrite(shared.value, recordURL) }
        }
        let uploadID = record.uploadID
        do {
            let have = Set(record.parts.map(\.number))
            for n in have { counter.set(n - 1, length(n)) }
            let missing = (1...parts).filter { !have.contains($0) }
            let sent = missing.reduce(Int64(0)) { $0 + length($1) }
            try parallel(missing.count) { i, client in
                let n = missing[i]
                let r = try client.send("PUT", self.key(relative), query: [("partNumber", "\(n)"), ("uploadId", uploadID)],
                                        body: .file(path: url.path, offset: Int64(n - 1) * partSize, length: length(n)), progress: { counter.set(n - 1, $0) })
                guard r.status == 200, let etag = r.etag else { throw self.failure("PUT (part \(n) of \(parts))", relative, r) }
                shared.update { $0.parts.append(.init(number: n, etag: etag)) }
                save()
            }
            let etags = Dictionary(shared.value.parts.map { ($0.number, $0.etag) }, uniquingKeysWith: { a, _ in a })
            var xml = "<CompleteMultipartUpload>"
            for n in 1...parts { xml += "<Part><PartNumber>\(n)</PartNumber><ETag>\(etags[n]!)</ETag></Part>" }
            xml += "</CompleteMultipartUpload>"
            let done = try client.send("POST", key(relative), query: [("uploadId", uploadID)], headers: ["If-None-Match": "*"], body: .data(Data(xml.utf8)))
            if done.status == 412 {
                try? abortUpload(relative, uploadID)
                keepRecord = false
                return nil
            }
            // S3 may answer 200 and still report an error in the body.
            guard done.status == 200, done.errorCode == nil else { throw failure("POST (complete multipart upload)", relative, done) }
            keepRecord = false
            return sent
        } catch {
            if !resumable { try? abortUpload(relative, uploadID) }
            throw error
        }
    }

    /// The parts the server holds of multipart upload `uploadID` (ListParts, 1,000 a page): part
    /// number -> (ETag, bytes); nil when the upload no longer exists (completed or aborted).
    func listParts(_ relative: String, _ uploadID: String) throws -> [Int: (etag: String, size: Int64)]? {
        var out: [Int: (String, Int64)] = [:]
        var marker: String?
        var progress = ListingProgress("the part listing of \(display)/\(relative)")
        repeat {
            var query = [("uploadId", uploadID)]
            if let marker { query.append(("part-number-marker", marker)) }
            let r = try client.send("GET", key(relative), query: query)
            if r.status == 404 || r.errorCode == "NoSuchUpload" { return nil }
            guard r.status == 200 else { throw failure("GET (list parts)", relative, r) }
            let parsed = XMLRecords(r.body, record: "Part")
            var page: [String] = []
            for p in parsed.records {
                guard let n = p["PartNumber"].flatMap({ Int($0) }), let etag = p["ETag"], let size = p["Size"].flatMap({ Int64($0) }) else { continue }
                out[n] = (etag, size)
                page.append(String(n))
            }
            let next = parsed.top["IsTruncated"] == "true" ? parsed.top["NextPartNumberMarker"] : nil
            guard try progress.next(after: page, token: next) else { break }
            marker = next
        } while marker != nil
        return out
    }

    /// ETags compare without their quotes (servers differ in whether listings quote them).
    static func sameETag(_ a: String, _ b: String) -> Bool {
        let quotes = CharacterSet(charactersIn: "\"")
        return a.trimmingCharacters(in: quotes) == b.trimmingCharacters(in: quotes)
    }

    /// 16 hex digits of the SHA-256 of `text` (tells records of different remotes apart in file names).
    static func digest(_ text: String) -> String {
        lowercaseHex(SHA256.hash(data: Data(text.utf8)).prefix(8))
    }

    func abortUpload(_ relative: String, _ uploadID: String) throws {
        let r = try client.send("DELETE", key(relative), query: [("uploadId", uploadID)])
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw failure("DELETE (abort multipart upload)", relative, r) }
    }

    /// Multipart uploads under the remote's prefix that were started and never completed or aborted.
    func pendingUploads() throws -> [(key: String, uploadID: String, initiated: Date)] {
        var out: [(String, String, Date)] = []
        var markers: (String, String)?
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        var progress = ListingProgress("the multipart upload listing of \(display)")
        repeat {
            var query = [("uploads", ""), ("prefix", key("objects/")), ("encoding-type", "url")]
            if let (k, u) = markers { query += [("key-marker", k), ("upload-id-marker", u)] }
            let r = try client.send("GET", nil, query: query)
            guard r.status == 200 else { throw failure("GET (list multipart uploads)", nil, r) }
            let parsed = XMLRecords(r.body, record: "Upload")
            let strip = prefix.isEmpty ? 0 : prefix.count + 1
            let pageStart = out.count
            for u in parsed.records {
                guard let k = u["Key"].map(parsed.listed), let id = u["UploadId"], k.count > strip else { continue }
                let stamp = u["Initiated"] ?? ""
                out.append((String(k.dropFirst(strip)), id, formatter.date(from: stamp) ?? plain.date(from: stamp) ?? Date()))
            }
            let next = parsed.top["IsTruncated"] == "true" ? parsed.top["NextKeyMarker"].map(parsed.listed).flatMap { k in parsed.top["NextUploadIdMarker"].map { (k, $0) } } : nil
            guard try progress.next(after: out[pageStart...].map { $0.0 + "\n" + $0.1 },
                                    token: next.map { $0.0 + "\n" + $0.1 }) else { break }
            markers = next
        } while markers != nil
        return out
    }
}
