import Foundation

/// Builds the pickle of a state dict exactly as `torch.save(model.state_dict())` writes it
/// (../shared/pth-format.md 1.3): an `OrderedDict` of key -> `torch._utils._rebuild_tensor_v2(
/// storage, 0, size, stride, False, OrderedDict())` where `storage` is a persistent id naming a
/// legacy typed storage (`torch.FloatStorage`, ...), followed by `BUILD` of
/// `{'_metadata': OrderedDict(module prefix -> {'version': N})}` (torch/nn/modules/module.py
/// `state_dict`). One storage per tensor, numbered in order; strides are C-contiguous.
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

    /// The pickled state dict; storage `i` is tensor `i` (key `String(i)`).
    /// - Parameter persistentID: makes the persistent id tuple from (storage class, key, numel).
    static func pickle(_ stateDict: StateDict,
                       persistentID: (_ storageClass: String, _ key: String, _ numel: Int) -> PickleWriter.Value) -> Data {
        var items: [(PickleWriter.Value, PickleWriter.Value)] = []
        items.reserveCapacity(stateDict.count)
        for (index, (name, tensor)) in stateDict.enumerated() {
            let pid = persistentID(storageClass(tensor.dtype), String(index), tensor.count)
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
