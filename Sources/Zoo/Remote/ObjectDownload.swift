import Checkpoint
import Crypto
import Foundation

extension RemoteStore {
    /// What `downloadObject` did.
    struct Download {
        /// Bytes received by this call (less than the object's size when it resumed).
        var received: Int64
        /// The content id hashed through the object's tensor index while the bytes arrived (equal to
        /// the manifest's id, or the download fails); nil when the manifest has no `nonTensorSHA256`
        /// and the object was checked by its SHA-256. It is the file's content id once a reader finds
        /// the index to agree with the file's HDF5 metadata (`UntrustedCheckpointFile.read(_:reader:zooObject:)`).
        var contentID: String?
        /// Health scans of the float32 tensors, hashed through the index (`HealthCheck.scanKey` ->
        /// scan), for `EntryDetails(_:scanned:)`; empty when the object was checked by its SHA-256.
        var scans: [String: ValueScan] = [:]
    }

    /// The largest object `pull` accepts: 1 TiB (2^40 bytes; a ResNet-50 entry is about 100 MB). The
    /// download plans one range per `partSize` bytes before the first request, so a manifest's size
    /// is bounded before it is planned with.
    static let maxObjectSize: Int64 = 1 << 40

    /// Checks, before anything is planned, allocated or written, that the object `manifest` names
    /// is on the server with the manifest's size (a HEAD request: its `Content-Length`), and that
    /// the size is at most `maxObjectSize` (schemas/remote.md, "Pull").
    /// - Throws: `ZooError.corrupt` naming the entry and the remote when the sizes differ or exceed
    ///   the cap; `.io` for a missing object or a failed request.
    func checkObjectSize(_ manifest: RemoteManifest) throws {
        let relative = Self.objectKey(sha256: manifest.object.sha256)
        let size = manifest.object.size
        let r = try client.send("HEAD", key(relative))
        if r.status == 404 { throw missingObject(manifest, relative) }
        guard r.status == 200 else { throw failure("HEAD", relative, r) }
        guard let length = r.headers["content-length"].flatMap({ Int64($0) }), length >= 0 else {
            throw ZooError.io("HEAD \(display)/\(relative) answered without a Content-Length; cannot check the object of entry \(manifest.id.prefix(12)) on remote \(config.name)")
        }
        guard length == size else {
            throw ZooError.corrupt("the object of entry \(manifest.id.prefix(12)) on remote \(config.name) is corrupt: \(display)/\(relative) holds \(length) bytes, its manifest says \(size); not imported")
        }
        try checkObjectCap(manifest)
    }

    /// Fails when the manifest's object is larger than `maxObjectSize`.
    private func checkObjectCap(_ manifest: RemoteManifest) throws {
        guard manifest.object.size <= Self.maxObjectSize else {
            throw ZooError.corrupt("the object of entry \(manifest.id.prefix(12)) on remote \(config.name) is \(manifest.object.size) bytes, more than the \(Self.maxObjectSize) (1 TiB) a pull accepts; not imported")
        }
    }

    private func missingObject(_ manifest: RemoteManifest, _ relative: String) -> ZooError {
        ZooError.io("the object of entry \(manifest.id.prefix(12)) is missing on remote \(config.name) (\(display)/\(relative)); push the entry again from a zoo that holds it")
    }

