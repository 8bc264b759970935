import Foundation

/// What a file really is, judged from its bytes (never from its name).
public enum FileKind: Equatable, Sendable {
    /// `torch.save` zip container (a `<folder>/data.pkl` record), PyTorch >= 1.6.
    case pytorchZip
    /// `torch.save(..., _use_new_zipfile_serialization=False)` / pre-1.6 stream (pickled magic number first).
    case pytorchLegacy
    /// The pre-0.4 tar container (members `storages`, `tensors`, `pickle`).
    case pytorchTar
    /// `torch.jit.save` archive (zip with `constants.pkl` or `code/`).
    case torchScript
    /// A plain `pickle.dump`, with the globals its opcodes reference (`module.name`).
    case rawPickle(globals: [String])
    /// Hugging Face safetensors (8-byte little-endian header length, then a JSON object).
    case safetensors
    /// HDF5 (bissl's own format among others).
    case hdf5
    /// NumPy `.npz` (zip of `.npy` members).
    case npz
    /// Some other ZIP archive; `firstEntry` is its first record's name.
    case zip(firstEntry: String)
    /// An HTML page.
    case html
    /// Other text; `firstLine` is its first line, shortened.
    case text(firstLine: String)
    /// A Git LFS pointer file: the real content's SHA-256 and size in bytes.
    case gitLFSPointer(oid: String, size: Int)
    /// Zero bytes.
    case empty
    /// A single NumPy array (`numpy.save`, magic `\x93NUMPY`), not a dict of them.
    case npy
    /// A safetensors header length (`headerBytes`, the leading u64) longer than the file's
    /// `fileBytes` allow: a cut-off download or copy.
    case truncatedSafetensors(headerBytes: UInt64, fileBytes: Int)
    /// None of the above; the first bytes in hex.
    case unknown(firstBytes: String)

    /// One line saying what `fileName` is, e.g. "model.pth is an HTML page (a download that returned a web page?)";
    /// a name that is empty or begins or ends with white space is quoted (`String.quotedPathIfNeeded`).
    public func describe(_ fileName: String) -> String {
        let fileName = fileName.quotedPathIfNeeded   // ' ' and '' named visibly
        switch self {
        case .pytorchZip: return "\(fileName) is a PyTorch checkpoint (zip container)"
        case .pytorchLegacy: return "\(fileName) is a PyTorch checkpoint (legacy pre-1.6 format)"
        case .pytorchTar:
            return "\(fileName) is a PyTorch checkpoint in the pre-0.4 tar format, which bissl does not read; load it with torch and re-save it with torch.save(model.state_dict(), path)"
        case .torchScript:
            return "\(fileName) is a TorchScript archive (torch.jit.save), not a state dict; load it with torch.jit.load and re-export with torch.save(model.state_dict(), path)"
        case .rawPickle(let globals):
            if globals.isEmpty {
                // Nothing to run, but nothing to read either: tensors only come with torch.save's storages.
                return "\(fileName) is a plain Python pickle (pickle.dump), not torch.save output: it references no class, so it holds no tensors (only numbers, strings, lists and dicts); save the weights with torch.save(model.state_dict(), path)"
            }
            return "\(fileName) is a plain Python pickle (pickle.dump), not torch.save output; it references globals \(globals.joined(separator: ", ")); bissl does not unpickle it because that would run code; re-export it with torch.save(model.state_dict(), path)"
        case .safetensors: return "\(fileName) is a safetensors file"
        case .hdf5: return "\(fileName) is an HDF5 file"
        case .npz: return "\(fileName) is a NumPy .npz archive"
        case .zip(let first): return "\(fileName) is a ZIP archive but not a checkpoint (first record: \(first))"
        case .html: return "\(fileName) is an HTML page (a download that returned a web page?)"
        case .text(let line): return "\(fileName) is a text file, not a checkpoint (it starts with \"\(line)\")"
        case .gitLFSPointer(let oid, let size):
            return "\(fileName) is a Git LFS pointer, not the file itself: oid sha256:\(oid), expected size \(size) bytes (run git lfs pull, or download the real file)"
        case .empty: return "\(fileName) is empty (0 bytes)"
        case .npy: return "\(fileName) is a single NumPy .npy array, not a checkpoint: use numpy.savez to make an .npz"
        case .truncatedSafetensors(let header, let file):
            return "\(fileName) is a truncated safetensors file: header says \(header) bytes, file has \(file)"
        case .unknown(let bytes): return "\(fileName) is not a recognised checkpoint format (first bytes: \(bytes))"
        }
    }
}

