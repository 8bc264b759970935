import Foundation

/// Reads and writes NumPy `.npz` archives: a ZIP of `<key>.npy` members, as `numpy.savez` (stored)
/// and `numpy.savez_compressed` (deflated) write them and `numpy.load` reads them
/// (https://numpy.org/doc/stable/reference/generated/numpy.savez.html). Each member is one `.npy`
/// array (`NumPyArray`).
///
/// **bfloat16** has no NumPy dtype. Rule: a bf16 tensor `k` is written as the member `k.bf16.npy`
/// holding its raw 16-bit patterns with descr `<u2`, so `numpy.load(f)["k.bf16"]` is a `uint16` array
/// (`torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)` rebuilds it). When reading, a `<u2`
/// member whose key ends in `.bf16` becomes the bfloat16 tensor `k` again; any other `<u2` member is
/// refused as unsupported (bissl has no uint16).
public enum NumPyArchive {
    /// Key suffix marking a bfloat16 tensor stored as `<u2` bits.
    public static let bfloat16Suffix = ".bf16"

    /// Reads an `.npz` archive.
    /// - Returns: a `SourceDocument` with `format == .npz`, `container == "npz"`, `metadata["compression"]`
    ///   `stored` (`numpy.savez`), `deflated` (`numpy.savez_compressed`) or `mixed`, and `root` a `.dict`
    ///   of key (member name without `.npy`) -> `.tensor` in archive order, C-contiguous little-endian.
    ///   Members not ending in `.npy` are skipped with a warning.
    /// - Throws: `CheckpointError.notACheckpoint` when the file is not a ZIP; `.corrupt` for a
    ///   truncated archive, CRC mismatch, invalid `.npy` member or two members with the same key;
    ///   `.unsafe` for object arrays (`|O`, never unpickled); `.unsupported` for dtypes other than
    ///   `f8 f4 f2 i8 i4 i2 i1 u1 b1` (and `<u2` outside the bfloat16 rule).
    public static func read(_ url: URL) throws -> SourceDocument {
        let zip = try ZipArchive(url: url)
        let file = url.lastPathComponent
        var entries: [ObjectValue.DictEntry] = []
        var warnings: [String] = []
        var seen = Set<String>()
        var methods = Set<UInt16>()
        for entry in zip.entries where !entry.isDirectory {
            guard entry.name.hasSuffix(".npy") else {
                warnings.append("npz file \(file): member '\(entry.name)' is not a .npy array; skipped")
                continue
            }
            methods.insert(entry.method)
            var key = String(entry.name.dropLast(4))
            let decoded = try NumPyArray.decodeRaw(zip.data(for: entry), name: "npz file \(file), member '\(entry.name)'")
            warnings += decoded.warnings
            let dtype: DType
            if decoded.code == "u2" && key.hasSuffix(bfloat16Suffix) {
                key = String(key.dropLast(bfloat16Suffix.count))
                dtype = .bfloat16
            } else if let d = NumPyArray.dtypeByCode[decoded.code] {
                dtype = d
            } else {
                throw CheckpointError.unsupported(
                    "npz file \(file), member '\(entry.name)': NumPy dtype '\(decoded.code)' is not supported (supported: \(NumPyArray.dtypeByCode.keys.sorted().joined(separator: " ")), and '<u2' under a key ending in '\(bfloat16Suffix)' as bfloat16)")
            }
            guard seen.insert(key).inserted else {
                throw CheckpointError.corrupt("npz file \(file): two members hold the key '\(key)'")
            }
            let tensor = try Tensor(dtype: dtype, shape: decoded.shape, data: decoded.data)
            entries.append(.init(key: .string(key), value: .tensor(SourceTensor(tensor: tensor))))
        }
        let compression = methods.count > 1 ? "mixed" : methods.first == 8 ? "deflated" : "stored"
        return SourceDocument(format: .npz, container: "npz", root: .dict(entries),
                              metadata: ["compression": compression], warnings: warnings)
    }

    /// Writes `stateDict` as an `.npz` archive that `numpy.load` reads: one member `<key>.npy` per tensor
    /// (bfloat16 as `<key>.bf16.npy`, see the type's rule), in state-dict order, each encoded as
    /// `numpy.save` encodes it. Published atomically (nothing is left at `url` on failure).
    /// - Parameter compressed: deflate members as `numpy.savez_compressed` does; stored (as `numpy.savez`) otherwise.
    /// - Throws: `CheckpointError.invalid` when two keys map to the same member name (a bf16 `k` and a
    ///   tensor named `k.bf16`); `.io` when writing fails.
    public static func write(_ stateDict: StateDict, to url: URL, compressed: Bool = false) throws {
        var names: [String: String] = [:]
        for (key, tensor) in stateDict {
            let member = (tensor.dtype == .bfloat16 ? key + bfloat16Suffix : key) + ".npy"
            if let other = names.updateValue(key, forKey: member) {
                throw CheckpointError.invalid("cannot write '\(key)' and '\(other)' to one .npz: both would be the member '\(member)'")
            }
        }
        var writer = ZipWriter(url: url)
        for (key, tensor) in stateDict {
            let member = (tensor.dtype == .bfloat16 ? key + bfloat16Suffix : key) + ".npy"
            try writer.add(name: member, data: NumPyArray.encode(tensor), compress: compressed)
        }
        try writer.finish()
    }
}
