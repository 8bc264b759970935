import Checkpoint
import Collections
import Engine

/// Something whose state a `TrainingState` saves and restores: the network, the optimisers, the
/// schedules, the data cursors, a pretext method's own state (BYOL's target). Each type writes its
/// values under `<prefix>/...` and reads them back; the loop of a run only lists what it owns.
public protocol Resumable {
    /// Where the values go when the caller names no prefix (`model`, `opt/sgd`, `sched`, ...).
    static var defaultPrefix: String { get }
    /// Stores the state under `prefix/` (replacing what was there).
    func capture(into state: inout TrainingState, prefix: String)
    /// Loads what `capture` stored.
    /// - Throws: `TrainingError.invalid` naming the first missing, unexpected or mis-sized value;
    ///   nothing is changed then.
    mutating func restore(from state: TrainingState, prefix: String) throws
}

extension TrainingState {
    /// Stores `part`'s state under `prefix` (default: its type's `defaultPrefix`).
    public mutating func capture<T: Resumable>(_ part: T, prefix: String? = nil) {
        part.capture(into: &self, prefix: prefix ?? T.defaultPrefix)
    }

    /// Restores a reference-type `part` (network, optimiser) from what `capture` stored.
    /// - Throws: as `Resumable.restore(from:prefix:)`.
    public func restore<T: Resumable & AnyObject>(_ part: T, prefix: String? = nil) throws {
        var p = part
        try p.restore(from: self, prefix: prefix ?? T.defaultPrefix)
    }

    /// Restores a value-type `part` (schedule, cursor) from what `capture` stored.
    /// - Throws: as `Resumable.restore(from:prefix:)`.
    public func restore<T: Resumable>(_ part: inout T, prefix: String? = nil) throws {
        try part.restore(from: self, prefix: prefix ?? T.defaultPrefix)
    }

    /// Stores a state dict as `<prefix>/<key>`: float tensors as float32 arrays, int64 scalars
    /// (`num_batches_tracked`) as integers.
    mutating func store(_ sd: StateDict, prefix: String) {
        for (key, tensor) in sd {
            let name = "\(prefix)/\(key)"
            if tensor.dtype == .int64 {
                integers[name] = tensor.data.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
            } else {
                arrays[name] = tensor.floats()
            }
        }
    }

    /// The state dict `store` wrote, with the keys, shapes and dtypes of `like`.
    /// - Throws: `TrainingError.invalid` for a missing or mis-sized value.
    func stateDict(like: StateDict, prefix: String) throws -> StateDict {
        var out = StateDict()
        for (key, tensor) in like {
            let name = "\(prefix)/\(key)"
            out[key] = tensor.dtype == .int64 ? Tensor(int64: try integer(name))
                : Tensor(float32: try array(name, count: tensor.count), shape: tensor.shape)
        }
        return out
    }
}

extension TrainingState {
    /// An optimiser's learning rate as `<prefix>/lr` and its per-parameter buffers as
    /// `<prefix>/<k>.<parameter name>` (none when `buffers` is nil).
    mutating func storeOptimizer(lr: Float, buffers: [[Float]]?, _ parameters: [Parameter], prefix: String) {
        arrays["\(prefix)/lr"] = [lr]
        if let buffers {
            for (k, p) in parameters.enumerated() { arrays["\(prefix)/\(k).\(p.name)"] = buffers[k] }
        }
    }

    /// What `storeOptimizer` wrote: the learning rate and, when `buffers`, one buffer per parameter
    /// (empty otherwise); nothing else may be stored under `prefix` but `extra`.
    /// - Throws: `TrainingError.invalid` on a missing, unexpected or mis-sized value.
    func optimizerState(_ parameters: [Parameter], prefix: String, buffers: Bool,
                        extra: Set<String> = []) throws -> (lr: Float, buffers: [[Float]]) {
        let lr = try array("\(prefix)/lr", count: 1)[0]
        var expected = extra.union(["\(prefix)/lr"])
        let values: [[Float]] = buffers ? try parameters.enumerated().map { k, p in
            let name = "\(prefix)/\(k).\(p.name)"
            expected.insert(name)
            return try array(name, count: p.count)
        } : []
        try refuseUnexpected(under: prefix, expected: expected)
        return (lr, values)
    }
}

