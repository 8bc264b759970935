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
    public static func compute(_ checkpoint: Checkpoint) -> String {
        var hasher = Message()
        hasher.string(tag)
        architecture(checkpoint.architecture, into: &hasher)

        var entries: [(component: [UInt8], key: [UInt8], tensor: Tensor)] = []
        for (component, tensors) in checkpoint.components {
            let c = Array(component.utf8)
            for (key, tensor) in tensors { entries.append((c, Array(key.utf8), tensor)) }
        }
        entries.sort { a, b in
            a.component != b.component
                ? a.component.lexicographicallyPrecedes(b.component)
                : a.key.lexicographicallyPrecedes(b.key)
        }
        hasher.u64(UInt64(entries.count))
        for entry in entries {
            hasher.bytes(entry.component)
            hasher.bytes(entry.key)
            hasher.string(entry.tensor.dtype.rawValue)
            hasher.u64(UInt64(entry.tensor.shape.count))
            for dim in entry.tensor.shape { hasher.u64(UInt64(dim)) }
            hasher.u64(UInt64(entry.tensor.data.count))
            hasher.raw(entry.tensor.data)
        }
        return hasher.hexDigest()
    }

    private static func architecture(_ arch: Architecture?, into m: inout Message) {
        guard let arch else {
            m.u8(0)
            return
        }
        m.u8(1)
        m.string(arch.family)
        m.i64(Int64(arch.depth))
        m.string(arch.block)
        m.u64(UInt64(arch.layers.count))
        for n in arch.layers { m.i64(Int64(n)) }
        m.i64(Int64(arch.width))
        m.string(arch.stem)
        let heads = arch.heads.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        m.u64(UInt64(heads.count))
        for (name, head) in heads {
            m.string(name)
            m.string(head.kind)
            m.u64(UInt64(head.dims.count))
            for d in head.dims { m.i64(Int64(d)) }
        }
    }

    /// The primitive encodings of the spec, fed straight into SHA-256.
    private struct Message {
        var sha = SHA256()

        mutating func u8(_ v: UInt8) { sha.update(data: [v]) }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { sha.update(bufferPointer: $0) } }
        mutating func i64(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { sha.update(bufferPointer: $0) } }
        mutating func bytes(_ b: [UInt8]) {
            u64(UInt64(b.count))
            sha.update(data: b)
        }
        mutating func string(_ s: String) { bytes(Array(s.utf8)) }
        mutating func raw(_ d: Data) { sha.update(data: d) }

        func hexDigest() -> String {
            FileSHA256.hex(sha.finalize())
        }
    }
}
