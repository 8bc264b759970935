import Foundation

/// A value on the pickle machine's stack while a file is decoded (never executed).
///
/// Mutable containers (`list`, `dict`, set, objects receiving `BUILD`) are reference types because
/// the pickle memo shares them: `EMPTY_DICT; BINPUT 0; MARK ... SETITEMS` fills the dict the memo
/// holds (Python's pickle.py `load_setitems`). Tensors stay unmaterialised (`TorchTensorSpec`)
/// until the storages are available: the legacy format stores them after the pickle.
///
/// Containers (tuple, list, dict) are class instances whose `deinit` hands their children to
/// `PickleTeardown`, so releasing a value nested a million levels deep (a hostile file) takes a
/// loop, not a stack frame per level; `walk` visits the reachable values the same way, each
/// container once (a memo can share one container many times).
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    /// Integer outside Int64, as decimal text.
    case bigInt(String)
    case float(Double)
    case string(String)
    case bytes(Data)
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    /// A resolved global (`module.qualname`, modules normalised from Python 2 names).
    case global(String)
    /// A storage reference produced by a persistent id.
    case storage(TorchStorageRef)
    /// A tensor to be cut out of a storage.
    case tensor(TorchTensorSpec)
    /// A torch dtype object (`torch.float32` -> "float32").
    case torchDType(String)
    /// A `numpy.dtype` object; `BUILD` sets its byte order.
    case numpyDType(NumpyDTypeBox)
    /// Something built from a global we do not run; `tensors` counts tensors it swallowed.
    case opaque(PickleOpaque)
}

/// A tuple: immutable once built (a class so that it has an identity and an iterative teardown).
final class PickleTuple {
    fileprivate(set) var items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
    deinit { PickleTeardown.release(&items) }
}

final class PickleList {
    var items: [PickleValue]
    init(_ items: [PickleValue] = []) { self.items = items }
    deinit { PickleTeardown.release(&items) }
}

/// `dict` / `OrderedDict` / `Counter`: ordered, later assignments to a key replace the value.
final class PickleDict {
    fileprivate(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var stringIndex: [String: Int] = [:]
    private var intIndex: [Int64: Int] = [:]
    /// Instance attributes set by `BUILD` (a state dict's `_metadata`).
    var attributes: [(name: String, value: PickleValue)] = []

    deinit {
        var children = PickleTeardown.takeChildren(of: self)
        PickleTeardown.release(&children)
    }

    /// Keys, values and attribute values, in that order.
    var children: [PickleValue] {
        var out: [PickleValue] = []
        out.reserveCapacity(2 * entries.count + attributes.count)
        for e in entries { out.append(e.key); out.append(e.value) }
        for a in attributes { out.append(a.value) }
        return out
    }

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let s) = key {
            if let i = stringIndex[s] { entries[i].value = value; return }
            stringIndex[s] = entries.count
        } else if case .int(let k) = key {
            if let i = intIndex[k] { entries[i].value = value; return }
            intIndex[k] = entries.count
        }
        entries.append((key, value))
    }
}

/// Releases nested containers without recursion: a container's `deinit` hands its children to
/// this thread's pending list instead of releasing them itself. The outermost call drains the list
/// one value at a time; a child that was the last reference to a container runs that container's
/// `deinit`, which only appends its own children to the list. So a value nested a million levels
/// deep is freed by a loop two frames deep, whoever else shares parts of it.
enum PickleTeardown {
    private final class State {
        var pending: [PickleValue] = []
        var draining = false
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in
            if let pointer { Unmanaged<AnyObject>.fromOpaque(pointer).release() }
        }
        return key
    }()

    private static var state: State {
        if let pointer = pthread_getspecific(key) {
            return Unmanaged<AnyObject>.fromOpaque(pointer).takeUnretainedValue() as! State
        }
        let state = State()
        pthread_setspecific(key, Unmanaged<AnyObject>.passRetained(state).toOpaque())
        return state
    }

    static func release(_ items: inout [PickleValue]) {
        guard !items.isEmpty else { return }
        let state = self.state
        state.pending.append(contentsOf: items)
        items = []
        guard !state.draining else { return }
        state.draining = true
        while let value = state.pending.popLast() { _ = value }   // released here; nested deinits only append
        state.pending = []
        state.draining = false
    }

    /// Empties a list or dict (nothing for other values), releasing its children as `release` does.
    static func empty(_ container: PickleValue) {
        switch container {
        case .list(let l): release(&l.items)
        case .dict(let d):
            var children = takeChildren(of: d)
            release(&children)
        default: break
        }
    }

    fileprivate static func takeChildren(of d: PickleDict) -> [PickleValue] {
        let children = d.children
        d.entries = []
        d.attributes = []
        return children
    }
}

extension PickleValue {
    /// The values a container holds directly (dict keys, values and attribute values); `[]` for
    /// anything else.
    var children: [PickleValue] {
        switch self {
        case .tuple(let t): return t.items
        case .list(let l): return l.items
        case .dict(let d): return d.children
        default: return []
        }
    }

    /// The identity of a container, nil for plain values.
    var containerID: ObjectIdentifier? {
        switch self {
        case .tuple(let t): return ObjectIdentifier(t)
        case .list(let l): return ObjectIdentifier(l)
        case .dict(let d): return ObjectIdentifier(d)
        default: return nil
        }
    }

    /// Visits this value and every value reachable from it, depth first without recursion, each
    /// container once however often it is shared; stops early when `body` returns false.
    func walk(_ body: (PickleValue) -> Bool) {
        var seen: Set<ObjectIdentifier> = []
        var work: [PickleValue] = [self]
        while let value = work.popLast() {
            if let id = value.containerID, !seen.insert(id).inserted { continue }
            guard body(value) else { return }
            work.append(contentsOf: value.children.reversed())
        }
    }
}

final class NumpyDTypeBox {
    /// numpy type code as pickled: `f8`, `i8`, `b1`, `u1`, ...
    let code: String
    /// `<`, `>`, `|` or `=` once `BUILD` has run.
    var byteOrder = "="
    init(code: String) { self.code = code }
}

final class PickleOpaque {
    let global: String
    var tensors = 0
    init(global: String) { self.global = global }
}

/// One storage as a persistent id names it: `('storage', torch.FloatStorage, '0', 'cpu', numel)`
/// (zip format) or its legacy 6-tuple form with a view `(view_key, offset, size)`.
struct TorchStorageRef: Hashable {
    /// Storage class name, e.g. `FloatStorage`, `UntypedStorage`.
    var className: String
    /// Element type of the storage (uint8 for `UntypedStorage`).
    var dtype: DType
    /// `data/<key>` in the zip format, the root key in the legacy format.
    var key: String
    /// Device tag as recorded: `cpu`, `cuda:0`, ...
    var location: String
    /// Storage length in elements of `dtype`.
    var numel: Int
    /// Legacy view storages: first element of the view within the root storage.
    var elementOffset: Int = 0
}

/// A tensor as `torch._utils._rebuild_tensor_v2/v3` describes it, before its bytes are read.
struct TorchTensorSpec {
    var storage: TorchStorageRef
    /// dtype of the tensor (differs from the storage's only for `UntypedStorage`, v3).
    var dtype: DType
    /// In elements of `dtype`.
    var storageOffset: Int
    var size: [Int]
    var stride: [Int]
    var requiresGrad: Bool
    var isParameter: Bool = false
}
