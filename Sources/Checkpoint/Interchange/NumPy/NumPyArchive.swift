import Foundation

/// Reads and writes NumPy `.npz` archives: a ZIP of `<key>.npy` members, as `numpy.savez` (stored)
/// and `numpy.savez_compressed` (deflated) write them and `numpy.load` reads them
/// (https://numpy.org/doc/stable/reference/generated/numpy.savez.html). Each member is one `.npy`
/// array (`NumPyArray`); member names are the state-dict keys, so `numpy.load(f)["layer1.0.conv1.weight"]`
/// finds the tensor of that name whatever its dtype.
///
/// **bfloat16** has no NumPy dtype. The writer either upcasts it to float32 (`BFloat16Encoding.float32`,
/// the default: exact, every bfloat16 value is a float32 value) or stores its raw 16-bit patterns as a
/// `<u2` array under the same key (`.bits`) and lists that key in the JSON member `dtypes.json`
/// (`{"KEY": "bfloat16", ...}`; `json.loads(numpy.load(f)["dtypes.json"])` reads it, and
/// `torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)` rebuilds a tensor). The reader turns every
/// key `dtypes.json` lists back into bfloat16, and still reads the earlier rule: a `<u2` member whose key
/// ends in `.bf16` is the bfloat16 tensor of the key without that suffix. Any other `<u2` member is
/// refused as unsupported (bissl has no uint16).
public enum NumPyArchive {
    /// Key suffix of the earlier bfloat16 rule (`KEY.bf16.npy` holding `<u2` bits); read, never written.
    public static let bfloat16Suffix = ".bf16"
    /// The member recording which keys hold bfloat16 bit patterns: a JSON object key -> `"bfloat16"`.
    public static let dtypesMember = "dtypes.json"
    /// Largest `dtypes.json` read (its uncompressed size is checked before it is inflated).
    static let dtypesMemberLimit = 16 << 20

    /// How the writer stores bfloat16 tensors.
    public enum BFloat16Encoding: String, CaseIterable, Sendable {
        /// Exact float32 upcast (`<f4`) under the key; a NumPy user gets ordinary floats.
        case float32
        /// The raw 16-bit patterns (`<u2`) under the key, listed in `dtypes.json`; read back as bfloat16.
        case bits
    }

    /// Reads an `.npz` archive.
    /// - Returns: a `SourceDocument` with `format == .npz`, `container == "npz"`, `metadata["compression"]`
    ///   `stored` (`numpy.savez`), `deflated` (`numpy.savez_compressed`) or `mixed`, and `root` a `.dict`
    ///   of key (member name without `.npy`) -> `.tensor` in archive order, C-contiguous little-endian.
    ///   Members not ending in `.npy` (other than `dtypes.json`) are skipped with a warning.
    /// - Throws: `CheckpointError.notACheckpoint` when the file is not a ZIP; `.corrupt` for a
    ///   truncated archive, CRC mismatch, invalid `.npy` member, two members with the same key, or a
    ///   `dtypes.json` that is not a JSON object of `"bfloat16"` values, names a missing key or a member
    ///   that is not `<u2`; `.unsafe` for object arrays (`|O`, never unpickled); `.unsupported` for dtypes
    ///   other than `f8 f4 f2 i8 i4 i2 i1 u1 b1` (and `<u2` outside the bfloat16 rules).
    public static func read(_ url: URL) throws -> SourceDocument {
        let zip = try ZipArchive(url: url)
        let file = url.lastPathComponent
        let bfloat16Keys = try recordedBFloat16Keys(zip, file: file)
        var entries: [ObjectValue.DictEntry] = []
        var warnings: [String] = []
        var seen = Set<String>()
        var methods = Set<UInt16>()
        for entry in zip.entries where !entry.isDirectory && entry.name != dtypesMember {
            guard entry.name.hasSuffix(".npy") else {
                warnings.append("npz file \(file): member '\(entry.name)' is not a .npy array; skipped")
                continue
            }
            methods.insert(entry.method)
            var key = String(entry.name.dropLast(4))
            let decoded = try NumPyArray.decodeRaw(zip.data(for: entry), name: "npz file \(file), member '\(entry.name)'")
            warnings += decoded.warnings
            let dtype: DType
            if bfloat16Keys.contains(key) {
                guard decoded.code == "u2" else {
                    throw CheckpointError.corrupt("npz file \(file): \(dtypesMember) says '\(key)' holds bfloat16 bits, but its member is '\(decoded.code)', not '<u2'")
                }
                dtype = .bfloat16
            } else if decoded.code == "u2" && key.hasSuffix(bfloat16Suffix) {
                key = String(key.dropLast(bfloat16Suffix.count))
                dtype = .bfloat16
            } else if let d = NumPyArray.dtypeByCode[decoded.code] {
                dtype = d
            } else {
                throw CheckpointError.unsupported(
                    "npz file \(file), member '\(entry.name)': NumPy dtype '\(decoded.code)' is not supported (supported: \(NumPyArray.dtypeByCode.keys.sorted().joined(separator: " ")), and '<u2' as bfloat16 bits under a key listed in \(dtypesMember) or ending in '\(bfloat16Suffix)')")
            }
            guard seen.insert(key).inserted else {
                throw CheckpointError.corrupt("npz file \(file): two members hold the key '\(key)'")
            }
            let tensor = try Tensor(dtype: dtype, shape: decoded.shape, data: decoded.data)
            entries.append(.init(key: .string(key), value: .tensor(SourceTensor(tensor: tensor))))
        }
        if let missing = bfloat16Keys.subtracting(seen).sorted().first {
            throw CheckpointError.corrupt("npz file \(file): \(dtypesMember) lists '\(missing)', which no member holds")
        }
        let compression = methods.count > 1 ? "mixed" : methods.first == 8 ? "deflated" : "stored"
        return SourceDocument(format: .npz, container: "npz", root: .dict(entries),
                              metadata: ["compression": compression], warnings: warnings)
    }

