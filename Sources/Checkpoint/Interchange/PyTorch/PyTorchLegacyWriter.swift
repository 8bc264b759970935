import Foundation

/// Writes a state dict in the legacy stream format, as `torch.save(..., _use_new_zipfile_serialization=False)`
/// does (PyTorch torch/serialization.py `_legacy_save`): pickles of the magic
/// number, the protocol version 1001 and `sys_info`, the state dict with 6-tuple storage ids
/// `('storage', torch.FloatStorage, key, 'cpu', numel, None)`, the sorted storage keys, then per key
/// an int64 little-endian element count and the raw little-endian bytes. Written through `AtomicFile`.
enum PyTorchLegacyWriter {
    static func write(_ stateDict: StateDict, to url: URL, aliases: [String: String] = [:]) throws {
        let layout = try StorageLayout.make(stateDict, aliases: aliases, file: url.path)
        var out = Data()
        // 0x1950a86a20f9469cfc6c as LONG1: 10 little-endian bytes.
        out.append(contentsOf: [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E])
        out.append(PickleWriter.pickle(.int(PyTorchLegacyReader.protocolVersion)))
        out.append(PickleWriter.pickle(.dict([
            (.string("protocol_version"), .int(PyTorchLegacyReader.protocolVersion)),
            (.string("little_endian"), .bool(true)),
            (.string("type_sizes"), .dict([(.string("short"), .int(2)), (.string("int"), .int(4)), (.string("long"), .int(8))])),
        ])))
        out.append(PyTorchStateDictPickle.pickle(stateDict, layout: layout) { cls, key, numel in
            .tuple([.string("storage"), .global(module: "torch", name: cls), .string(key), .string("cpu"), .int(Int64(numel)), .none])
        })
        let tensors = layout.stored   // one record per storage: aliases share one
        let keys = tensors.indices.map(String.init).sorted()   // torch sorts the keys as strings
        out.append(PickleWriter.pickle(.list(keys.map { .string($0) })))
        for key in keys {
            let tensor = tensors[Int(key)!]
            withUnsafeBytes(of: Int64(tensor.count).littleEndian) { out.append(contentsOf: $0) }
            out.append(tensor.data)
        }
        try AtomicFile.write(out, to: url)
    }
}
