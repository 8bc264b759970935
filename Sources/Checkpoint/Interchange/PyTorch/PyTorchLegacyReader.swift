import Foundation

/// Reads the legacy (pre-1.6, `_use_new_zipfile_serialization=False`) stream format
/// (PyTorch torch/serialization.py `_legacy_save` / `_legacy_load`):
/// five pickles back to back — magic number, protocol version 1001, `sys_info`, the object with
/// 6-tuple storage ids, the sorted list of storage keys — followed, per key in that order, by an
/// int64 little-endian element count and the storage's bytes in little-endian element order
/// (torch/csrc/serialization.cpp `THPStorage_writeFileRaw`).
enum PyTorchLegacyReader {
    /// Root storages by key, as persistent ids name them (filled while the main pickle is read).
    final class RootStorages {
        var roots: [String: TorchStorageRef] = [:]
    }

    /// `0x1950a86a20f9469cfc6c` in decimal (torch/serialization.py `MAGIC_NUMBER`).
    static let magicNumber = "119547037146038801333356"
    static let protocolVersion: Int64 = 1001

    static func read(_ url: URL) throws -> SourceDocument {
        let file = url.lastPathComponent
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw CheckpointError.io("cannot read \(url.path): \(error.localizedDescription)")
        }
        var offset = 0
        /// Reads the pickle at `offset` and hands its value to `body` (which must not keep it, see
        /// `PickleReader.read`); `offset` is then just past it.
        func next<T>(_ what: String, persistentLoad: ((PickleValue) throws -> PickleValue)? = nil,
                     _ body: (PickleValue) throws -> T) throws -> T {
            var reader = persistentLoad.map { PickleReader(data: data, offset: offset, context: "\(file): \(what)", persistentLoad: $0) }
                ?? PickleReader(data: data, offset: offset, context: "\(file): \(what)")
            return try reader.read { value, end in
                offset = end
                return try body(value)
            }
        }

        guard try next("magic number", { if case .bigInt(magicNumber) = $0 { true } else { false } }) else {
            throw CheckpointError.notACheckpoint("\(file) is not a legacy PyTorch file (wrong magic number)")
        }
        guard try next("protocol version", { if case .int(protocolVersion) = $0 { true } else { false } }) else {
            throw CheckpointError.unsupported("\(file): legacy PyTorch protocol version is not 1001")
        }
        var metadata: [String: String] = [:]
        try next("sys_info") { value in
            guard case .dict(let info) = value else { return }
            for (k, v) in info.entries {
                if case .string("little_endian") = k, case .bool(let little) = v { metadata["writer_little_endian"] = little ? "true" : "false" }
            }
        }
        // Storages are always stored little-endian in this format (THPStorage_writeFileRaw swaps on
        // big-endian hosts), whatever sys_info says about the writer.
        metadata["byteorder"] = "little"

