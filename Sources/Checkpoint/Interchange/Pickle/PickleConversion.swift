import Foundation

/// Turns a decoded pickle (`PickleValue`) into the `ObjectValue` tree the rest of bissl reads,
/// materialising tensors from their storages and recording what was skipped.
///
/// - Key paths in messages are dict keys and list indices joined by `.` (`optimizer.param_groups.0`),
///   as layout resolution names them; the root is "the top-level object".
/// - An opaque value (built from a global we do not run) stays `.opaque(global:)` and adds a warning
///   naming the global and the key path, and how many tensors it held (not imported).
/// - Attributes set by `BUILD` on a dict (a state dict's `_metadata`) become entries of that dict
///   under their attribute name, unless the dict already has such a key.
/// - Tensors that name the same storage bytes (key, offset, size, stride, dtype) share one buffer.
/// - The tree is at most `maxDepth` levels deep, and conversion produces at most `valueLimit`
///   values: a memo reference costs two bytes and copies a whole subtree, so a small file of
///   references to references would otherwise expand exponentially.
/// - Storages loaded plus tensor bytes copied out of them (views that are not a whole storage) are
///   at most `byteLimit`: twice the storage bytes the file holds, plus
///   `PyTorchTensorView.maxExpandedBytes`. A view costs a few bytes of pickle and may copy a whole
///   storage, so a small pickle of many views of one large storage (or of one deflated record
///   loaded under many storage ids) would otherwise need memory many times the file's size; a
///   real checkpoint loads each storage once and its views do not overlap. Checked before each
///   allocation. All three refusals are `CheckpointError.corrupt`.
struct PickleConversion {
    /// Deepest nesting converted (real checkpoints nest fewer than 10 levels).
    static let maxDepth = 200

    /// The most values conversion produces from a pickle of `pickleBytes` bytes: 1,000,000 plus 4
    /// per pickle byte (without sharing, every value costs at least one byte of pickle).
    static func valueLimit(pickleBytes: Int) -> Int {
        1_000_000 + 4 * max(pickleBytes, 0)
    }

    /// Loads a storage's bytes (little-endian, `numel * dtype.size` bytes); `path` names the first
    /// tensor that needs it, for error messages.
    typealias StorageLoader = (_ storage: TorchStorageRef, _ path: String) throws -> Data

    private let loadStorage: StorageLoader
    private(set) var warnings: [String] = []
    /// Device tags of the storages tensors came from, in first-seen order.
    private(set) var locations: [String] = []
    private var storages: [TorchStorageRef: Data] = [:]
    private var tensors: [TensorKey: Tensor] = [:]
    private var open: Set<ObjectIdentifier> = []
    private let valueLimit: Int
    private var produced = 0
    /// Bytes still allowed for storages loaded and tensors copied (starts at `byteLimit`).
    private var bytesLeft: Int
    private let byteLimit: Int
    /// Bytes of storage data the file holds; no one storage can be larger.
    private let storageBytes: Int

    private struct TensorKey: Hashable {
        var storage: TorchStorageRef
        var dtype: DType
        var offset: Int
        var size: [Int]
        var stride: [Int]
    }

    /// The most bytes conversion loads and copies for a file holding `storageBytes` bytes of
    /// storage data: `2 * storageBytes + PyTorchTensorView.maxExpandedBytes`.
    static func byteLimit(storageBytes: Int) -> Int {
        let (twice, overflow) = max(storageBytes, 0).multipliedReportingOverflow(by: 2)
        return overflow ? Int.max : twice.addingReportingOverflow(PyTorchTensorView.maxExpandedBytes).partialValue
    }

    /// - Parameters:
    ///   - pickleBytes: size of the pickle the value was decoded from (sets `valueLimit`).
    ///   - storageBytes: bytes of storage data the file holds, uncompressed (the sizes of a zip's
    ///     `data/` records, the storage ranges of a legacy stream); sets `byteLimit`.
    init(pickleBytes: Int, storageBytes: Int, loadStorage: @escaping StorageLoader) {
        self.valueLimit = Self.valueLimit(pickleBytes: pickleBytes)
        self.storageBytes = max(storageBytes, 0)
        self.byteLimit = Self.byteLimit(storageBytes: storageBytes)
        self.bytesLeft = byteLimit
        self.loadStorage = loadStorage
    }

    /// Takes `bytes` from what conversion may still load or copy.
    /// - Throws: `CheckpointError.corrupt` naming the tensor when fewer are left.
    private mutating func spend(_ bytes: Int, for name: String) throws {
        guard bytes <= bytesLeft else {
            throw CheckpointError.corrupt(
                "\(name): the file's tensors load and copy more than \(byteLimit) bytes (twice its storage bytes + \(PyTorchTensorView.maxExpandedBytes)): views of views of the same storage; refusing it")
        }
        bytesLeft -= bytes
    }

    /// A key path for messages: keys joined by `.`, each cut to 40 characters, and a path of more
    /// than 8 keys shown by its first 3 and last 2 (`a.0.0 ... 0.0 (200 keys)`), so a hostile depth
    /// or key length cannot make an error line of kilobytes.
    static func pathText(_ path: [String]) -> String {
        guard !path.isEmpty else { return "the top-level object" }
        let keys = path.map { $0.count > 40 ? String($0.prefix(40)) + "..." : $0 }
        guard keys.count > 8 else { return keys.joined(separator: ".") }
        return keys.prefix(3).joined(separator: ".") + " ... " + keys.suffix(2).joined(separator: ".") + " (\(keys.count) keys)"
    }

