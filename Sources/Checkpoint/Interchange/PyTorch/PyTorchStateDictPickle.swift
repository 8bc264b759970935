import Foundation

/// Builds the pickle of a state dict exactly as `torch.save(model.state_dict())` writes it
/// (PyTorch `torch/serialization.py`, `torch/_utils.py`): an `OrderedDict` of key -> `torch._utils._rebuild_tensor_v2(
/// storage, 0, size, stride, False, OrderedDict())` where `storage` is a persistent id naming a
/// legacy typed storage (`torch.FloatStorage`, ...), followed by `BUILD` of
/// `{'_metadata': OrderedDict(module prefix -> {'version': N})}` (torch/nn/modules/module.py
/// `state_dict`). One storage per tensor, numbered in order, except that aliases name the
/// storage of the tensor they share (`StorageLayout`); strides are C-contiguous.
enum PyTorchStateDictPickle {
    /// Storage class of each dtype (torch/storage.py `_dtype_to_storage_type_map`).
    static func storageClass(_ dtype: DType) -> String {
        switch dtype {
        case .float32: return "FloatStorage"
        case .float64: return "DoubleStorage"
        case .float16: return "HalfStorage"
        case .bfloat16: return "BFloat16Storage"
        case .int64: return "LongStorage"
        case .int32: return "IntStorage"
        case .int16: return "ShortStorage"
        case .int8: return "CharStorage"
        case .uint8: return "ByteStorage"
        case .bool: return "BoolStorage"
        }
    }

    /// `_metadata` entries derived from the keys: every module prefix (`""`, `"layer1"`,
    /// `"layer1.0"`, `"layer1.0.bn1"`, ...) in first-seen pre-order; `version` 2 for modules with
    /// BatchNorm buffers (`running_mean`, `running_var`, `num_batches_tracked`: `_NormBase._version
    /// = 2`), 1 otherwise (`Module._version`). Modules without tensors (ReLU, pooling) do not appear
    /// in keys and are left out; `load_state_dict` treats a missing entry as "no version".
    static func moduleVersions(_ keys: [String]) -> [(prefix: String, version: Int)] {
        var order: [String] = []
        var seen: Set<String> = []
        var batchNorm: Set<String> = []
        for key in keys {
            var parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            let leaf = parts.removeLast()
            var prefix = ""
            if seen.insert(prefix).inserted { order.append(prefix) }
            for p in parts {
                prefix = prefix.isEmpty ? p : prefix + "." + p
                if seen.insert(prefix).inserted { order.append(prefix) }
            }
            if ["running_mean", "running_var", "num_batches_tracked"].contains(leaf) { batchNorm.insert(prefix) }
        }
        return order.map { ($0, batchNorm.contains($0) ? 2 : 1) }
    }

    /// The pickled state dict; tensor `i` uses storage `layout.storageOf[i]` (key `String(that)`).
    /// - Parameters:
    ///   - layout: which storage each tensor uses (`StorageLayout.make`); one each when omitted.
    ///   - persistentID: makes the persistent id tuple from (storage class, key, numel).
    static func pickle(_ stateDict: StateDict, layout: StorageLayout? = nil,
                       persistentID: (_ storageClass: String, _ key: String, _ numel: Int) -> PickleWriter.Value) -> Data {
        var items: [(PickleWriter.Value, PickleWriter.Value)] = []
        items.reserveCapacity(stateDict.count)
        for (index, (name, tensor)) in stateDict.enumerated() {
            let storage = layout?.storageOf[index] ?? index
            let pid = persistentID(storageClass(tensor.dtype), String(storage), tensor.count)
            let args: [PickleWriter.Value] = [
                .persistent(pid),
                .int(0),
                .tuple(tensor.shape.map { .int(Int64($0)) }),
                .tuple(PyTorchTensorView.contiguousStrides(tensor.shape).map { .int(Int64($0)) }),
                .bool(false),
                .orderedDict([], state: nil),
            ]
            items.append((.string(name), .reduce(.global(module: "torch._utils", name: "_rebuild_tensor_v2"), args)))
        }
        let versions: [(PickleWriter.Value, PickleWriter.Value)] = moduleVersions(Array(stateDict.keys)).map {
            (.string($0.prefix), .dict([(.string("version"), .int(Int64($0.version)))]))
        }
        let state = PickleWriter.Value.dict([(.string("_metadata"), .orderedDict(versions, state: nil))])
        return PickleWriter.pickle(.orderedDict(items, state: state))
    }
}

/// Which storage record each tensor of a state dict is written to: tied names share the
/// storage of the first of them, as `torch.save` does for tensors with one `untyped_storage()`
/// (torch/serialization.py `persistent_id` keys storages by identity), so `torch.load` rebuilds them
/// on one storage. Storages are numbered 0, 1, ... in order of first use.
struct StorageLayout {
    /// Storage key (index) of each tensor, in state-dict order.
    var storageOf: [Int]
    /// The tensor whose bytes each storage holds, by storage index.
    var stored: [Tensor]

    /// - Parameter aliases: alias name -> name it shares storage with (chains followed).
    /// - Throws: `CheckpointError.invalid` when an alias or its target is not in the state dict, the
    ///   two tensors differ (dtype, shape or bytes), or aliases form a cycle.
    static func make(_ stateDict: StateDict, aliases: [String: String], file: String) throws -> StorageLayout {
        var storageOf: [Int] = []
        var stored: [Tensor] = []
        var storageOfRoot: [String: Int] = [:]
        storageOf.reserveCapacity(stateDict.count)
        for (alias, target) in aliases.sorted(by: { $0.key < $1.key }) {
            for name in [alias, target] where stateDict[name] == nil {
                throw CheckpointError.invalid("cannot write \(file): alias \(alias) = \(target) names \(name), which is not in the state dict")
            }
            guard stateDict[alias] == stateDict[target] else {
                throw CheckpointError.invalid("cannot write \(file): \(alias) and \(target) differ (dtype, shape or values), so they cannot share storage")
            }
        }
        func root(_ name: String) throws -> String {
            var name = name
            var steps = 0
            while let next = aliases[name], next != name {
                name = next
                steps += 1
                if steps > aliases.count { throw CheckpointError.invalid("cannot write \(file): aliases of \(name) form a cycle") }
            }
            return name
        }
        for (name, tensor) in stateDict {
            let r = try root(name)
            if let s = storageOfRoot[r] {
                storageOf.append(s)
            } else {
                storageOfRoot[r] = stored.count
                storageOf.append(stored.count)
                stored.append(tensor)
            }
        }
        return StorageLayout(storageOf: storageOf, stored: stored)
    }
}
