import Crypto
import Foundation

/// The content id of a checkpoint: SHA-256 over a canonical serialization of every tensor
/// (component, key, dtype, shape, bytes) in canonical order plus the architecture record, as
/// schemas/checkpoint-v1.md ("Content id") defines it byte for byte. `tools/fixtures/h5_content_id.py` is an
/// independent Python implementation of the same definition.
///
/// Provenance, tensor order and the source format do not affect the id: identical weights and
/// architecture give the same id whether they came from a `.pth`, safetensors or our HDF5.
public enum ContentID {
    /// Tag that opens the hashed message; fixed for format v1.
    static let tag = "bissl-content-id/v1"

    /// 64 lowercase hex digits.
    /// - Parameter hashed: called with a tensor's ordinal (components in order, keys in order) once
    ///   its bytes are hashed, on this thread (tensors are hashed in canonical order, not this one).
    public static func compute(_ checkpoint: Checkpoint, hashed: (Int) -> Void = { _ in }) -> String {
        var entries: [Entry] = []
        var tensors: [Tensor] = []
        for (component, stateDict) in checkpoint.components {
            let c = Array(component.utf8)
            for (key, tensor) in stateDict {
                entries.append(Entry(component: c, key: Array(key.utf8), dtype: tensor.dtype, shape: tensor.shape,
                                     byteCount: tensor.data.count, source: tensors.count))
                tensors.append(tensor)
            }
        }
        return compute(architecture: checkpoint.architecture, entries) { i, sha in
            sha.update(data: tensors[i].data)
            hashed(i)
        }
    }

    /// The content id of the tensors a file's tensor index (`TensorIndex`) describes, their bytes
    /// fed by `bytes` (e.g. read from a download as they arrive): the same id `compute(_:)` gives
    /// for the checkpoint the file holds when the index agrees with it. Each name is hashed with its
    /// bytes, aliases included, in canonical order (not file order).
    /// - Parameter bytes: called once per entry, on this thread, with the entry and a function to
    ///   pass its `byteCount` bytes to, in order, in as many pieces as suits the caller.
    /// - Throws: whatever `bytes` throws; `CheckpointError.corrupt` when it feeds another count.
    public static func compute(_ index: TensorIndex,
                               bytes: (TensorIndex.Entry, (UnsafeRawBufferPointer) -> Void) throws -> Void) throws -> String {
        let entries = index.tensors.enumerated().map { i, entry in
            Entry(component: Array(entry.component.utf8), key: Array(entry.key.utf8), dtype: entry.dtype, shape: entry.shape,
                  byteCount: entry.byteCount, source: i)
        }
        var failure: Error?
        let id = compute(architecture: index.architecture, entries) { i, sha in
            guard failure == nil else { return }
            let entry = index.tensors[i]
            var fed = 0
            do {
                try bytes(entry) { piece in
                    fed += piece.count
                    sha.update(bufferPointer: piece)
                }
                guard fed == entry.byteCount else {
                    throw CheckpointError.corrupt("tensor \(entry.key) of \(entry.component): \(fed) bytes given, the index says \(entry.byteCount)")
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return id
    }

    /// One named tensor of the message: its names as UTF-8, dtype, shape, byte count, and where the
    /// caller finds its bytes (`source`, passed back to `feed`).
    private struct Entry {
        var component: [UInt8]
        var key: [UInt8]
        var dtype: DType
        var shape: [Int]
        var byteCount: Int
        var source: Int
    }

    /// The message of schemas/checkpoint-v1.md ("Content id") over `entries`, sorted into canonical
    /// order here; `feed(source, &sha)` hashes an entry's bytes.
    private static func compute(architecture: Architecture?, _ unsorted: [Entry], feed: (Int, inout SHA256) -> Void) -> String {
        var hasher = Message()
        hasher.string(tag)
        hasher.architecture(architecture)
        let entries = unsorted.sorted { a, b in
            a.component != b.component
                ? a.component.lexicographicallyPrecedes(b.component)
                : a.key.lexicographicallyPrecedes(b.key)
        }
        hasher.u64(UInt64(entries.count))
        for entry in entries {
            hasher.bytes(entry.component)
            hasher.bytes(entry.key)
            hasher.string(entry.dtype.rawValue)
            hasher.u64(UInt64(entry.shape.count))
            for dim in entry.shape { hasher.u64(UInt64(dim)) }
            hasher.u64(UInt64(entry.byteCount))
            feed(entry.source, &hasher.sha)
        }
        return lowercaseHex(hasher.sha.finalize())
    }

    /// The message fed straight into SHA-256.
    private struct Message: SpecEncoding {
        var sha = SHA256()
        mutating func raw(_ bytes: UnsafeRawBufferPointer) { sha.update(bufferPointer: bytes) }
    }
}

/// The primitive encodings of schemas/checkpoint-v1.md (notation of "Content id": `u8`, `u64`,
/// `i64`, `str`, and the `arch` record), shared by the content id's message and the tensor index
/// (`TensorIndex`) so both encode an architecture record the same way.
protocol SpecEncoding {
    mutating func raw(_ bytes: UnsafeRawBufferPointer)
}

extension SpecEncoding {
    mutating func u8(_ v: UInt8) { withUnsafeBytes(of: v) { raw($0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { raw($0) } }
    mutating func i64(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { raw($0) } }
    /// `str` of raw bytes: `u64(count) || bytes`.
    mutating func bytes(_ b: [UInt8]) {
        u64(UInt64(b.count))
        b.withUnsafeBytes { raw($0) }
    }
    mutating func string(_ s: String) { bytes(Array(s.utf8)) }

    /// `arch` of the content-id message: `u8(0)` without a record, else the record's fields with
    /// heads in ascending order of their names' UTF-8 bytes.
    mutating func architecture(_ arch: Architecture?) {
        guard let arch else {
            u8(0)
            return
        }
        u8(1)
        string(arch.family)
        i64(Int64(arch.depth))
        string(arch.block)
        u64(UInt64(arch.layers.count))
        for n in arch.layers { i64(Int64(n)) }
        i64(Int64(arch.width))
        string(arch.stem)
        let heads = arch.heads.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        u64(UInt64(heads.count))
        for (name, head) in heads {
            string(name)
            string(head.kind)
            u64(UInt64(head.dims.count))
            for d in head.dims { i64(Int64(d)) }
        }
    }
}
