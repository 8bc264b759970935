import Foundation

/// The object tree a source file decodes to, before layout resolution picks state dicts out of it.
///
/// Pickles (`.pth`) produce arbitrary nesting of dicts, lists and tuples; safetensors and `.npz`
/// produce one flat dict of tensors. Nothing in this tree is ever executed: an object whose
/// construction would need code we do not run is kept as `.opaque` with its global's name.
public indirect enum ObjectValue: Sendable {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer outside Int64 (pickle `LONG1`/`LONG4`), kept as its decimal text.
    case bigInt(String)
    case float(Double)
    case string(String)
    case bytes(Data)
    case list([ObjectValue])
    case tuple([ObjectValue])
    /// An ordered mapping (`dict`, `OrderedDict`); keys are usually strings.
    case dict([DictEntry])
    case tensor(SourceTensor)
    /// A value we refused to build: `global` is the pickle global (`module.qualname`) it needs.
    case opaque(global: String)

    public struct DictEntry: Sendable {
        public var key: ObjectValue
        public var value: ObjectValue
        public init(key: ObjectValue, value: ObjectValue) { self.key = key; self.value = value }
    }

    /// The key as a string if it is one (dict keys in state dicts always are).
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// A dict key as one segment of a dotted key path: strings as they are, numbers in decimal,
    /// `True`/`False`/`None` as Python prints them, `?` for anything else.
    public var keyText: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .bigInt(let s): return s
        case .bool(let b): return b ? "True" : "False"
        case .float(let d): return String(d)
        case .none: return "None"
        default: return "?"
        }
    }
}

/// A tensor as found in a source file, with where it came from.
///
/// `storageKey`/`storageOffset` identify the bytes in the source (two names with the same key,
/// offset, shape and stride are aliases); `location` is the device tag the file recorded
/// (`cpu`, `cuda:0`).
public struct SourceTensor: Sendable {
    public var tensor: Tensor
    public var storageKey: String?
    public var storageOffset: Int
    public var stride: [Int]
    public var location: String?

    public init(tensor: Tensor, storageKey: String? = nil, storageOffset: Int = 0, stride: [Int] = [], location: String? = nil) {
        self.tensor = tensor
        self.storageKey = storageKey
        self.storageOffset = storageOffset
        self.stride = stride
        self.location = location
    }
}

/// The interchange formats `bissl convert`, `import` and `export` speak.
public enum InterchangeFormat: String, CaseIterable, Codable, Sendable {
    /// PyTorch `torch.save` (zip container, or the legacy pre-1.6 stream).
    case pth
    /// Hugging Face safetensors (https://huggingface.co/docs/safetensors).
    case safetensors
    /// NumPy `.npz` as written by `numpy.savez` / `numpy.savez_compressed`.
    case npz
    /// Our own HDF5 checkpoint format v1 (schemas/checkpoint-v1.md).
    case h5
}

/// A decoded source file: what it is and the object tree it holds.
public struct SourceDocument: Sendable {
    public var format: InterchangeFormat
    /// The container inside the format: `pytorch-zip`, `pytorch-legacy`, `safetensors`, `npz`, `bissl-h5`.
    public var container: String
    public var root: ObjectValue
    /// Format-level metadata (safetensors `__metadata__`, pth `byteorder`, zip top folder, ...).
    public var metadata: [String: String]
    /// Non-fatal findings (skipped unknown globals, CRC disabled, ...), recorded in provenance.
    public var warnings: [String]

    public init(format: InterchangeFormat, container: String, root: ObjectValue,
                metadata: [String: String] = [:], warnings: [String] = []) {
        self.format = format
        self.container = container
        self.root = root
        self.metadata = metadata
        self.warnings = warnings
    }
}

extension ObjectValue {
    /// Every tensor in the tree with its dotted key path (`state_dict.layer1.0.conv1.weight`,
    /// list elements by index), in document order.
    public func tensorPaths() -> [(path: String, tensor: SourceTensor)] {
        var found: [(String, SourceTensor)] = []
        func visit(_ value: ObjectValue, _ path: String) {
            let join = { (key: String) in path.isEmpty ? key : path + "." + key }
            switch value {
            case .tensor(let t): found.append((path, t))
            case .dict(let entries):
                for e in entries { visit(e.value, join(e.key.keyText)) }
            case .list(let items), .tuple(let items):
                for (i, item) in items.enumerated() { visit(item, join(String(i))) }
            default: break
            }
        }
        visit(self, "")
        return found
    }
}