        let storages = RootStorages()
        let mainContext = "\(file): main pickle"
        let mainStart = offset
        return try next("main pickle", persistentLoad: { pid in
            try legacyPersistentLoad(pid, roots: storages, context: mainContext)
        }) { root in
            let roots = storages.roots
            let mainBytes = offset - mainStart
            try PyTorchZipReader.refuseWholeObject(root, file: file)
            let keys: [String] = try next("storage key list") { value in
                guard case .list(let keyList) = value else {
                    throw CheckpointError.corrupt("\(file): the storage key list is missing after the main pickle")
                }
                return try keyList.items.map { item in
                    guard case .string(let key) = item else { throw CheckpointError.corrupt("\(file): storage key is not a string") }
                    return key
                }
            }
            // Byte ranges of each root storage's data.
            var ranges: [String: Range<Int>] = [:]
            for key in keys {
                // torch would read the storage twice and keep the second copy: ambiguous, refused.
                guard ranges[key] == nil else {
                    throw CheckpointError.corrupt("\(file): the storage key list names storage \(key) twice")
                }
                guard let ref = roots[key] else {
                    throw CheckpointError.corrupt("\(file): storage \(key) is listed but no tensor refers to it")
                }
                guard offset + 8 <= data.count else {
                    throw CheckpointError.corrupt("truncated legacy PyTorch file: file is \(data.count) bytes, storage \(key) starts at \(offset + 8)")
                }
                let count = data.subdata(in: offset..<(offset + 8)).withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
                guard count == Int64(ref.numel) else {
                    throw CheckpointError.corrupt("\(file): storage \(key) has \(count) elements in the file, its id says \(ref.numel)")
                }
                let start = offset + 8
                guard let length = [ref.numel, ref.dtype.size].checkedProduct, length <= data.count - start else {
                    throw CheckpointError.corrupt(
                        "truncated legacy PyTorch file: file is \(data.count) bytes, storage \(key) needs \(ref.numel) x \(ref.dtype.size) bytes from byte \(start)")
                }
                let end = start + length
                ranges[key] = start..<end
                offset = end
            }
            var conversion = PickleConversion(pickleBytes: mainBytes, storageBytes: ranges.values.reduce(0) { $0 + $1.count }) { storage, path in
                guard let range = ranges[storage.key] else {
                    throw CheckpointError.corrupt("\(file): tensor \(path) needs storage \(storage.key), which is not in the file")
                }
                let es = storage.dtype.size
                // View bounds were checked against the root's numel, whose bytes are within the file.
                guard storage.elementOffset + storage.numel <= range.count / es else {
                    throw CheckpointError.corrupt("\(file): view of storage \(storage.key) for \(path) reaches past its end")
                }
                let start = range.lowerBound + storage.elementOffset * es
                let end = start + storage.numel * es
                return data.subdata(in: start..<end)
            }
            let value = try PickleConversion.naming(file) { try conversion.convert(root) }
            return SourceDocument(format: .pth, container: "pytorch-legacy", root: value, metadata: metadata,
                                  warnings: conversion.warnings)
        }
    }

    /// `('storage', storage_type, root_key, location, numel, view_metadata)`, where view_metadata is
    /// None or `(view_key, offset, size)` in elements; `('module', ...)` ids (whole pickled modules)
    /// become opaque. Mirrors torch/serialization.py `_legacy_load.persistent_load`.
    static func legacyPersistentLoad(_ pid: PickleValue, roots: RootStorages, context: String) throws -> PickleValue {
        guard case .tuple(let tuple) = pid, case let t = tuple.items, let kind = t.first else {
            throw CheckpointError.corrupt("\(context): malformed persistent id")
        }
        if case .string("module") = kind, t.count > 1 {
            switch t[1] {
            case .opaque(let o): return .opaque(PickleOpaque(global: o.global))
            case .global(let g): return .opaque(PickleOpaque(global: g))
            default: return .opaque(PickleOpaque(global: "torch.nn.Module"))
            }
        }
        guard case .string("storage") = kind, t.count == 6, case .string(let key) = t[2],
              case .string(let location) = t[3], case .int(let numel) = t[4], numel >= 0 else {
            throw CheckpointError.corrupt("\(context): malformed storage id \(PickleGlobals.describe(pid))")
        }
        var ref = try PyTorchZipReader.storageRef(t[1], key: key, location: location, numel: Int(numel), context: context)
        if let existing = roots.roots[key] {
            guard existing.dtype == ref.dtype else {
                throw CheckpointError.corrupt("\(context): storage \(key) is used as \(existing.className) and \(ref.className)")
            }
        } else {
            roots.roots[key] = ref
        }
        switch t[5] {
        case .none:
            return .storage(ref)
        case .tuple(let viewTuple) where viewTuple.items.count == 3:
            let view = viewTuple.items
            guard case .int(let viewOffset) = view[1], case .int(let viewSize) = view[2], viewOffset >= 0, viewSize >= 0,
                  viewOffset <= numel, viewSize <= numel - viewOffset else {
                throw CheckpointError.corrupt("\(context): storage view of \(key) is out of range")
            }
            ref.elementOffset = Int(viewOffset)
            ref.numel = Int(viewSize)
            return .storage(ref)
        default:
            throw CheckpointError.corrupt("\(context): malformed storage view of \(key)")
        }
    }
}