    /// Downloads the object `manifest` names to `url` and checks it against the manifest
    /// (schemas/remote.md, "Pull"). Objects above `multipartThreshold` come in ranges of `partSize`
    /// bytes over parallel connections, smaller ones in one. One thread hashes the bytes once, as
    /// they reach the disk, reading them through a mapping of the file: when the manifest has
    /// `nonTensorSHA256`, the content id through the tensor index the object opens with (each
    /// tensor once its bytes are written; float32 tensors are scanned for the health warnings on
    /// the way, `Download.scans`) and the SHA-256 of the other bytes (`ObjectDigests`); else the
    /// SHA-256 of the whole file, in order. Another thread flushes the file as it is written. A
    /// range whose connection breaks is asked again from where it stopped (`client.attempts` times).
    ///
    /// With `record` (see `DownloadRecord`), the download is resumable: what each range wrote is
    /// saved there as it arrives (at least once a second), and a download finding a record of the
    /// same object asks only for the rest; if the bytes then fail the check, it downloads the whole
    /// object once more before it calls the object corrupt.
    /// - Parameter written: called on this thread each time every byte is written, before the
    ///   check is complete (a caller may start reading the file; its bytes are not verified yet).
    /// - Returns: the bytes received, the content id hashed and the health scans. The file is flushed to disk
    ///   (`fdatasync`) by the time this returns.
    /// - Throws: `ZooError.corrupt` naming the entry when the bytes differ from the manifest
    ///   (`url` and `record` are then removed), `.io` for a missing object, a broken transfer or a
    ///   failed flush.
    @discardableResult
    func downloadObject(_ manifest: RemoteManifest, to url: URL, record: URL? = nil, written: (() -> Void)? = nil,
                        progress: (@Sendable (Int64, Int64) -> Void)?) throws -> Download {
        let relative = Self.objectKey(sha256: manifest.object.sha256)
        let size = manifest.object.size
        // The caller checked the size against the server (`checkObjectSize`); the cap bounds the plan below regardless.
        try checkObjectCap(manifest)
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
        // The hashing thread reads the bytes through a mapping of the whole object (only bytes
        // already written, so never past the end of the file), not copies of them.
        let mapping = size > 0 ? mmap(nil, Int(size), PROT_READ, MAP_SHARED, fd, 0) : nil
        guard mapping != MAP_FAILED else { throw ZooError.io("cannot map \(url.path): \(String(cString: strerror(errno)))") }
        defer { if let mapping { munmap(mapping, Int(size)) } }
        let address = UInt(bitPattern: mapping)   // a pointer is not Sendable; the thread below ends before the unmapping
        let state = RangeState(entry: manifest.id, size: size, rangeSize: rangeSize, done: done, record: record, progress: TransferCounter(total: size, report: progress))
        let byIndex = manifest.object.nonTensorSHA256 != nil
        let name = url.lastPathComponent
        let hasher = Thread { state.hash(fd, UnsafeRawPointer(bitPattern: address), byIndex: byIndex, fileName: name) }
        hasher.stackSize = 1 << 20
        hasher.start()
        // Another thread flushes what is written every `flushStep` bytes, so the disk writes run
        // beside the download and the hashing (an `fdatasync` on the hashing thread stalled it).
        let flusher = Thread { state.flushWhileWriting(fd) }
        flusher.stackSize = 1 << 20
        flusher.start()
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
                        if r.status == 404 && r.errorCode != "NoSuchBucket" { throw self.missingObject(manifest, relative) }
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
            state.waitForFlusher()
            if case ZooError.corrupt = error { Self.discard(url, record) }
            throw error
        }
        written?()
        state.finish(failed: false)
        let digests = state.waitForHash()
        state.waitForFlusher()
        if let reason = state.flushError {
            Self.discard(url, record)
            throw ZooError.io("cannot flush \(url.path): \(reason)")
        }
        if let problem = mismatch(digests, manifest, at: relative) {
            Self.discard(url, record)
            if resumed {
                return try downloadObject(manifest, to: url, record: record, written: written, progress: progress)
            }
            throw ZooError.corrupt("the object of entry \(manifest.id.prefix(12)) on remote \(config.name) is corrupt: \(problem); not imported")
        }
        return Download(received: size - done.reduce(0, +), contentID: digests.contentID, scans: digests.scans)
    }

    /// How the digests of a download differ from its manifest; nil when they agree.
    private func mismatch(_ d: Digests, _ manifest: RemoteManifest, at relative: String) -> String? {
        let object = "\(display)/\(relative)"
        if let failure = d.failure { return "\(object): \(failure)" }
        if let expected = manifest.object.nonTensorSHA256 {
            guard let id = d.contentID, let rest = d.nonTensorSHA256 else { return "\(object) could not be hashed" }
            if id != manifest.id { return "it holds content \(id.prefix(12))" }
            if rest != expected {
                return "\(object) holds bytes outside its tensors with SHA-256 \(rest.prefix(12)), its manifest says \(expected.prefix(12))"
            }
            return nil
        }
        guard let sha = d.sha256, sha == manifest.object.sha256 else {
            return "\(object) holds bytes with SHA-256 \(d.sha256?.prefix(12) ?? "?"), its manifest says \(manifest.object.sha256.prefix(12))"
        }
        return nil
    }

    private static func discard(_ url: URL, _ record: URL?) {
        unlink(url.path)
        if let record { unlink(record.path) }
    }

    /// `pwrite` of all `count` bytes at `offset`; false on an error.
    static func writeAll(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int, at offset: Int64) -> Bool {
        repeatAll(count) { done in pwrite(fd, base + done, count - done, off_t(offset + Int64(done))) }
    }

    /// `pread` of all `count` bytes at `offset`; false on an error or a short file.
    static func readAll(_ fd: Int32, _ base: UnsafeMutableRawPointer, _ count: Int, at offset: Int64) -> Bool {
        repeatAll(count) { done in pread(fd, base + done, count - done, off_t(offset + Int64(done))) }
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

/// What the hashing thread of a download computed: the SHA-256 of the whole file, or the content id
/// through the tensor index and the SHA-256 of the other bytes; `failure` says why neither (an
/// object without a readable tensor index).
private struct Digests {
    var sha256: String?
    var contentID: String?
    var nonTensorSHA256: String?
    var scans: [String: ValueScan] = [:]
    var failure: String?
}

/// The shared state of one download: bytes written per range (`done`), the resumable record, the
/// progress counter, and the digests that `hash` computes on its own thread from the bytes once
/// they are written.
private final class RangeState: @unchecked Sendable {
    private let condition = NSCondition()
    private var written: [Int64]
    /// Sum of `written`.
    private var total: Int64
    private var finished = false
    private var failed = false
    private var digests: Digests?
    private var flushFailure: String?
    private var flusherDone = false
    private var lastSave = Date()
    /// The content id of the entry whose object is downloaded (`DownloadRecord.entry`).
    let entry: String
    let size: Int64
    let rangeSize: Int64
    let record: URL?
    let progress: TransferCounter
    /// Bytes hashed at a time at most; the file is flushed each time `flushStep` more are written.
    private let block = 1 << 20
    private let flushStep: Int64 = 16 << 20

    init(entry: String, size: Int64, rangeSize: Int64, done: [Int64], record: URL?, progress: TransferCounter) {
        self.entry = entry
        self.size = size
        self.rangeSize = rangeSize
        written = done
        total = done.reduce(0, +)
        self.record = record
        self.progress = progress
        for (i, d) in done.enumerated() where d > 0 { progress.set(i, d) }
    }

    func done(_ i: Int) -> Int64 { condition.withLock { written[i] } }

    /// Range `i` has `bytes` bytes on disk; saves the record when the last save is a second old.
    func advance(_ i: Int, to bytes: Int64) {
        let due: Bool = condition.withLock {
            total += bytes - written[i]
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
            return DownloadRecord(entry: entry, size: size, rangeSize: rangeSize, done: written)
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

    /// The end of the bytes on disk from `offset` on without a gap, at most `limit` (each range is
    /// written in order from its start); `offset` when byte `offset` is not yet written.
    private func writtenEnd(from offset: Int64, limit: Int64) -> Int64 {
        var end = offset
        var i = Int(offset / rangeSize)
        while end < limit && i < written.count {
            let start = Int64(i) * rangeSize
            guard start + written[i] > end else { break }
            end = min(start + written[i], limit)
            if written[i] < min(rangeSize, size - start) { break }
            i += 1
        }
        return end
    }

    /// Passes the bytes of `range` to `update`, piece by piece as they are written (from the
    /// mapping of the file at `base`, `block` bytes at most); false when the download failed first.
    private func feed(_ base: UnsafeRawPointer?, _ range: Range<Int64>, _ update: (UnsafeRawBufferPointer) -> Void) -> Bool {
        var offset = range.lowerBound
        while offset < range.upperBound {
            let limit = min(range.upperBound, offset + Int64(block))
            let end: Int64? = condition.withLock {
                while !failed && !finished && writtenEnd(from: offset, limit: limit) == offset { condition.wait() }
                let end = writtenEnd(from: offset, limit: limit)
                return failed || end == offset ? nil : end
            }
            guard let end else { return false }
            update(UnsafeRawBufferPointer(start: base! + Int(offset), count: Int(end - offset)))
            offset = end
        }
        return true
    }

    /// The hashing thread: the digests of the file behind the download, from its bytes as they are
    /// written, until all of them are hashed or the download failed; then the last flush, so the
    /// file is on disk when the digests are reported.
    /// - Parameter byIndex: hash the content id through the tensor index the file opens with and
    ///   the SHA-256 of the other bytes (`ObjectDigests`); else the SHA-256 of the whole file.
    func hash(_ fd: Int32, _ base: UnsafeRawPointer?, byIndex: Bool, fileName: String) {
        var result = Digests()
        var ok = true
        if !byIndex {
            var sha = SHA256()
            ok = feed(base, 0..<size) { sha.update(bufferPointer: $0) }
            if ok { result.sha256 = lowercaseHex(sha.finalize()) }
        } else {
            do {
                if let index = try readIndex(base, fileName: fileName) {
                    var scans: [String: ValueScan] = [:]
                    result.contentID = try ContentID.compute(index) { entry, update in
                        let start = Int64(entry.offset)
                        // The health scan of a float32 tensor reads its bytes while they are in the cache.
                        var scan = entry.dtype == .float32 && HealthCheck.scans(key: entry.key, dtype: entry.dtype) ? ValueScan.Float32Pieces() : nil
                        guard feed(base, start..<start + Int64(entry.byteCount), { piece in
                            guard scan != nil else { return update(piece) }
                            // In steps the size of a core's cache: the scan reads what the hash just read.
                            var at = 0
                            while at < piece.count {
                                let step = UnsafeRawBufferPointer(rebasing: piece[at..<min(piece.count, at + (256 << 10))])
                                update(step)
                                scan!.add(step)
                                at += step.count
                            }
                        }) else { throw CancellationError() }
                        if let scan { scans[HealthCheck.scanKey(entry.component, entry.key)] = scan.scan }
                    }
                    result.scans = scans
                    var rest = SHA256()
                    for range in ObjectDigests.nonTensorRanges(index, fileSize: size) {
                        guard feed(base, range, { rest.update(bufferPointer: $0) }) else { throw CancellationError() }
                    }
                    result.nonTensorSHA256 = lowercaseHex(rest.finalize())
                } else {
                    result.failure = "no tensor index, which the manifest's digest of the bytes outside the tensors requires"
                }
            } catch let error as CheckpointError {
                result.failure = error.description
            } catch {
                ok = false
            }
        }
        // Every byte was hashed (index, tensors and the rest cover the file), so all are written.
        if ok && result.failure == nil && !flush(fd) { ok = false }
        let reported = ok ? result : Digests()
        condition.withLock {
            digests = reported
            condition.broadcast()
        }
    }

    /// The tensor index the file opens with, read once its bytes are written; nil when the file
    /// opens otherwise.
    /// - Throws: `CheckpointError.corrupt` for a malformed index; `CancellationError` when the
    ///   download failed first.
    private func readIndex(_ base: UnsafeRawPointer?, fileName: String) throws -> TensorIndex? {
        var head: [UInt8] = []
        func read(_ count: Int64) throws {
            guard feed(base, Int64(head.count)..<count, { head.append(contentsOf: $0) }) else { throw CancellationError() }
        }
        try read(min(size, 64 << 10))
        guard let length = head.withUnsafeBytes({ TensorIndex.blockLength($0) }) else { return nil }
        guard Int64(length) <= size else {
            throw CheckpointError.corrupt("\(fileName): the tensor index claims \(length) bytes, more than the \(size)-byte file holds")
        }
        if length > head.count { try read(Int64(length)) }
        return try head.withUnsafeBytes { try TensorIndex.decode($0, fileSize: size, fileName: fileName) }
    }

    /// `fdatasync`; on failure records the reason in `flushError`.
    private func flush(_ fd: Int32) -> Bool {
        guard fdatasync(fd) != 0 else { return true }
        let reason = String(cString: strerror(errno))
        condition.withLock { flushFailure = reason }
        return false
    }

    /// The flushing thread: `fdatasync` each time `flushStep` more bytes are written, until the
    /// download ends (then `hash` flushes the rest) or a flush fails.
    func flushWhileWriting(_ fd: Int32) {
        var flushed: Int64 = 0
        while true {
            let due: Int64? = condition.withLock {
                while !failed && !finished && flushFailure == nil && total - flushed < flushStep { condition.wait() }
                return failed || finished || flushFailure != nil ? nil : total
            }
            guard let due, flush(fd) else { break }
            flushed = due
        }
        condition.withLock {
            flusherDone = true
            condition.broadcast()
        }
    }

    /// Returns once `flushWhileWriting` has ended (after `finish`).
    func waitForFlusher() {
        condition.withLock { while !flusherDone { condition.wait() } }
    }

    /// Why flushing the file failed, if it did (then `waitForHash` reports no digest).
    var flushError: String? { condition.withLock { flushFailure } }

    /// The digests once `hash` is done: empty when the download failed or a read or flush did.
    func waitForHash() -> Digests {
        condition.withLock {
            while digests == nil { condition.wait() }
            return digests!
        }
    }
}
