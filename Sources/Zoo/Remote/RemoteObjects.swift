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
    /// SHA-256 (64 hex) and size of a file, read in 4 MiB blocks.
    static func sha256(of url: URL) throws -> (sha256: String, size: Int64) {
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw ZooError.io("cannot read \(url.path): \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        while let block = try handle.read(upToCount: 4 << 20), !block.isEmpty {
            hasher.update(data: block)
            size += Int64(block.count)
        }
        return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), size)
    }

    /// Uploads the file at `url` as `objects/<sha256>.h5` unless the remote holds that object:
    /// one conditional PUT (`If-None-Match: *`) up to `multipartThreshold` bytes, else a multipart
    /// upload of `partSize` parts over parallel connections completed with `If-None-Match: *`. A failed
    /// multipart upload is aborted; one whose process was killed is aborted by `gc --remote` later.
    /// - Returns: true when this call stored the object, false when the remote had it already.
    /// - Throws: `ZooError.io` for transport failures and refused requests.
    func uploadObject(_ url: URL, sha256: String, size: Int64, progress: (@Sendable (Int64, Int64) -> Void)?) throws -> Bool {
        let relative = Self.objectKey(sha256: sha256)
        if try exists(relative) { return false }
        let counter = TransferCounter(total: size, report: progress)
        if size <= multipartThreshold {
            let r = try client.send("PUT", key(relative), headers: ["If-None-Match": "*"], body: .file(path: url.path, offset: 0, length: size),
                                    progress: { counter.set(0, $0) })
            if r.status == 412 { return false }
            guard r.status == 200 else { throw failure("PUT", relative, r) }
            return true
        }
        let start = try client.send("POST", key(relative), query: [("uploads", "")])
        guard start.status == 200, let uploadID = XMLRecords.firstValue("UploadId", in: start.body), !uploadID.isEmpty else {
            throw failure("POST (start multipart upload)", relative, start)
        }
        let parts = Int((size + partSize - 1) / partSize)
        let etags = Locked<[Int: String]>([:])
        do {
            let partSize = self.partSize
            try parallel(parts) { i, client in
                let offset = Int64(i) * partSize
                let length = min(partSize, size - offset)
                let r = try client.send("PUT", self.key(relative), query: [("partNumber", "\(i + 1)"), ("uploadId", uploadID)],
                                        body: .file(path: url.path, offset: offset, length: length), progress: { counter.set(i, $0) })
                guard r.status == 200, let etag = r.etag else { throw self.failure("PUT (part \(i + 1) of \(parts))", relative, r) }
                etags.update { $0[i + 1] = etag }
            }
            let all = etags.value
            var xml = "<CompleteMultipartUpload>"
            for n in 1...parts { xml += "<Part><PartNumber>\(n)</PartNumber><ETag>\(all[n]!)</ETag></Part>" }
            xml += "</CompleteMultipartUpload>"
            let done = try client.send("POST", key(relative), query: [("uploadId", uploadID)], headers: ["If-None-Match": "*"], body: .data(Data(xml.utf8)))
            if done.status == 412 {
                try? abortUpload(relative, uploadID)
                return false
            }
            // S3 may answer 200 and still report an error in the body.
            guard done.status == 200, done.errorCode == nil else { throw failure("POST (complete multipart upload)", relative, done) }
            return true
        } catch {
            try? abortUpload(relative, uploadID)
            throw error
        }
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

    /// Downloads the object `manifest` names to `url` (created or truncated) and checks its size and
    /// SHA-256 against the manifest. Objects above `multipartThreshold` come in `partSize` ranges over
    /// parallel connections.
    /// - Throws: `ZooError.corrupt` naming the entry when the bytes differ from the manifest
    ///   (the file at `url` is then removed), `.io` for a missing object or a broken transfer.
    func downloadObject(_ manifest: RemoteManifest, to url: URL, progress: (@Sendable (Int64, Int64) -> Void)?) throws {
        let relative = Self.objectKey(sha256: manifest.object.sha256)
        let size = manifest.object.size
        let counter = TransferCounter(total: size, report: progress)
        guard let created = fopen(url.path, "wb") else { throw ZooError.io("cannot write \(url.path): \(String(cString: strerror(errno)))") }
        fclose(created)
        let ranges = size <= multipartThreshold ? 1 : Int((size + partSize - 1) / partSize)
        let partSize = self.partSize
        do {
            try parallel(ranges) { i, client in
                guard let file = fopen(url.path, "r+b") else { throw ZooError.io("cannot write \(url.path): \(String(cString: strerror(errno)))") }
                defer { fclose(file) }
                var headers: [String: String] = [:]
                if ranges > 1 {
                    let offset = Int64(i) * partSize
                    fseeko(file, off_t(offset), SEEK_SET)
                    headers["Range"] = "bytes=\(offset)-\(min(offset + partSize, size) - 1)"
                }
                let r = try client.send("GET", self.key(relative), headers: headers, download: file, progress: { counter.set(i, $0) })
                if r.status == 404 && r.errorCode != "NoSuchBucket" {
                    throw ZooError.io("the object of entry \(manifest.id.prefix(12)) is missing on remote \(self.config.name) (\(self.display)/\(relative)); push the entry again from a zoo that holds it")
                }
                guard r.status == 200 || r.status == 206 else { throw self.failure("GET", relative, r) }
                guard fflush(file) == 0, ferror(file) == 0 else { throw ZooError.io("cannot write \(url.path): \(String(cString: strerror(errno)))") }
            }
            let got = try Self.sha256(of: url)
            guard got.size == size, got.sha256 == manifest.object.sha256 else {
                throw ZooError.corrupt("the object of entry \(manifest.id.prefix(12)) on remote \(config.name) is corrupt: \(display)/\(relative) holds \(got.size) bytes with SHA-256 \(got.sha256.prefix(12)), its manifest says \(size) bytes with SHA-256 \(manifest.object.sha256.prefix(12)); not imported")
            }
        } catch {
            unlink(url.path)
            throw error
        }
    }
}