// MARK: - Network and its parts

/// Every tensor of `components()` (backbone and heads: parameters, BN `running_mean`, `running_var`
/// float32 and `num_batches_tracked` int64, the BatchNorm1d layers of MLP heads included) as
/// `<prefix>/<component>/<key>`.
extension Network: Resumable {
    public static var defaultPrefix: String { "model" }

    public func capture(into state: inout TrainingState, prefix: String) {
        state.removeAll(prefix: prefix)
        for (component, sd) in components() { state.store(sd, prefix: "\(prefix)/\(component)") }
    }

    public func restore(from state: TrainingState, prefix: String) throws {
        var expected = Set<String>()
        var loaded = OrderedDictionary<String, StateDict>()
        for (component, sd) in components() {
            for key in sd.keys { expected.insert("\(prefix)/\(component)/\(key)") }
            loaded[component] = try state.stateDict(like: sd, prefix: "\(prefix)/\(component)")
        }
        try state.refuseUnexpected(under: prefix, expected: expected)
        try backbone.load(loaded["backbone"]!)
        for (name, head) in heads { try head.load(loaded[name]!) }
    }
}

/// A module saved as its state dict, `<prefix>/<key>` (BYOL's target backbone and projector).
public protocol StateDictModule: AnyObject {
    func stateDict() -> StateDict
    func load(_ sd: StateDict) throws
}

extension StateDictModule {
    public func capture(into state: inout TrainingState, prefix: String) {
        state.removeAll(prefix: prefix)
        state.store(stateDict(), prefix: prefix)
    }

    public func restore(from state: TrainingState, prefix: String) throws {
        try load(try state.stateDict(like: stateDict(), prefix: prefix))
    }
}

extension ResNet: StateDictModule, Resumable {
    public static var defaultPrefix: String { "backbone" }
}

extension MLPHead: StateDictModule, Resumable {
    public static var defaultPrefix: String { "projector" }
}

// MARK: - Optimisers, schedule

/// The learning rate (`<prefix>/lr`) and momentum buffers (`<prefix>/<k>.<parameter name>`), or
/// `<prefix>/started = 0` before the first step created them.
extension SGD: Resumable {
    public static var defaultPrefix: String { "opt/sgd" }

    public func capture(into state: inout TrainingState, prefix: String) {
        state.removeAll(prefix: prefix)
        state.integers["\(prefix)/started"] = buffers == nil ? 0 : 1
        state.storeOptimizer(lr: lr, buffers: buffers, parameters, prefix: prefix)
    }

    public func restore(from state: TrainingState, prefix: String) throws {
        let started = try state.integer("\(prefix)/started") != 0
        let (lr, buffers) = try state.optimizerState(parameters, prefix: prefix, buffers: started, extra: ["\(prefix)/started"])
        self.lr = lr
        self.buffers = started ? buffers : nil
    }
}

/// The learning rate (`<prefix>/lr`) and momentum buffers μ (`<prefix>/<k>.<name>`).
extension LARS: Resumable {
    public static var defaultPrefix: String { "opt/lars" }

    public func capture(into state: inout TrainingState, prefix: String) {
        state.removeAll(prefix: prefix)
        state.storeOptimizer(lr: lr, buffers: buffers, parameters, prefix: prefix)
    }

    public func restore(from state: TrainingState, prefix: String) throws {
        (lr, buffers) = try state.optimizerState(parameters, prefix: prefix, buffers: true)
    }
}

/// The schedule's counter `s` as `<prefix>/counter`.
extension CosineSchedule: Resumable {
    public static var defaultPrefix: String { "sched" }

    public func capture(into state: inout TrainingState, prefix: String) {
        state.removeAll(prefix: prefix)
        state.integers["\(prefix)/counter"] = Int64(counter)
    }

    public mutating func restore(from state: TrainingState, prefix: String) throws {
        counter = Int(try state.integer("\(prefix)/counter"))
    }
}
