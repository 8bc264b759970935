import Foundation

/// One record of a ZIP archive, as its central directory describes it.
///
/// Sizes are in bytes; `localHeaderOffset` is the file offset of the record's local header
/// (APPNOTE 4.3.7). zip64 values (APPNOTE 4.5.3) are already substituted.
public struct ZipEntry: Sendable, Equatable {
    /// Name as stored (UTF-8 when general-purpose bit 11 is set, otherwise CP437 read as Latin-1).
    public var name: String
    /// 0 = stored, 8 = deflated (APPNOTE 4.4.5); anything else is refused when read.
    public var method: UInt16
    /// General-purpose bit flag (APPNOTE 4.4.4); bit 0 = encrypted.
    public var flags: UInt16
    /// CRC-32 of the uncompressed data as the central directory records it.
    public var crc32: UInt32
    public var compressedSize: Int
    public var uncompressedSize: Int
    public var localHeaderOffset: Int

    /// True for folder entries (`name/`).
    public var isDirectory: Bool { name.hasSuffix("/") }
}

/// A ZIP archive opened for reading (PKWARE APPNOTE.TXT 6.3.x, https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT).
///
/// The file is memory-mapped; records are read on demand. Supports zip64, stored and deflated
/// records; every read verifies the record's CRC-32. Written for `torch.save` archives (records at
/// 64-byte aligned offsets, see `ZipWriter`) and `numpy.savez` archives.
public struct ZipArchive: Sendable {
    /// Records in central-directory order.
    public let entries: [ZipEntry]
    /// The file's total size in bytes.
    public let fileSize: Int
    private let bytes: Data
    /// The mapping of a file opened by URL: records are handed out as views of it, not copies.
    private let mapped: MappedFile?
    private let path: String

    /// Opens `url` and parses its central directory.
    /// - Throws: `CheckpointError.io` when the file cannot be read; `CheckpointError.corrupt`
    ///   ("model.pth: truncated ZIP: file is N bytes, ...", "model.pth: damaged ZIP: records a and b
    ///   share bytes": every directory error starts with the file's name) when the end-of-central-directory
    ///   record is missing, the directory points past the end of the file or its records overlap;
    ///   `CheckpointError.notACheckpoint` when the file is not a ZIP at all.
    public init(url: URL) throws {
        let mapped = try MappedFile(url)
        try self.init(data: mapped.data(0, mapped.size), path: url.path, name: url.lastPathComponent, mapped: mapped)
    }

    /// Parses an archive held in memory; `path` is used in messages.
    public init(data: Data, path: String = "<memory>") throws {
        try self.init(data: data, path: path, name: nil, mapped: nil)
    }

    /// `name`, when given, starts every `corrupt` message of the central directory (`name: damaged ZIP: ...`).
    private init(data: Data, path: String, name: String?, mapped: MappedFile?) throws {
        self.bytes = data.startIndex == 0 ? data : Data(data)
        self.mapped = mapped
        self.path = path
        self.fileSize = data.count
        do {
            self.entries = try Self.parseDirectory(self.bytes, path: path)
        } catch CheckpointError.corrupt(let message) where name != nil {
            throw CheckpointError.corrupt("\(name!): \(message)")
        }
    }

    /// Entry with exactly this name, if any.
    public func entry(named name: String) -> ZipEntry? {
        entries.first { $0.name == name }
    }

    /// File offset of the first byte of `entry`'s (possibly compressed) data, taken from its local
    /// header: `localHeaderOffset + 30 + name length + extra length` (APPNOTE 4.3.7).
    /// - Throws: `CheckpointError.corrupt` when the local header is missing or out of range.
    public func dataOffset(for entry: ZipEntry) throws -> Int {
        let at = entry.localHeaderOffset
        guard at >= 0, at + 30 <= fileSize else {
            throw CheckpointError.corrupt("truncated ZIP: file is \(fileSize) bytes, record \(entry.name) starts at byte \(at)")
        }
        return try bytes.withUnsafeBytes { raw -> Int in
            guard raw.u32(at) == 0x0403_4b50 else {
                throw CheckpointError.corrupt("damaged ZIP: no local header for \(entry.name) at byte \(at)")
            }
            return at + 30 + Int(raw.u16(at + 26)) + Int(raw.u16(at + 28))
        }
    }

