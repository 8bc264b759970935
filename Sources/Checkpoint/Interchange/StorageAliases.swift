/// Finds tied tensors in a decoded source file; used by `LayoutResolver` and by
/// `Interchange.load` for plain tensor dicts.
enum StorageAliases {
    /// Names whose source tensors share storage key, storage offset, shape, stride and dtype and are
    /// not empty, each mapped to the first such name in `tensors` order. Tensors without a storage
    /// key (safetensors, npz) are never aliases; neither are overlapping views that differ in offset,
    /// shape or stride (`base[4:8]` of `base`, a transposed view).
    /// - Parameter tensors: (name, source tensor) in state-dict order.
    static func find(_ tensors: [(name: String, tensor: SourceTensor)]) -> [String: String] {
        var aliases: [String: String] = [:]
        var firstByView: [String: String] = [:]
        for (name, t) in tensors {
            guard let storage = t.storageKey, t.tensor.count > 0 else { continue }
            let view = "\(storage)|\(t.storageOffset)|\(t.tensor.shape)|\(t.stride)|\(t.tensor.dtype.rawValue)"
            if let first = firstByView[view] { aliases[name] = first } else { firstByView[view] = name }
        }
        return aliases
    }
}