/// Decides what a file is from its first bytes (and, for ZIPs, its record names).
///
/// Signatures: ZIP `PK\x03\x04` (APPNOTE 4.3.7; torch's `_is_zipfile`); legacy torch = the pickled
/// magic number `80 02 8a 0a 6c fc 9c 46 f9 20 6a a8 50 19` (torch/serialization.py `MAGIC_NUMBER`;
/// protocols 4-5 put a `FRAME` before the `8a 0a`);
/// tar `ustar` at byte 257 (POSIX.1-1988); HDF5 `\x89HDF\r\n\x1a\n` at 0, 512, 1024, ... (HDF5 file
/// format spec, superblock); safetensors = u64 LE header length then `{`
/// (https://huggingface.co/docs/safetensors), truncated when that length passes the end of the
/// file; `.npy` = `\x93NUMPY` (numpy.lib.format); Git LFS pointer = `version https://git-lfs.github.com/spec/v1`
/// with `oid sha256:` and `size` lines (the Git LFS specification, docs/spec.md of the git-lfs repository); raw pickle = `PROTO` 2-5 (`80 0x`)
/// not followed by the torch magic number, or a protocol 0/1 opcode stream ending in `STOP` at the
/// end of the file.
public enum FileSniffer {
    static let legacyMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// - Throws: `CheckpointError.io` when the file cannot be read or is a directory.
    public static func sniff(_ url: URL) throws -> FileKind {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw CheckpointError.io("\(url.path) is a directory")
        }
        let file = try MappedFile(url)   // refuses FIFOs, devices and sockets before opening them
        return sniff(data: file.data(0, file.size), url: url)
    }

    /// Whether HDF5's format signature `\x89HDF\r\n\x1a\n` is at byte 0, 512, 1024, 2048, ... of
    /// `bytes`: every power of two from 512 up to the end of the file, where libhdf5 looks for the
    /// superblock after a user block of any size (HDF5 file format specification, "Format
    /// Signature"); bissl's writers make the user block as large as the tensor index needs.
    static func hasHDF5Signature(_ bytes: Data) -> Bool {
        var at = 0
        while at + 8 <= bytes.count {
            if bytes[(bytes.startIndex + at)..<(bytes.startIndex + at + 8)].elementsEqual(CheckpointFile.signature) { return true }
            at = at == 0 ? 512 : at * 2
        }
        return false
    }

    static func sniff(data: Data, url: URL? = nil) -> FileKind {
        let bytes = data.startIndex == 0 ? data : Data(data)
        let size = bytes.count
        if size == 0 { return .empty }
        let head = [UInt8](bytes.prefix(1024))
        func starts(with sig: [UInt8], at offset: Int = 0) -> Bool {
            offset + sig.count <= head.count && Array(head[offset..<(offset + sig.count)]) == sig
        }

        if starts(with: [0x50, 0x4B, 0x03, 0x04]) || starts(with: [0x50, 0x4B, 0x05, 0x06]) { return zipKind(bytes) }
        if isLegacyMagic(head) { return .pytorchLegacy }
        func hasHDF5Signature() -> Bool { Self.hasHDF5Signature(bytes) }
        // bissl's own HDF5 opens with its tensor index (any bytes, "ustar" at 257 among them).
        let indexed = head.withUnsafeBytes { TensorIndex.blockLength($0) } != nil
        if indexed, hasHDF5Signature() { return .hdf5 }
        if starts(with: Array("ustar".utf8), at: 257) { return tarKind(bytes) }
        if !indexed, hasHDF5Signature() { return .hdf5 }
        if head[0] == 0x80, head.count > 1, (2...5).contains(head[1]) {
            return .rawPickle(globals: PickleScanner.scan(bytes).globals)
        }
        if size >= 10 {
            let n = bytes.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            if n >= 2, n <= UInt64(size - 8), head[8] == UInt8(ascii: "{") { return .safetensors }
            // `{"` right after the length, which is larger than the rest of the file.
            if n >= 2, n > UInt64(size - 8), head[8] == UInt8(ascii: "{"), head[9] == UInt8(ascii: "\"") {
                return .truncatedSafetensors(headerBytes: n, fileBytes: size)
            }
        }
        if starts(with: [0x93] + Array("NUMPY".utf8)) { return .npy }
        // Protocol 0/1 pickles have no PROTO opcode and are mostly text: a walk that ends with STOP
        // exactly at the end of the file, having named at least one global, is a pickle.
        if [UInt8(ascii: "("), UInt8(ascii: "c"), UInt8(ascii: "]"), UInt8(ascii: "}")].contains(head[0]) {
            let scan = PickleScanner.scan(bytes)
            if scan.complete, scan.end == size, !scan.globals.isEmpty { return .rawPickle(globals: scan.globals) }
        }
        if let text = textPrefix(head) {
            if let lfs = lfsPointer(bytes) { return lfs }
            let lower = text.lowercased().drop(while: { $0.isWhitespace || $0 == "\u{FEFF}" })
            if lower.hasPrefix("<!doctype html") || lower.hasPrefix("<html") || lower.contains("<html")
                || (lower.hasPrefix("<") && (lower.contains("<head") || lower.contains("<body"))) {
                return .html
            }
            let first = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: true).first.map(String.init) ?? ""
            return .text(firstLine: String(first.prefix(60)))
        }
        return .unknown(firstBytes: head.prefix(16).map { String(format: "%02x", $0) }.joined(separator: " "))
    }

    /// The legacy stream starts with the magic number pickled by `_legacy_save` with any protocol:
    /// `PROTO n`, for n >= 4 a `FRAME`, then `LONG1` of the 10 magic bytes and `STOP`.
    private static func isLegacyMagic(_ head: [UInt8]) -> Bool {
        guard head.count >= 2, head[0] == 0x80, (2...5).contains(head[1]) else { return false }
        var at = 2
        if head.count > at, head[at] == 0x95 { at += 9 }
        let body = Array(legacyMagic.dropFirst(2)) + [0x2E]
        return head.count >= at + body.count && Array(head[at..<(at + body.count)]) == body
    }

    private static func zipKind(_ data: Data) -> FileKind {
        let names: [String]
        if let archive = try? ZipArchive(data: data) {
            names = archive.entries.map(\.name)
        } else {
            // Damaged archive: the first local header still names the first record.
            let nameLen = data.count >= 30 ? Int(data[26]) | Int(data[27]) << 8 : 0
            guard data.count >= 30 + nameLen else { return .zip(firstEntry: "") }
            names = [String(decoding: data.subdata(in: 30..<(30 + nameLen)), as: UTF8.self)]
        }
        if names.contains(where: { $0.hasSuffix("/constants.pkl") || $0.contains("/code/") }) { return .torchScript }
        if names.contains(where: { $0.hasSuffix("/data.pkl") }) { return .pytorchZip }
        if let first = names.first, first.hasSuffix(".npy") { return .npz }
        return .zip(firstEntry: names.first ?? "")
    }

    private static func tarKind(_ data: Data) -> FileKind {
        let name = String(decoding: data.prefix(100).prefix { $0 != 0 }, as: UTF8.self)
        if ["storages", "tensors", "pickle", "sys_info"].contains(name) { return .pytorchTar }
        return .unknown(firstBytes: "tar archive, first member \(name)")
    }

    /// The leading bytes as text when they look like text (valid UTF-8, no NUL, mostly printable).
    private static func textPrefix(_ head: [UInt8]) -> String? {
        guard !head.contains(0) else { return nil }
        var bytes = head
        // A 1 KiB cut may split a UTF-8 sequence: drop up to 3 trailing continuation bytes.
        var trimmed = 0
        while let last = bytes.last, last & 0xC0 == 0x80 || last >= 0xC0, trimmed < 3, String(bytes: bytes, encoding: .utf8) == nil {
            bytes.removeLast(); trimmed += 1
        }
        guard let s = String(bytes: bytes, encoding: .utf8) else { return nil }
        let control = s.unicodeScalars.filter { $0.value < 0x20 && !["\n", "\r", "\t"].contains($0) }.count
        return control == 0 ? s : nil
    }

    private static func lfsPointer(_ data: Data) -> FileKind? {
        guard data.count < 1024, let text = String(data: data, encoding: .utf8),
              text.hasPrefix("version https://git-lfs.github.com/spec/") else { return nil }
        var oid: String?
        var size: Int?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("oid sha256:") { oid = String(line.dropFirst("oid sha256:".count)).trimmingCharacters(in: .whitespaces) }
            if line.hasPrefix("size ") { size = Int(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) }
        }
        guard let oid, let size else { return nil }
        return .gitLFSPointer(oid: oid, size: size)
    }
}