    /// Runs `body` (a conversion), putting `file` in front of the message of a `CheckpointError` that
    /// does not start with it: conversion knows key paths, not the file they are in.
    static func naming<T>(_ file: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as CheckpointError {
            let prefix = file + ": "
            func named(_ m: String) -> String { m.hasPrefix(prefix) ? m : prefix + m }
            switch error {
            case .notACheckpoint(let m): throw CheckpointError.notACheckpoint(named(m))
            case .corrupt(let m): throw CheckpointError.corrupt(named(m))
            case .unsafe(let m): throw CheckpointError.unsafe(named(m))
            case .ambiguous(let m): throw CheckpointError.ambiguous(named(m))
            case .invalid(let m): throw CheckpointError.invalid(named(m))
            case .unsupported(let m): throw CheckpointError.unsupported(named(m))
            case .io(let m): throw CheckpointError.io(named(m))
            }
        }
    }

    mutating func convert(_ value: PickleValue, path: [String] = []) throws -> ObjectValue {
        guard path.count < Self.maxDepth else {
            throw CheckpointError.corrupt("objects nested deeper than \(Self.maxDepth) levels at \(Self.pathText(path))")
        }
        produced += 1
        guard produced <= valueLimit else {
            throw CheckpointError.corrupt(
                "the pickle expands to more than \(valueLimit) values (memo references shared over and over); refusing it")
        }
        switch value {
        case .none: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .bigInt(let s): return .bigInt(s)
        case .float(let d): return .float(d)
        case .string(let s): return .string(s)
        case .bytes(let b): return .bytes(b)
        case .tuple(let t):
            return .tuple(try t.items.enumerated().map { try convert($0.element, path: path + [String($0.offset)]) })
        case .list(let l):
            let id = ObjectIdentifier(l)
            guard open.insert(id).inserted else { throw CheckpointError.corrupt("list at \(Self.pathText(path)) contains itself") }
            defer { open.remove(id) }
            return .list(try l.items.enumerated().map { try convert($0.element, path: path + [String($0.offset)]) })
        case .dict(let d):
            let id = ObjectIdentifier(d)
            guard open.insert(id).inserted else { throw CheckpointError.corrupt("dict at \(Self.pathText(path)) contains itself") }
            defer { open.remove(id) }
            var entries: [ObjectValue.DictEntry] = []
            entries.reserveCapacity(d.entries.count + d.attributes.count)
            var names: Set<String> = []
            for (k, v) in d.entries {
                let key = try convert(k, path: path + ["<key>"])
                let segment = key.keyText
                if let s = key.stringValue { names.insert(s) }
                entries.append(.init(key: key, value: try convert(v, path: path + [segment])))
            }
            for (name, v) in d.attributes where !names.contains(name) {
                entries.append(.init(key: .string(name), value: try convert(v, path: path + [name])))
                names.insert(name)
            }
            return .dict(entries)
        case .global(let g):
            return .string(g)
        case .torchDType(let name):
            return .string("torch.\(name)")
        case .numpyDType(let box):
            return .string("numpy.dtype(\(box.code))")
        case .storage(let s):
            throw CheckpointError.unsupported("\(Self.pathText(path)) is a bare \(s.className) (storage \(s.key)) without a tensor; not supported")
        case .opaque(let o):
            var message = "skipped \(Self.pathText(path)): it needs \(o.global), which is not on torch's weights-only allowlist (never executed)"
            if o.tensors > 0 { message += "; it held \(o.tensors) tensor\(o.tensors == 1 ? "" : "s"), not imported" }
            warnings.append(message)
            return .opaque(global: o.global)
        case .tensor(let spec):
            return .tensor(try sourceTensor(spec, path: path))
        }
    }

    private mutating func sourceTensor(_ spec: TorchTensorSpec, path: [String]) throws -> SourceTensor {
        let name = Self.pathText(path)
        let key = TensorKey(storage: spec.storage, dtype: spec.dtype, offset: spec.storageOffset, size: spec.size, stride: spec.stride)
        if !locations.contains(spec.storage.location) { locations.append(spec.storage.location) }
        let tensor: Tensor
        if let cached = tensors[key] {
            tensor = cached
        } else {
            let bytes: Data
            if let cached = storages[spec.storage] {
                bytes = cached
            } else {
                guard let needed = [spec.storage.numel, spec.storage.dtype.size].checkedProduct, needed <= storageBytes else {
                    throw CheckpointError.corrupt(
                        "\(name): storage \(spec.storage.key) declares \(spec.storage.numel) \(spec.storage.dtype.rawValue) elements, more than the file's \(storageBytes) bytes of storage data hold")
                }
                try spend(needed, for: name)
                bytes = try loadStorage(spec.storage, name)
                storages[spec.storage] = bytes
            }
            guard bytes.count % spec.dtype.size == 0 else {
                throw CheckpointError.corrupt("\(name): storage \(spec.storage.key) has \(bytes.count) bytes, not a whole number of \(spec.dtype.rawValue) elements")
            }
            tensor = try PyTorchTensorView.materialize(storage: bytes, dtype: spec.dtype, offset: spec.storageOffset,
                                                       size: spec.size, stride: spec.stride, name: name) { try spend($0, for: name) }
            tensors[key] = tensor
        }
        return SourceTensor(tensor: tensor, storageKey: spec.storage.key,
                            storageOffset: spec.storage.elementOffset + spec.storageOffset,
                            stride: spec.stride, location: spec.storage.location)
    }

}
