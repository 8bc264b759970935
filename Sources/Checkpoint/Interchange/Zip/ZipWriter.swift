import Foundation

/// Writes a ZIP archive (PKWARE APPNOTE.TXT 6.3.x) record by record.
///
/// - Records are stored (method 0) or deflated (method 8, zlib level 6), each with its CRC-32.
/// - zip64 structures (APPNOTE 4.5.3, 4.3.14-15) are written only where a size, offset or the
///   record count overflows the 32/16-bit fields, as `zipfile` and miniz do.
/// - `alignment`: when set, every record's data starts at a file offset that is a multiple of it,
///   by a local-header extra field with id `FB` (bytes `'F','B'`, little-endian length, `'Z'`
///   filler) — what PyTorch's `PyTorchStreamWriter` writes (caffe2/serialize/inline_container.cc,
///   `getPadding`, `kFieldAlignment = 64`) so `torch.load` can map storages in place.
/// - Data is streamed to a temporary file next to `url`; `finish()` publishes it through
///   `AtomicFile`, so a failed or abandoned writer never leaves a partial archive at `url`; the
///   temporary is registered with `TemporaryFiles`, so SIGINT/SIGTERM removes it as well.
public struct ZipWriter {
    /// Destination of the archive once `finish()` succeeds.
    public let url: URL
    /// Data alignment in bytes (64 for PyTorch), or nil for none.
    public let alignment: Int?
    private let sink: Sink

    public init(url: URL, alignment: Int? = nil) {
        self.init(url: url, alignment: alignment, zip64Limit: 0xFFFF_FFFF, countLimit: 0xFFFF)
    }

    /// Test hook: lowers the thresholds at which zip64 fields are used (as CPython's own zipfile
    /// tests lower `zipfile.ZIP64_LIMIT`), so the zip64 paths can be checked on small archives.
    init(url: URL, alignment: Int?, zip64Limit: Int, countLimit: Int) {
        precondition(alignment.map { $0 > 0 && $0 <= 0xFFFF } ?? true, "ZIP alignment must be 1...65535")
        self.url = url
        self.alignment = alignment
        self.sink = Sink(destination: url, zip64Limit: zip64Limit, countLimit: countLimit)
    }

    /// Appends a record.
    /// - Parameters:
    ///   - name: the record's path inside the archive (`archive/data.pkl`); must be unique.
    ///   - compress: deflate the data (method 8) instead of storing it (method 0).
    /// - Throws: `CheckpointError.invalid` for a duplicate or empty name or a writer already
    ///   finished; `CheckpointError.io` when the temporary file cannot be written.
    /// - Returns: the record's CRC-32.
    @discardableResult
    public mutating func add(name: String, data: Data, compress: Bool = false) throws -> UInt32 {
        try sink.add(name: name, data: data, compress: compress, alignment: alignment)
    }

    /// Writes the central directory and publishes the archive at `url` (atomic rename).
    /// - Throws: `CheckpointError.io` when writing, flushing or renaming fails.
    public func finish() throws {
        try sink.finish()
    }

    // MARK: -

    private struct Record {
        var name: [UInt8]
        var flags: UInt16
        var method: UInt16
        var crc: UInt32
        var compressedSize: Int
        var uncompressedSize: Int
        var offset: Int
    }

    /// Owns the temporary file; removes it if the writer is dropped without `finish()`.
    private final class Sink {
        let destination: URL
        let temporary: URL
        var handle: FileHandle?
        var cursor = 0
        var records: [Record] = []
        var names: Set<String> = []
        var finished = false
        let limit: Int
        let countLimit: Int

        init(destination: URL, zip64Limit: Int, countLimit: Int) {
            self.destination = destination
            self.limit = zip64Limit
            self.countLimit = countLimit
            // Next to the file finally written (a symbolic link's target), so that `finish()`
            // renames within one file system.
            let target = (try? AtomicFile.finalTarget(of: destination)) ?? destination
            self.temporary = target.deletingLastPathComponent().appendingPathComponent(
                TemporaryFiles.temporaryName(for: target.lastPathComponent, kind: "zip"))
        }

        /// Tracks the temporary for SIGINT/SIGTERM cleanup while it exists.
        var token: TemporaryFiles.Token?
        /// Held while the temporary exists, so no cleaner of abandoned temporaries removes it.
        var lock: TemporaryFileLock?

        deinit {
            try? handle?.close()
            if !finished { unlink(temporary.path) }
            lock?.release()
            TemporaryFiles.unregister(token)
        }

        private func open() throws -> FileHandle {
            if let handle { return handle }
            if token == nil { token = TemporaryFiles.register(temporary.path) }
            if lock == nil { lock = try TemporaryFileLock.createFile(temporary, for: destination) }
            let h = try AtomicFile.create(temporary, for: destination)
            handle = h
            return h
        }

        private func write(_ bytes: Data) throws {
            do {
                try open().write(contentsOf: bytes)
            } catch let e as CheckpointError {
                throw e
            } catch {
                throw CheckpointError.io("cannot write \(destination.path): \(AtomicFile.reason(error))")
            }
            cursor += bytes.count
        }

