import Foundation

/// Writes a state dict in the zip container exactly as `torch.save` 2.x does
/// (PyTorch torch/serialization.py `_save`, caffe2/serialize/inline_container.cc
/// `PyTorchStreamWriter`): records under `<file stem>/`, in the order `data.pkl`,
/// `.format_version` (`1`), `.storage_alignment` (`64`), `byteorder` (`little`), `data/0..N-1`,
/// `version` (`3\n`), `.data/serialization_id` (one `data/<i>` per storage: aliases share one); all stored, CRC-32 set, each record's data at a
/// 64-byte aligned offset (`FB` extra field), zip64 where sizes need it.
enum PyTorchZipWriter {
    static let alignment = 64

    static func write(_ stateDict: StateDict, to url: URL, aliases: [String: String] = [:]) throws {
        let folder = url.deletingPathExtension().lastPathComponent
        let prefix = (folder.isEmpty ? "archive" : folder) + "/"
        let layout = try StorageLayout.make(stateDict, aliases: aliases, file: url.path)
        let pickle = PyTorchStateDictPickle.pickle(stateDict, layout: layout) { cls, key, numel in
            .tuple([.string("storage"), .global(module: "torch", name: cls), .string(key), .string("cpu"), .int(Int64(numel))])
        }
        var writer = ZipWriter(url: url, alignment: alignment)
        var names: [String] = []
        var crcs: [UInt32] = []
        func add(_ name: String, _ data: Data) throws {
            crcs.append(try writer.add(name: prefix + name, data: data))
            names.append(prefix + name)
        }
        try add("data.pkl", pickle)
        try add(".format_version", Data("1".utf8))
        try add(".storage_alignment", Data(String(alignment).utf8))
        try add("byteorder", Data("little".utf8))
        for (index, tensor) in layout.stored.enumerated() {
            try add("data/\(index)", tensor.data)
        }
        try add("version", Data("3\n".utf8))
        try add(".data/serialization_id", Data(serializationID(names: names, crcs: crcs).utf8))
        try writer.finish()
    }

    /// 40 decimal digits: 20 for a hash of the record names, 20 for a combination of the records'
    /// CRC-32s. torch composes its id the same way (`writeSerializationId`: `c10::hash` of names,
    /// combined CRC-32), but from `std::hash`, which is not portable; torch never checks the value,
    /// it only identifies the file. Ours is deterministic: FNV-1a 64 over the sorted names, and
    /// the CRCs folded with boost's `hash_combine` (as `c10::hash_combine`).
    static func serializationID(names: [String], crcs: [UInt32]) -> String {
        var nameHash: UInt64 = 0xcbf2_9ce4_8422_2325
        for name in names.sorted() {
            for b in name.utf8 { nameHash = (nameHash ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
            nameHash = (nameHash ^ 0) &* 0x0000_0100_0000_01B3
        }
        var crcHash: UInt64 = 0
        for crc in crcs {
            crcHash ^= UInt64(crc) &+ 0x9e37_79b9 &+ (crcHash << 6) &+ (crcHash >> 2)
        }
        func pad(_ v: UInt64) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, 20 - s.count)) + s
        }
        return pad(nameHash) + pad(crcHash)
    }
}