    /// The keys `dtypes.json` records as bfloat16; empty when the archive has no such member.
    static func recordedBFloat16Keys(_ zip: ZipArchive, file: String) throws -> Set<String> {
        guard let entry = zip.entry(named: dtypesMember) else { return [] }
        guard entry.uncompressedSize <= dtypesMemberLimit else {
            throw CheckpointError.corrupt("npz file \(file): \(dtypesMember) claims \(entry.uncompressedSize) bytes (at most \(dtypesMemberLimit) are read)")
        }
        let object = try? JSONSerialization.jsonObject(with: zip.data(for: entry))
        guard let map = object as? [String: Any] else {
            throw CheckpointError.corrupt("npz file \(file): \(dtypesMember) is not a JSON object")
        }
        for (key, value) in map where value as? String != DType.bfloat16.rawValue {
            throw CheckpointError.corrupt("npz file \(file): \(dtypesMember) gives '\(key)' the dtype \(value); only \"bfloat16\" is recorded there")
        }
        return Set(map.keys)
    }

    /// Writes `stateDict` as an `.npz` archive that `numpy.load` reads: one member `<key>.npy` per tensor,
    /// in state-dict order, each encoded as `numpy.save` encodes it; bfloat16 tensors as `bfloat16` says
    /// (see the type's rule), with `dtypes.json` last when bit patterns were stored. Published atomically
    /// (nothing is left at `url` on failure).
    /// - Parameters:
    ///   - compressed: deflate members as `numpy.savez_compressed` does; stored (as `numpy.savez`) otherwise.
    ///   - bfloat16: `.float32` (exact upcast) or `.bits` (`<u2` patterns listed in `dtypes.json`).
    /// - Returns: the keys of the bfloat16 tensors written, in state-dict order (upcast or as bits).
    /// - Throws: `CheckpointError.io` when writing fails.
    @discardableResult
    public static func write(_ stateDict: StateDict, to url: URL, compressed: Bool = false,
                             bfloat16: BFloat16Encoding = .float32) throws -> [String] {
        var writer = ZipWriter(url: url)
        var bfloat16Keys: [String] = []
        for (key, tensor) in stateDict {
            var stored = tensor
            if tensor.dtype == .bfloat16 {
                bfloat16Keys.append(key)
                if bfloat16 == .float32 { stored = Tensor(float32: tensor.floats(), shape: tensor.shape) }
            }
            try writer.add(name: key + ".npy", data: NumPyArray.encode(stored), compress: compressed)
        }
        if bfloat16 == .bits && !bfloat16Keys.isEmpty {
            let map = Dictionary(uniqueKeysWithValues: bfloat16Keys.map { ($0, DType.bfloat16.rawValue) })
            let json = try JSONSerialization.data(withJSONObject: map, options: [.sortedKeys])
            try writer.add(name: dtypesMember, data: json, compress: compressed)
        }
        try writer.finish()
        return bfloat16Keys
    }
}