        func add(name: String, data: Data, compress: Bool, alignment: Int?) throws -> UInt32 {
            guard !finished else { throw CheckpointError.invalid("ZIP writer for \(destination.path) is already finished") }
            guard !name.isEmpty, !names.contains(name) else {
                throw CheckpointError.invalid("ZIP record name \(name.isEmpty ? "(empty)" : name) is empty or used twice")
            }
            let nameBytes = Array(name.utf8)
            guard nameBytes.count <= 0xFFFF else { throw CheckpointError.invalid("ZIP record name is longer than 65535 bytes") }
            let crc = ZipCodec.crc32(data)
            let payload = compress ? try ZipCodec.deflate(data) : data
            let method: UInt16 = compress ? 8 : 0
            let flags: UInt16 = nameBytes.allSatisfy({ $0 < 0x80 }) ? 0 : 0x800
            let zip64Sizes = data.count >= limit || payload.count >= limit

            var extra = Data()
            if zip64Sizes {
                extra.le16(0x0001); extra.le16(16)
                extra.le64(UInt64(data.count)); extra.le64(UInt64(payload.count))
            }
            if let alignment {
                let start = cursor + 30 + nameBytes.count + extra.count + 4
                let pad = (alignment - start % alignment) % alignment
                extra.append(contentsOf: [UInt8(ascii: "F"), UInt8(ascii: "B")])
                extra.le16(UInt16(pad))
                extra.append(Data(repeating: UInt8(ascii: "Z"), count: pad))
            }
            guard extra.count <= 0xFFFF else { throw CheckpointError.invalid("ZIP extra field for \(name) is too long") }

            var header = Data()
            header.le32(0x0403_4b50)
            header.le16(zip64Sizes ? 45 : 20)           // version needed to extract
            header.le16(flags)
            header.le16(method)
            header.le16(0); header.le16(0x21)            // DOS time 00:00:00, date 1980-01-01
            header.le32(crc)
            header.le32(zip64Sizes ? 0xFFFF_FFFF : UInt32(payload.count))
            header.le32(zip64Sizes ? 0xFFFF_FFFF : UInt32(data.count))
            header.le16(UInt16(nameBytes.count))
            header.le16(UInt16(extra.count))
            header.append(contentsOf: nameBytes)
            header.append(extra)

            let offset = cursor
            try write(header)
            try write(payload)
            records.append(Record(name: nameBytes, flags: flags, method: method, crc: crc,
                                  compressedSize: payload.count, uncompressedSize: data.count, offset: offset))
            names.insert(name)
            return crc
        }

        func finish() throws {
            guard !finished else { throw CheckpointError.invalid("ZIP writer for \(destination.path) is already finished") }
            _ = try open()
            let cdOffset = cursor
            var directory = Data()
            for r in records {
                var extra = Data()
                var fields = Data()
                if r.uncompressedSize >= limit { fields.le64(UInt64(r.uncompressedSize)) }
                if r.compressedSize >= limit { fields.le64(UInt64(r.compressedSize)) }
                if r.offset >= limit { fields.le64(UInt64(r.offset)) }
                if !fields.isEmpty {
                    extra.le16(0x0001); extra.le16(UInt16(fields.count)); extra.append(fields)
                }
                let zip64 = !fields.isEmpty
                directory.le32(0x0201_4b50)
                directory.le16(45)                      // made by: MS-DOS host, spec 4.5
                directory.le16(zip64 ? 45 : 20)
                directory.le16(r.flags)
                directory.le16(r.method)
                directory.le16(0); directory.le16(0x21)
                directory.le32(r.crc)
                directory.le32(r.compressedSize >= limit ? 0xFFFF_FFFF : UInt32(r.compressedSize))
                directory.le32(r.uncompressedSize >= limit ? 0xFFFF_FFFF : UInt32(r.uncompressedSize))
                directory.le16(UInt16(r.name.count))
                directory.le16(UInt16(extra.count))
                directory.le16(0)                       // comment length
                directory.le16(0)                       // disk number start
                directory.le16(0)                       // internal attributes
                directory.le32(0)                       // external attributes
                directory.le32(r.offset >= limit ? 0xFFFF_FFFF : UInt32(r.offset))
                directory.append(contentsOf: r.name)
                directory.append(extra)
            }
            try write(directory)
            let cdSize = directory.count
            let needs64 = records.count >= countLimit || cdOffset >= limit || cdSize >= limit
            var end = Data()
            if needs64 {
                let z64Offset = cursor
                end.le32(0x0606_4b50)
                end.le64(44)                            // size of the remaining record
                end.le16(45); end.le16(45)
                end.le32(0); end.le32(0)                // this disk, disk with the directory
                end.le64(UInt64(records.count)); end.le64(UInt64(records.count))
                end.le64(UInt64(cdSize)); end.le64(UInt64(cdOffset))
                end.le32(0x0706_4b50)                   // zip64 end of central directory locator
                end.le32(0)
                end.le64(UInt64(z64Offset))
                end.le32(1)
            }
            end.le32(0x0605_4b50)
            end.le16(0); end.le16(0)
            let count16: UInt16 = records.count >= countLimit ? 0xFFFF : UInt16(records.count)
            end.le16(count16); end.le16(count16)
            end.le32(cdSize >= limit ? 0xFFFF_FFFF : UInt32(cdSize))
            end.le32(cdOffset >= limit ? 0xFFFF_FFFF : UInt32(cdOffset))
            end.le16(0)                                 // comment length
            try write(end)
            do { try handle?.close() } catch {
                throw CheckpointError.io("cannot write \(destination.path): \(AtomicFile.reason(error))")
            }
            handle = nil
            let source = temporary
            try AtomicFile.write(to: destination) { tmp in
                guard rename(source.path, tmp.path) == 0 else {
                    throw CheckpointError.io("cannot write \(destination.path): \(String(cString: strerror(errno)))")
                }
            }
            finished = true
            lock?.release()
            lock = nil
            TemporaryFiles.unregister(token)
            token = nil
        }
    }
}

extension Data {
    /// Little-endian appends for binary headers.
    fileprivate mutating func le16(_ v: UInt16) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
    fileprivate mutating func le32(_ v: UInt32) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
    fileprivate mutating func le64(_ v: UInt64) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
}