    /// The uncompressed bytes of `entry`, CRC-32 verified.
    /// - Throws: `CheckpointError.corrupt` for "truncated ZIP" (data past the end of the file),
    ///   "CRC mismatch in <name>: corrupted, or written with CRC disabled", or invalid deflate data;
    ///   `CheckpointError.unsupported` for encrypted records or methods other than stored/deflated.
    public func data(for entry: ZipEntry) throws -> Data {
        let raw = try rawData(for: entry)
        let out: Data
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.uncompressedSize else {
                throw CheckpointError.corrupt("damaged ZIP: stored record \(entry.name) has compressed size \(entry.compressedSize) but size \(entry.uncompressedSize)")
            }
            out = raw
        case 8:
            out = try ZipCodec.inflate(raw, expectedSize: entry.uncompressedSize, name: entry.name)
        default:
            throw CheckpointError.unsupported("ZIP record \(entry.name) uses compression method \(entry.method); only stored (0) and deflated (8) are supported")
        }
        let crc = ZipCodec.crc32(out)
        guard crc == entry.crc32 else {
            throw CheckpointError.corrupt("CRC mismatch in \(entry.name): corrupted, or written with CRC disabled")
        }
        // A stored record is a view of the mapped file: its pages, read once for the CRC, need not
        // stay resident until the record's bytes are used (`MappedPages`).
        if entry.method == 0 { MappedPages.release(out) }
        return out
    }

    /// `data(for:)` of several records at once, spread over the machine's cores (CRC-32 and inflating
    /// dominate reading a `.pth`): record name -> its bytes or the error `data(for:)` throws.
    public func data(for entries: [ZipEntry]) -> [String: Result<Data, Error>] {
        let results = concurrentMap(entries.count) { i in Result { try self.data(for: entries[i]) } }
        var byName: [String: Result<Data, Error>] = [:]
        for (entry, result) in zip(entries, results) { byName[entry.name] = result }
        return byName
    }

    /// The stored bytes of `entry` without decompression or CRC check: a zero-copy view of the mapped
    /// file for an archive opened by URL (`MappedFile`), else a copy of the range.
    public func rawData(for entry: ZipEntry) throws -> Data {
        if entry.flags & 1 != 0 {
            throw CheckpointError.unsupported("ZIP record \(entry.name) is encrypted")
        }
        let start = try dataOffset(for: entry)
        let end = start + entry.compressedSize
        guard end <= fileSize else {
            throw CheckpointError.corrupt("truncated ZIP: file is \(fileSize) bytes, record \(entry.name) expects \(end)")
        }
        return mapped?.data(start, end) ?? bytes.subdata(in: start..<end)
    }

    // MARK: - Central directory

    private static func parseDirectory(_ data: Data, path: String) throws -> [ZipEntry] {
        try data.withUnsafeBytes { raw -> [ZipEntry] in
            let size = raw.count
            guard let eocd = findEndRecord(raw) else {
                if size >= 4, raw.u32(0) == 0x0403_4b50 {
                    let (end, last, count) = scanLocalRecords(raw)
                    if end > size {
                        throw CheckpointError.corrupt("truncated ZIP: file is \(size) bytes, record \(last) runs past its end"
                            + (end > size + 1 ? " (it expects \(end))" : ""))
                    }
                    throw CheckpointError.corrupt(
                        "truncated ZIP: file is \(size) bytes, its \(count) records end at byte \(end) and the central directory after them is missing or cut")
                }
                throw CheckpointError.notACheckpoint("\(path) is not a ZIP archive (no end-of-central-directory record)")
            }
            var count = Int(raw.u16(eocd + 10))
            var cdSize = Int(raw.u32(eocd + 12))
            var cdOffset = Int(raw.u32(eocd + 16))
            var cdEndExpected = eocd
            // zip64 end of central directory locator sits right before the EOCD (APPNOTE 4.3.15).
            if eocd >= 20, raw.u32(eocd - 20) == 0x0706_4b50 {
                let z64 = Int(clamping: raw.u64(eocd - 20 + 8))
                // Sizes read from the file are compared without adding to them: a clamped Int.max must not trap.
                guard z64 >= 0, z64 <= size - 56, raw.u32(z64) == 0x0606_4b50 else {
                    throw CheckpointError.corrupt("truncated ZIP: file is \(size) bytes, zip64 directory record expected at byte \(z64)")
                }
                count = Int(clamping: raw.u64(z64 + 32))
                cdSize = Int(clamping: raw.u64(z64 + 40))
                cdOffset = Int(clamping: raw.u64(z64 + 48))
                cdEndExpected = z64
            }
            guard cdOffset >= 0, cdSize >= 0, cdOffset <= size, cdSize <= size - cdOffset else {
                throw CheckpointError.corrupt(
                    "truncated ZIP: file is \(size) bytes, central directory of \(cdSize) bytes expected at byte \(cdOffset)")
            }
            // Bytes prepended to the archive (self-extractors) shift every offset; we do not accept them.
            if cdOffset + cdSize != cdEndExpected {
                throw CheckpointError.corrupt("damaged ZIP: central directory ends at byte \(cdOffset + cdSize), its end record is at \(cdEndExpected)")
            }
            // Each central directory entry takes at least 46 bytes.
            guard count >= 0, count <= cdSize / 46 else {
                throw CheckpointError.corrupt("damaged ZIP: \(count) records cannot fit in a \(cdSize)-byte central directory")
            }
            var entries: [ZipEntry] = []
            entries.reserveCapacity(count)
            var p = cdOffset
            for i in 0..<count {
                guard p + 46 <= cdOffset + cdSize, raw.u32(p) == 0x0201_4b50 else {
                    throw CheckpointError.corrupt("damaged ZIP: central directory entry \(i) of \(count) is missing at byte \(p)")
                }
                let flags = raw.u16(p + 8)
                let method = raw.u16(p + 10)
                let crc = raw.u32(p + 16)
                var csize = Int(raw.u32(p + 20))
                var usize = Int(raw.u32(p + 24))
                let nameLen = Int(raw.u16(p + 28))
                let extraLen = Int(raw.u16(p + 30))
                let commentLen = Int(raw.u16(p + 32))
                var offset = Int(raw.u32(p + 42))
                let next = p + 46 + nameLen + extraLen + commentLen
                guard next <= cdOffset + cdSize else {
                    throw CheckpointError.corrupt("damaged ZIP: central directory entry \(i) runs past the directory")
                }
                let nameBytes = UnsafeRawBufferPointer(rebasing: raw[(p + 46)..<(p + 46 + nameLen)])
                let name = (flags & 0x800 != 0 ? String(bytes: nameBytes, encoding: .utf8) : nil)
                    ?? String(bytes: nameBytes, encoding: .utf8)
                    ?? String(bytes: nameBytes, encoding: .isoLatin1) ?? ""
                // zip64 extended information: only the fields whose 32-bit value is 0xFFFFFFFF, in order.
                var e = p + 46 + nameLen
                let extraEnd = e + extraLen
                while e + 4 <= extraEnd {
                    let id = raw.u16(e)
                    let len = Int(raw.u16(e + 2))
                    if id == 0x0001 {
                        var q = e + 4
                        let qEnd = min(q + len, extraEnd)
                        if usize == 0xFFFF_FFFF, q + 8 <= qEnd { usize = Int(clamping: raw.u64(q)); q += 8 }
                        if csize == 0xFFFF_FFFF, q + 8 <= qEnd { csize = Int(clamping: raw.u64(q)); q += 8 }
                        if offset == 0xFFFF_FFFF, q + 8 <= qEnd { offset = Int(clamping: raw.u64(q)); q += 8 }
                    }
                    e += 4 + len
                }
                guard offset >= 0, csize >= 0, usize >= 0, offset <= size, csize <= size else {
                    throw CheckpointError.corrupt("damaged ZIP: record \(name) has sizes or offset out of range")
                }
                if offset + 30 + csize > cdOffset {
                    throw CheckpointError.corrupt("damaged ZIP: record \(name) at byte \(offset) with \(csize) bytes overlaps the central directory at byte \(cdOffset)")
                }
                entries.append(ZipEntry(name: name, method: method, flags: flags, crc32: crc,
                                        compressedSize: csize, uncompressedSize: usize, localHeaderOffset: offset))
                p = next
            }
            try checkDisjoint(entries)
            return entries
        }
    }

    /// Refuses records that share bytes: each record's local header and data, at least `30 +
    /// compressedSize` bytes from its header offset, must end before the next record starts.
    /// Archives that point many directory entries at one compressed record (an "overlapping" zip
    /// bomb) would otherwise inflate and CRC-check the same bytes once per entry: with disjoint
    /// records, everything read from an archive is at most the file's size in compressed bytes, so
    /// at most `bissl_deflate_max_expansion` (1032) times the file's size once inflated.
    /// - Throws: `CheckpointError.corrupt` naming both records.
    private static func checkDisjoint(_ entries: [ZipEntry]) throws {
        let byOffset = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.localHeaderOffset + 30 + a.compressedSize > b.localHeaderOffset {
            throw CheckpointError.corrupt(
                "damaged ZIP: records \(a.name) (byte \(a.localHeaderOffset), \(a.compressedSize) bytes) and \(b.name) (byte \(b.localHeaderOffset)) share bytes")
        }
    }

    /// Offset of the end-of-central-directory record, searching backwards over the last
    /// 22 + 65535 bytes (the record plus the longest comment), APPNOTE 4.3.16.
    private static func findEndRecord(_ raw: UnsafeRawBufferPointer) -> Int? {
        let size = raw.count
        guard size >= 22 else { return nil }
        let lowest = max(0, size - 22 - 0xFFFF)
        var p = size - 22
        while p >= lowest {
            if raw.u32(p) == 0x0605_4b50, p + 22 + Int(raw.u16(p + 20)) == size {
                return p
            }
            p -= 1
        }
        return nil
    }

    /// Walks local headers from the start of a damaged archive; returns the byte at which the last
    /// record found ends, its name and how many records were found (so a message can say how large
    /// the file must have been). Records with a data descriptor (general-purpose bit 3, sizes zero
    /// in the local header, as PyTorch's miniz writes them) end at their descriptor
    /// (APPNOTE 4.3.9: optional signature `PK\x07\x08`, CRC-32, compressed and uncompressed size).
    private static func scanLocalRecords(_ raw: UnsafeRawBufferPointer) -> (end: Int, name: String, count: Int) {
        var p = 0
        var end = 0
        var name = ""
        var count = 0
        while p + 30 <= raw.count, raw.u32(p) == 0x0403_4b50 {
            var csize = Int(raw.u32(p + 18))
            let nameLen = Int(raw.u16(p + 26))
            let extraLen = Int(raw.u16(p + 28))
            var e = p + 30 + nameLen
            let extraEnd = e + extraLen
            var zip64 = false
            while e + 4 <= min(extraEnd, raw.count) {
                let id = raw.u16(e)
                let len = Int(raw.u16(e + 2))
                if id == 0x0001 {
                    zip64 = true
                    if csize == 0xFFFF_FFFF, e + 4 + 16 <= raw.count { csize = Int(clamping: raw.u64(e + 4 + 8)) }
                }
                e += 4 + len
            }
            let nameEnd = min(p + 30 + nameLen, raw.count)
            name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[(p + 30)..<nameEnd]), as: UTF8.self)
            let dataStart = p + 30 + nameLen + extraLen
            if raw.u16(p + 6) & 0x8 != 0 {
                // Find the descriptor whose compressed size equals the distance travelled.
                guard let descriptorEnd = findDescriptor(raw, dataStart: dataStart, zip64: zip64) else {
                    return (max(end, raw.count + 1), name, count)
                }
                end = descriptorEnd
            } else {
                let (sum, overflow) = dataStart.addingReportingOverflow(csize)   // a damaged size must not trap
                end = overflow ? Int.max : sum
                if end > raw.count { break }
            }
            count += 1
            p = end
        }
        return (end, name, count)
    }

    private static func findDescriptor(_ raw: UnsafeRawBufferPointer, dataStart: Int, zip64: Bool) -> Int? {
        var q = dataStart
        let sizeBytes = zip64 ? 8 : 4
        while q + 4 + 4 + 2 * sizeBytes <= raw.count {
            if raw.u32(q) == 0x0807_4b50 {
                let csize = zip64 ? Int(truncatingIfNeeded: raw.u64(q + 8)) : Int(raw.u32(q + 8))
                if csize == q - dataStart { return q + 8 + 2 * sizeBytes }
            }
            q += 1
        }
        return nil
    }
}

extension UnsafeRawBufferPointer {
    /// Little-endian loads at a byte offset (callers check bounds).
    @inline(__always) fileprivate func u16(_ at: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
    @inline(__always) fileprivate func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    @inline(__always) fileprivate func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
}
