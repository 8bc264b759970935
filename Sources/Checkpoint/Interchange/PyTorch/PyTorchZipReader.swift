import Foundation

/// Reads the zip container `torch.save` writes since PyTorch 1.6 (PyTorch `torch/serialization.py` `_save` / `_load`).
///
/// Matches torch/serialization.py `_load` and caffe2/serialize/inline_container.cc
/// `PyTorchStreamReader`: the top folder is taken from the first record (any name); the `version`
/// (or `.data/version`) record must be within [1, 10] (caffe2/serialize/versions.h
/// `kMin/kMaxSupportedFileFormatVersion`); `byteorder` absent means little-endian (the current
/// default, pytorch/pytorch#101688), `big` means every storage is byte-swapped by element size;
/// storage `data/<key>` records are CRC-32 checked (torch itself does not, see pth-format.md).
enum PyTorchZipReader {
    static let supportedVersions = 1...10

    static func read(_ url: URL) throws -> SourceDocument {
        let file = url.lastPathComponent
        let archive = try ZipArchive(url: url)
        guard let first = archive.entries.first, let slash = first.name.firstIndex(of: "/") else {
            throw CheckpointError.notACheckpoint("\(file) is a ZIP archive but not a PyTorch checkpoint (no top folder)")
        }
        let folder = String(first.name[..<slash])
        let prefix = folder + "/"
        var byName: [String: ZipEntry] = [:]
        for e in archive.entries where e.name.hasPrefix(prefix) { byName[String(e.name.dropFirst(prefix.count))] = e }

        if byName["constants.pkl"] != nil || byName.keys.contains(where: { $0.hasPrefix("code/") }) {
            throw CheckpointError.unsupported(
                "\(file) is a TorchScript archive (torch.jit.save), not a state dict; load it with torch.jit.load and re-export with torch.save(model.state_dict(), ...)")
        }
        guard let pklEntry = byName["data.pkl"] else {
            if archive.entries.contains(where: { $0.name.hasSuffix(".npy") }) {
                throw CheckpointError.notACheckpoint("\(file) is a NumPy .npz archive, not a PyTorch checkpoint")
            }
            throw CheckpointError.notACheckpoint("\(file) is a ZIP archive without \(prefix)data.pkl: not a PyTorch checkpoint")
        }

        func text(_ name: String) throws -> String? {
            guard let e = byName[name] else { return nil }
            return String(decoding: try archive.data(for: e), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        var metadata: [String: String] = ["zip_folder": folder]
        guard let versionText = try text("version") ?? text(".data/version") else {
            throw CheckpointError.corrupt("\(file): the PyTorch archive has no version record (\(prefix)version)")
        }
        guard let version = Int(versionText), supportedVersions.contains(version) else {
            throw CheckpointError.unsupported(
                "\(file): PyTorch archive version \(versionText) is outside the supported range \(supportedVersions.lowerBound)-\(supportedVersions.upperBound)")
        }
        metadata["version"] = String(version)
        if let v = try text(".format_version") { metadata["format_version"] = v }
        if let v = try text(".storage_alignment") { metadata["storage_alignment"] = v }
        if let v = try text(".data/serialization_id") { metadata["serialization_id"] = v }

        let bigEndian: Bool
        switch try text("byteorder") {
        case nil:
            bigEndian = false
            metadata["byteorder"] = "little"
            metadata["byteorder_record"] = "absent"
        case "little"?:
            bigEndian = false
            metadata["byteorder"] = "little"
            metadata["byteorder_record"] = "little"
        case "big"?:
            bigEndian = true
            metadata["byteorder"] = "big"
            metadata["byteorder_record"] = "big"
        case let other?:
            throw CheckpointError.corrupt("\(file): unknown byteorder record '\(other)'")
        }

        let context = "\(file): \(pklEntry.name)"
        let pickle = try archive.data(for: pklEntry)
        var reader = PickleReader(data: pickle, context: context) { pid in
            try zipPersistentLoad(pid, context: context)
        }
        return try reader.read { root, _ in
            try PyTorchZipReader.refuseWholeObject(root, file: file)

            // Stored (uncompressed, as torch.save writes them) storage records: views of the mapped file,
            // CRC-32 checked on all cores up front; the conversion takes them from here. Deflated records
            // are inflated only when a tensor refers to them.
            let storageRecords = byName.filter { $0.key.hasPrefix("data/") }.map(\.value)
            let records = archive.data(for: storageRecords.filter { $0.method == 0 })
            // Declared sizes: a deflated record is refused when inflating if its size is more than
            // its compressed bytes can hold.
            let storageBytes = storageRecords.reduce(0) { sum, e in
                let (next, overflow) = sum.addingReportingOverflow(e.uncompressedSize)
                return overflow ? Int.max : next
            }
            var conversion = PickleConversion(pickleBytes: pickle.count, storageBytes: storageBytes) { storage, path in
                let recordName = "data/\(storage.key)"
                guard let entry = byName[recordName] else {
                    throw CheckpointError.corrupt("\(file): tensor \(path) needs record \(prefix)\(recordName), which is missing")
                }
                guard let needed = [storage.numel, storage.dtype.size].checkedProduct else {
                    throw CheckpointError.corrupt("\(file): storage \(storage.key) claims \(storage.numel) elements")
                }
                // A record holds exactly its storage's bytes, as torch.load requires ("record size
                // ... does not match expected size"): checked on the size the zip declares, before a
                // deflated record is inflated, and inflation then yields exactly that size or fails
                // (`ZipCodec.inflate`).
                guard entry.uncompressedSize == needed else {
                    throw CheckpointError.corrupt(
                        "\(file): record \(entry.name) holds \(entry.uncompressedSize) bytes, but tensor \(path) declares its storage as \(storage.numel) x \(storage.dtype.rawValue) = \(needed) bytes")
                }
                var bytes: Data
                do {
                    bytes = try (records[entry.name] ?? Result { try archive.data(for: entry) }).get()
                } catch CheckpointError.corrupt(let message) where message.hasPrefix("CRC mismatch") {
                    throw CheckpointError.corrupt(
                        "CRC mismatch in \(entry.name) (tensor \(path)): corrupted, or written with CRC disabled")
                }
                guard bytes.count == needed else {
                    throw CheckpointError.corrupt(
                        "\(file): record \(entry.name) has \(bytes.count) bytes, tensor \(path) needs \(needed) (\(storage.numel) x \(storage.dtype.rawValue))")
                }
                if bigEndian { PyTorchByteOrder.swap(&bytes, elementSize: storage.dtype.size) }
                return bytes
            }
            let value = try PickleConversion.naming(file) { try conversion.convert(root) }
            return SourceDocument(format: .pth, container: "pytorch-zip", root: value, metadata: metadata,
                                  warnings: conversion.warnings)
        }
    }

    /// A file whose top-level object is an instance of a class we do not rebuild (`torch.save(model)`
    /// pickles the whole `nn.Module`) holds no usable tree: say so instead of returning a placeholder.
    static func refuseWholeObject(_ root: PickleValue, file: String) throws {
        guard case .opaque(let o) = root else { return }
        let held = o.tensors > 0 ? " holding \(o.tensors) tensors" : ""
        throw CheckpointError.notACheckpoint(
            "\(file) holds a pickled \(o.global) object\(held) (a whole model saved with torch.save(model)?), not a state dict; bissl never rebuilds Python objects; re-export it with torch.save(model.state_dict(), path)")
    }

    /// `('storage', <storage class>, key, location, numel)` -> a storage reference
    /// (torch/serialization.py `_load.persistent_load`).
    static func zipPersistentLoad(_ pid: PickleValue, context: String) throws -> PickleValue {
        guard case .tuple(let tuple) = pid, case let t = tuple.items, t.count == 5, case .string("storage") = t[0] else {
            throw CheckpointError.unsupported("\(context): persistent id \(PickleGlobals.describe(pid)) is not a storage reference")
        }
        guard case .string(let key) = t[2], case .string(let location) = t[3], case .int(let numel) = t[4], numel >= 0 else {
            throw CheckpointError.corrupt("\(context): malformed storage reference")
        }
        return .storage(try storageRef(t[1], key: key, location: location, numel: Int(numel), context: context))
    }

    /// Resolves the storage-class element of a persistent id.
    static func storageRef(_ cls: PickleValue, key: String, location: String, numel: Int, context: String) throws -> TorchStorageRef {
        switch cls {
        case .global(let g):
            guard let name = PickleGlobals.storageClassName(g) else {
                throw CheckpointError.corrupt("\(context): \(g) is not a storage class")
            }
            guard let dtype = PickleGlobals.storageClasses[name] ?? nil else {
                throw CheckpointError.unsupported("\(context): storages of type \(name) are not supported")
            }
            return TorchStorageRef(className: name, dtype: dtype, key: key, location: location, numel: numel)
        case .opaque(let o):
            throw CheckpointError.unsafe(
                "\(context): storage \(key) has class \(o.global), which is not on torch's weights-only allowlist; refusing the file (nothing was executed)")
        case .torchDType(let name):
            // torch writes a dtype here for some storages saved by newer versions.
            guard let dtype = PickleGlobals.torchDTypes[name] ?? nil else {
                throw CheckpointError.unsupported("\(context): storages of dtype torch.\(name) are not supported")
            }
            return TorchStorageRef(className: "torch.\(name)", dtype: dtype, key: key, location: location, numel: numel)
        default:
            throw CheckpointError.corrupt("\(context): storage \(key) has no storage class")
        }
    }
}

/// Byte-order conversion of storages (torch/serialization.py `_load`: `byteswap` by element size).
enum PyTorchByteOrder {
    /// Reverses the bytes of every `elementSize`-byte element in place.
    static func swap(_ data: inout Data, elementSize: Int) {
        guard elementSize > 1 else { return }
        data.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
            let p = raw.bindMemory(to: UInt8.self)
            var i = 0
            while i + elementSize <= p.count {
                var lo = i, hi = i + elementSize - 1
                while lo < hi { p.swapAt(lo, hi); lo += 1; hi -= 1 }
                i += elementSize
            }
        }
    }
}
