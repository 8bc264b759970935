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
        let claimed = scratch.map { TransferRecords.claim(in: $0, sha256: sha256, kind: "\(Self.digest(target)).push") }
        if try exists(relative) {
            if let claimed { unlink(claimed.url.path) }
            return nil
        }
        let counter = TransferCounter(total: size, report: progress)
        if size <= multipartThreshold {
            if let claimed { unlink(claimed.url.path) }
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
        let resumable = claimed.map { (try? TransferRecords.write(record, $0.url)) != nil } ?? false
        @Sendable func save() {
            if resumable, let claimed { try? TransferRecords.write(shared.value, claimed.url) }
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
                if let claimed { unlink(claimed.url.path) }
                return nil
            }
            // S3 may answer 200 and still report an error in the body.
            guard done.status == 200, done.errorCode == nil else { throw failure("POST (complete multipart upload)", relative, done) }
            if let claimed { unlink(claimed.url.path) }
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
        repeat {
            var query = [("uploadId", uploadID)]
            if let marker { query.append(("part-number-marker", marker)) }
            let r = try client.send("GET", key(relative), query: query)
            if r.status == 404 || r.errorCode == "NoSuchUpload" { return nil }
            guard r.status == 200 else { throw failure("GET (list parts)", relative, r) }
            let parsed = XMLRecords(r.body, record: "Part")
            for p in parsed.records {
                guard let n = p["PartNumber"].flatMap({ Int($0) }), let etag = p["ETag"], let size = p["Size"].flatMap({ Int64($0) }) else { continue }
                out[n] = (etag, size)
            }
            marker = parsed.top["IsTruncated"] == "true" ? parsed.top["NextPartNumberMarker"] : nil
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
        repeat {
            var query = [("uploads", ""), ("prefix", key("objects/"))]
            if let (k, u) = markers { query += [("key-marker", k), ("upload-id-marker", u)] }
            let r = try client.send("GET", nil, query: query)
            guard r.status == 200 else { throw failure("GET (list multipart uploads)", nil, r) }
            let parsed = XMLRecords(r.body, record: "Upload")
            let strip = prefix.isEmpty ? 0 : prefix.count + 1
            for u in parsed.records {
                guard let k = u["Key"], let id = u["UploadId"], k.count > strip else { continue }
                let stamp = u["Initiated"] ?? ""
                out.append((String(k.dropFirst(strip)), id, formatter.date(from: stamp) ?? plain.date(from: stamp) ?? Date()))
            }
            markers = parsed.top["IsTruncated"] == "true" ? parsed.top["NextKeyMarker"].flatMap { k in parsed.top["NextUploadIdMarker"].map { (k, $0) } } : nil
        } while markers != nil
        return out
    }

    /// What `downloadObject` did.
    struct Download {
        /// Bytes received by this call (less than the object's size when it resumed).
        var received: Int64
    }

    /// Downloads the object `manifest` names to `url` and checks its size and SHA-256 against the
    /// manifest. Objects above `multipartThreshold` come in ranges of `partSize` bytes over parallel
    /// connections, smaller ones in one; the SHA-256 is computed while they arrive, following the
    /// bytes written in order from the start. A range whose connection breaks is asked again from
    /// where it stopped (`client.attempts` times).
    ///
    /// With `record` (see `DownloadRecord`), the download is resumable: what each range wrote is
    /// saved there as it arrives (at least once a second), and a download finding a record of the
    /// same object asks only for the rest; if the bytes then fail the SHA-256 check, it downloads
    /// the whole object once more before it calls the object corrupt.
    /// - Parameter written: called on this thread each time every byte is written, before the
    ///   SHA-256 is complete (a caller may start reading the file; its bytes are not verified yet).
    /// - Returns: the bytes received. The file is flushed to disk (`fdatasync`) by the time this returns.
    /// - Throws: `ZooError.corrupt` naming the entry when the bytes differ from the manifest
    ///   (`url` and `record` are then removed), `.io` for a missing object, a broken transfer or a
    ///   failed flush.
    @discardableResult
    func downloadObject(_ manifest: RemoteManifest, to url: URL, record: URL? = nil, written: (() -> Void)? = nil,
                        progress: (@Sendable (Int64, Int64) -> Void)?) throws -> Download {
        let relative = Self.objectKey(sha256: manifest.object.sha256)
        let size = manifest.object.size
        let rangeSize = size <= multipartThreshold ? max(size, 1) : partSize
        let ranges = Int((size + rangeSize - 1) / rangeSize)
        var done = [Int64](repeating: 0, count: ranges)
        if let record, let old = TransferRecords.read(DownloadRecord.self, record), old.version == 1, old.size == size,
           old.rangeSize == rangeSize, old.done.count == ranges,
           let onDisk = ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value {
            done = old.done.enumerated().map { i, d in
                let start = Int64(i) * rangeSize
                return max(0, min(d, min(rangeSize, size - start), onDisk - start))
            }
        }
        let resumed = done.contains { $0 > 0 }
        let fd = open(url.path, O_RDWR | O_CREAT | (resumed ? 0 : O_TRUNC), 0o644)
        guard fd >= 0 else { throw ZooError.io("cannot write \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let state = RangeState(size: size, rangeSize: rangeSize, done: done, record: record, progress: TransferCounter(total: size, report: progress))
        let hasher = Thread { state.hash(fd) }
        hasher.stackSize = 1 << 20
        hasher.start()
        do {
            try parallel(ranges) { i, client in
                let start = Int64(i) * rangeSize
                let length = min(rangeSize, size - start)
                var attempt = 1
                while state.done(i) < length {
                    let from = start + state.done(i)
                    var headers: [String: String] = [:]
                    if from > 0 || length < size { headers["Range"] = "bytes=\(from)-\(start + length - 1)" }
                    var written = from
                    do {
                        let r = try client.send("GET", self.key(relative), headers: headers, sink: { bytes in
                            // Never past the range (a server sending more breaks the request off).
                            let n = Int(min(Int64(bytes.count), start + length - written))
                            guard n == bytes.count, Self.writeAll(fd, bytes.baseAddress!, n, at: written) else { return false }
                            written += Int64(n)
                            state.advance(i, to: written - start)
                            return true
                        })
                        if r.status == 404 && r.errorCode != "NoSuchBucket" {
                            throw ZooError.io("the object of entry \(manifest.id.prefix(12)) is missing on remote \(self.config.name) (\(self.display)/\(relative)); push the entry again from a zoo that holds it")
                        }
                        guard r.status == 206 || (r.status == 200 && headers.isEmpty) else { throw self.failure("GET", relative, r) }
                        guard state.done(i) == length else {
                            throw ZooError.corrupt("the object of entry \(manifest.id.prefix(12)) on remote \(self.config.name) is corrupt: \(self.display)/\(relative) is shorter than the \(size) bytes its manifest says; not imported")
                        }
                    } catch ZooError.io(let message) {
                        guard attempt < client.attempts else { throw ZooError.io(message) }
                        attempt += 1
                        Thread.sleep(forTimeInterval: 0.2)
                    }
                }
                state.save()
            }
        } catch {
            state.finish(failed: true)
            _ = state.waitForHash()
            if case ZooError.corrupt = error { Self.discard(url, record) }
            throw error
        }
        written?()
        state.finish(failed: false)
        let sha = state.waitForHash()
        if let reason = state.flushError {
            Self.discard(url, record)
            throw ZooError.io("cannot flush \(url.path): \(reason)")
        }
        guard let sha, sha == manifest.object.sha256 else {
            Self.discard(url, record)
            if resumed {
                return try downloadObject(manifest, to: url, record: record, written: written, progress: progress)
            }
            throw ZooError.corrupt("the object of entry \(manifest.id.prefix(12)) on remote \(config.name) is corrupt: \(display)/\(relative) holds bytes with SHA-256 \(sha?.prefix(12) ?? "?"), its manifest says \(manifest.object.sha256.prefix(12)); not imported")
        }
        return Download(received: size - done.reduce(0, +))
    }

    private static func discard(_ url: URL, _ record: URL?) {
        unlink(url.path)
        if let record { unlink(record.path) }
    }

    /// `pwrite` of all `count` bytes at `offset`; false on an error.
    static func writeAll(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int, at offset: Int64) -> Bool {
        repeatAll(count) { done in pwrite(fd, base + done, count - done, off_t(offset + Int64(done))) }
    }

    /// Calls `step(bytes done so far)` (one `pread` or `pwrite`) until `count` bytes moved, again
    /// after `EINTR`; false when a step fails or moves nothing.
    private static func repeatAll(_ count: Int, _ step: (Int) -> Int) -> Bool {
        var done = 0
        while done < count {
            let n = step(done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }
}

/// The shared state of one download: bytes written per range (`done`), the resumable record, the
/// progress counter, and the SHA-256 that `hash` computes on its own thread over the bytes written
/// in order from the start of the file.
private final class RangeState: @unchecked Sendable {
    private let condition = NSCondition()
    private var written: [Int64]
    private var finished = false
    private var failed = false
    private var digest: String?
    private var hashed = false
    private var flushFailure: String?
    private var lastSave = Date()
    let size: Int64
    let rangeSize: Int64
    let record: URL?
    let progress: TransferCounter

    init(size: Int64, rangeSize: Int64, done: [Int64], record: URL?, progress: TransferCounter) {
        self.size = size
        self.rangeSize = rangeSize
        written = done
        self.record = record
        self.progress = progress
        for (i, d) in done.enumerated() where d > 0 { progress.set(i, d) }
    }

    func done(_ i: Int) -> Int64 { condition.withLock { written[i] } }

    /// Range `i` has `bytes` bytes on disk; saves the record when the last save is a second old.
    func advance(_ i: Int, to bytes: Int64) {
        let due: Bool = condition.withLock {
            written[i] = bytes
            condition.broadcast()
            guard record != nil, Date().timeIntervalSince(lastSave) >= 1 else { return false }
            lastSave = Date()
            return true
        }
        progress.set(i, bytes)
        if due { save() }
    }

    /// Writes the record (when there is one) with what is on disk now.
    func save() {
        guard let record else { return }
        let snapshot: DownloadRecord = condition.withLock {
            lastSave = Date()
            return DownloadRecord(size: size, rangeSize: rangeSize, done: written)
        }
        try? TransferRecords.write(snapshot, record)
    }

    func finish(failed: Bool) {
        condition.withLock {
            finished = true
            self.failed = failed
            condition.broadcast()
        }
    }

    /// Bytes on disk without a gap from the start of the file.
    private var contiguous: Int64 {
        var end: Int64 = 0
        for (i, d) in written.enumerated() {
            end = Int64(i) * rangeSize + d
            if d < min(rangeSize, size - Int64(i) * rangeSize) { break }
        }
        return end
    }

    /// The hashing thread: reads the file behind the download (from the page cache) until all of
    /// it is hashed, or the download failed. It also flushes what it has hashed (`fdatasync` every
    /// `flushStep` bytes and at the end), so the file is on disk when its digest is reported,
    /// mostly written while the rest was still arriving.
    func hash(_ fd: Int32) {
        var hasher = SHA256()
        var offset: Int64 = 0
        var flushedTo: Int64 = 0
        let flushStep: Int64 = 16 << 20
        let block = 4 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 64)
        defer { buffer.deallocate() }
        var ok = true
        while offset < size {
            if offset - flushedTo >= flushStep {
                guard flush(fd) else { ok = false; break }
                flushedTo = offset
            }
            let end: Int64? = condition.withLock {
                while !failed && !finished && contiguous <= offset { condition.wait() }
                return failed || contiguous <= offset ? nil : contiguous
            }
            guard let end else { ok = false; break }
            while offset < end {
                let n = pread(fd, buffer, min(block, Int(end - offset)), off_t(offset))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { ok = false; break }
                hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: n))
                offset += Int64(n)
            }
            if !ok { break }
        }
        if ok && offset == size && !flush(fd) { ok = false }
        let result = ok && offset == size ? lowercaseHex(hasher.finalize()) : nil
        condition.withLock {
            digest = result
            hashed = true
            condition.broadcast()
        }
    }

    /// `fdatasync`; on failure records the reason in `flushError`.
    private func flush(_ fd: Int32) -> Bool {
        guard fdatasync(fd) != 0 else { return true }
        let reason = String(cString: strerror(errno))
        condition.withLock { flushFailure = reason }
        return false
    }

    /// Why flushing the file failed, if it did (then `waitForHash` returns nil).
    var flushError: String? { condition.withLock { flushFailure } }

    /// The SHA-256 of the whole file once `hash` is done; nil when the download failed or a read
    /// or flush did.
    func waitForHash() -> String? {
        condition.withLock {
            while !hashed { condition.wait() }
            return digest
        }
    }
}
