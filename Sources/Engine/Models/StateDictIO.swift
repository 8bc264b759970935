import BisslCore

/// Moving parameters and BN buffers between the engine and a `StateDict` by canonical key.
enum StateDictIO {
    /// `sd[p.name] = p` as float32 with the PyTorch shape.
    static func store(_ p: Parameter, into sd: inout StateDict) {
        sd[p.name] = Tensor(float32: p.value, shape: p.shape)
    }

    /// Parameters then buffers of a BatchNorm, in PyTorch's order: weight, bias, running_mean,
    /// running_var, num_batches_tracked (int64, 0-dim).
    static func store(_ bn: BatchNorm2d, into sd: inout StateDict) {
        store(bn.weight, into: &sd)
        store(bn.bias, into: &sd)
        sd[bn.prefix + "running_mean"] = Tensor(float32: bn.runningMean, shape: [bn.channels])
        sd[bn.prefix + "running_var"] = Tensor(float32: bn.runningVar, shape: [bn.channels])
        sd[bn.prefix + "num_batches_tracked"] = Tensor(int64: bn.numBatchesTracked)
    }

    /// A BatchNorm1d: as a BatchNorm2d, without `weight`/`bias` when it is not affine.
    static func store(_ bn: BatchNorm1d, into sd: inout StateDict) {
        store(bn.core, into: &sd)
        if !bn.affine { sd[bn.core.weight.name] = nil; sd[bn.core.bias.name] = nil }
    }

    /// The float values of `key`, checked against `shape` (any floating dtype is widened/rounded to float32).
    /// - Throws: `ModelError.invalid` when the key is missing, has another shape or is not floating point.
    static func floats(_ sd: StateDict, _ key: String, shape: [Int], owner: String) throws -> [Float] {
        guard let t = sd[key] else { throw ModelError.invalid("\(owner): missing tensor '\(key)'") }
        guard t.shape == shape else {
            throw ModelError.invalid("\(owner): tensor '\(key)' has shape \(t.shape), the model needs \(shape)")
        }
        guard [.float32, .float64, .float16, .bfloat16].contains(t.dtype) else {
            throw ModelError.invalid("\(owner): tensor '\(key)' has dtype \(t.dtype.rawValue), expected a floating-point type")
        }
        return t.floats()
    }

    static func load(_ p: Parameter, from sd: StateDict, owner: String) throws {
        p.value = try floats(sd, p.name, shape: p.shape, owner: owner)
    }

    /// Loads a BatchNorm's parameters and buffers. A missing `num_batches_tracked` (older PyTorch
    /// files) is read as 0, as `BatchNorm._load_from_state_dict` does.
    static func load(_ bn: BatchNorm2d, from sd: StateDict, owner: String, affine: Bool = true) throws {
        if affine {
            try load(bn.weight, from: sd, owner: owner)
            try load(bn.bias, from: sd, owner: owner)
        }
        bn.runningMean = try floats(sd, bn.prefix + "running_mean", shape: [bn.channels], owner: owner)
        bn.runningVar = try floats(sd, bn.prefix + "running_var", shape: [bn.channels], owner: owner)
        if let t = sd[bn.prefix + "num_batches_tracked"] {
            guard t.count == 1 else {
                throw ModelError.invalid("\(owner): tensor '\(bn.prefix)num_batches_tracked' has shape \(t.shape), expected a scalar")
            }
            bn.numBatchesTracked = Int64(t.doubles()[0])
        } else {
            bn.numBatchesTracked = 0
        }
    }

    /// Strict check before anything is loaded (like `load_state_dict(strict=True)`): every key of
    /// `expected` present with its shape (a missing `num_batches_tracked` is allowed), no extra key.
    static func validate(_ sd: StateDict, against expected: StateDict, owner: String) throws {
        for (key, want) in expected {
            guard let t = sd[key] else {
                if key.hasSuffix("num_batches_tracked") { continue }
                throw ModelError.invalid("\(owner): missing tensor '\(key)'")
            }
            if want.dtype == .int64 {
                guard t.count == 1 else { throw ModelError.invalid("\(owner): tensor '\(key)' has shape \(t.shape), expected a scalar") }
            } else {
                _ = try floats(sd, key, shape: want.shape, owner: owner)
            }
        }
        let extra = sd.keys.filter { expected[$0] == nil }
        if !extra.isEmpty {
            let shown = extra.prefix(3).map { "'\($0)'" }.joined(separator: ", ")
            throw ModelError.invalid("\(owner): \(extra.count) unexpected tensor(s): \(shown)\(extra.count > 3 ? ", ..." : "")")
        }
    }
}
