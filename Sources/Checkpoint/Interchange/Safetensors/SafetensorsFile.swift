import Foundation

/// Reads and writes Hugging Face safetensors files (https://huggingface.co/docs/safetensors).
///
/// Layout: 8-byte little-endian header size N, N bytes of UTF-8 JSON (tensor name ->
/// `{"dtype", "shape", "data_offsets": [begin, end]}` plus an optional `__metadata__` object of
/// strings), then the data buffer. Tensors are C-contiguous and little-endian; offsets are byte
/// offsets into the buffer. Supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL. BF16 is kept
/// as its raw bit patterns; empty tensors (`[0]`, `[2, 0]`, offsets `[b, b]`) are ordinary
/// tensors with no bytes, never aliases.
public enum SafetensorsFile {
    /// Reads a safetensors file, validating the whole header before touching any tensor data.
    ///
    /// The file is memory-mapped; each tensor's `data` is a zero-copy view of the mapping.
    /// - Returns: a `SourceDocument` with `format == .safetensors`, `container == "safetensors"`,
    ///   `root` a `.dict` of name -> `.tensor` in header order (the order the JSON lists them, which
    ///   for files from `safetensors.torch.save_file` is dtype alignment then name), and `metadata`
    ///   the `__metadata__` strings.
    /// - Throws: `CheckpointError.corrupt` when the file is shorter than 8 bytes, the header size
    ///   exceeds the file or 100 MB, the header is not UTF-8 JSON of the expected shape, a name
    ///   repeats, a tensor's byte size does not match dtype and shape, or offsets leave holes,
    ///   overlap or run past the buffer (the tensor is named); `.unsupported` for other dtypes
    ///   (F8_E4M3, U16, C64, ...); `.io` when the file cannot be opened or mapped.
    public static func read(_ url: URL) throws -> SourceDocument {
        let file = try MappedFile(url)
        let name = url.lastPathComponent
        guard file.size >= 8 else {
            throw CheckpointError.corrupt("safetensors file \(name): \(file.size) bytes is too short to hold the 8-byte header size")
        }
        var n: UInt64 = 0
        withUnsafeMutableBytes(of: &n) { $0.copyMemory(from: file.bytes(0, 8)) }
        n = UInt64(littleEndian: n)
        guard n <= UInt64(file.size - 8) else {
            throw CheckpointError.corrupt(
                "safetensors file \(name): header size \(n) bytes exceeds the \(file.size - 8) bytes after the size field (truncated or not a safetensors file)")
        }
        guard n <= UInt64(SafetensorsHeader.maxHeaderSize) else {
            throw CheckpointError.corrupt("safetensors file \(name): header size \(n) bytes exceeds the 100 MB limit")
        }
        let headerEnd = 8 + Int(n)
        let header = try SafetensorsHeader.decode(file.bytes(8, headerEnd), bufferSize: file.size - headerEnd, file: name)

        var entries: [ObjectValue.DictEntry] = []
        entries.reserveCapacity(header.entries.count)
        for e in header.entries {
            let tensor = try Tensor(dtype: e.dtype, shape: e.shape, data: file.data(headerEnd + e.begin, headerEnd + e.end))
            entries.append(.init(key: .string(e.name), value: .tensor(SourceTensor(tensor: tensor))))
        }
        return SourceDocument(format: .safetensors, container: "safetensors", root: .dict(entries),
                              metadata: header.metadata)
    }

    /// Writes `stateDict` as a safetensors file that `safetensors.safe_open` / `load_file` read.
    ///
    /// Tensors are laid out contiguously in state-dict order (the header lists them in that order);
    /// the header is compact JSON with `__metadata__` first (omitted when `metadata` is empty), padded
    /// with spaces to a multiple of 8 bytes as the reference writer pads it. Written through
    /// `AtomicFile`: on any error no file is left at `url`.
    /// - Parameters:
    ///   - metadata: string pairs for `__metadata__` (the caller's provenance summary), keys sorted.
    /// - Throws: `CheckpointError.invalid` when a tensor is named `__metadata__` or there are more than
    ///   `SafetensorsHeader.maxTensors` (the readers' limit); `.io` on write failure.
    public static func write(_ stateDict: StateDict, metadata: [String: String], to url: URL) throws {
        guard stateDict.count <= SafetensorsHeader.maxTensors else {
            throw CheckpointError.invalid("cannot write \(stateDict.count) tensors to one safetensors file: bissl reads at most \(SafetensorsHeader.maxTensors)")
        }
        var entries: [SafetensorsHeader.Entry] = []
        entries.reserveCapacity(stateDict.count)
        var offset = 0
        for (name, tensor) in stateDict {
            guard name != "__metadata__" else {
                throw CheckpointError.invalid("cannot write a tensor named '__metadata__' to safetensors: the name is reserved")
            }
            entries.append(.init(name: name, dtype: tensor.dtype, shape: tensor.shape, begin: offset, end: offset + tensor.data.count))
            offset += tensor.data.count
        }
        let header = SafetensorsHeader.encode(entries, metadata: metadata)
        try AtomicFile.write(to: url) { tmp in
            let handle = try AtomicFile.create(tmp, for: url)
            do {
                defer { try? handle.close() }
                var size = UInt64(header.count).littleEndian
                try handle.write(contentsOf: Data(bytes: &size, count: 8))
                try handle.write(contentsOf: header)
                for tensor in stateDict.values where !tensor.data.isEmpty {
                    try handle.write(contentsOf: tensor.data)
                }
                try handle.close()
            } catch let e as CheckpointError {
                throw e
            } catch {
                throw CheckpointError.io("cannot write \(url.path): \(AtomicFile.reason(error))")
            }
        }
    }
}
