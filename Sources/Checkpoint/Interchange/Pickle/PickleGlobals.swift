import Foundation

/// The globals a checkpoint pickle may name, and what "calling" each one means as data.
///
/// The allowlist follows torch's weights-only unpickler (torch/_weights_only_unpickler.py,
/// `_get_allowed_globals`, `_tensor_rebuild_functions`) plus numpy scalars decoded as numbers
/// (`numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar` with a `numpy.dtype`).
/// Nothing is ever imported or run: each allowed global has a fixed Swift interpretation below.
/// Any other global resolves to `PickleValue.opaque`; using one to build a tensor from a storage
/// throws `CheckpointError.unsafe` naming it.
enum PickleGlobals {
    /// Python 2 module names pickle protocol 2 writes (`fix_imports`), as CPython's
    /// `Lib/_compat_pickle.py` maps them back.
    private static let py2Modules = ["__builtin__": "builtins", "copy_reg": "copyreg", "cPickle": "pickle"]

    /// torch dtype attribute names and the DType each maps to (nil: known to torch, not supported here).
    static let torchDTypes: [String: DType?] = [
        "float32": .float32, "float": .float32, "float64": .float64, "double": .float64,
        "float16": .float16, "half": .float16, "bfloat16": .bfloat16,
        "int64": .int64, "long": .int64, "int32": .int32, "int": .int32, "int16": .int16, "short": .int16,
        "int8": .int8, "uint8": .uint8, "bool": .bool,
        "complex32": nil, "complex64": nil, "complex128": nil, "cfloat": nil, "cdouble": nil, "chalf": nil,
        "uint16": nil, "uint32": nil, "uint64": nil,
        "float8_e4m3fn": nil, "float8_e5m2": nil, "float8_e4m3fnuz": nil, "float8_e5m2fnuz": nil,
        "float8_e8m0fnu": nil, "float4_e2m1fn_x2": nil,
        "qint8": nil, "quint8": nil, "qint32": nil, "quint4x2": nil, "quint2x4": nil,
        "bits8": nil, "bits16": nil, "bits1x8": nil, "bits2x4": nil, "bits4x2": nil,
    ]

    /// Legacy typed storage classes (module `torch`, `torch.cuda` in old GPU files) -> element type.
    /// nil: a storage torch knows but this reader does not (complex, quantized).
    static let storageClasses: [String: DType?] = [
        "FloatStorage": .float32, "DoubleStorage": .float64, "HalfStorage": .float16,
        "BFloat16Storage": .bfloat16, "LongStorage": .int64, "IntStorage": .int32,
        "ShortStorage": .int16, "CharStorage": .int8, "ByteStorage": .uint8, "BoolStorage": .bool,
        "UntypedStorage": .uint8,
        "ComplexFloatStorage": nil, "ComplexDoubleStorage": nil, "QInt8Storage": nil,
        "QUInt8Storage": nil, "QInt32Storage": nil, "QUInt4x2Storage": nil, "QUInt2x4Storage": nil,
    ]

    /// Callables we interpret.
    private static let callables: Set<String> = [
        "collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.frozenset",
        "builtins.bytearray", "builtins.bytes", "_codecs.encode", "torch.Size", "torch.device",
        "torch.serialization._get_layout", "torch.nn.parameter.Parameter", "torch.Tensor",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
    ]

    /// Rebuild functions torch allows that produce tensors we cannot represent.
    private static let unsupportedRebuilds: [String: String] = [
        "torch._utils._rebuild_qtensor": "quantized tensors",
        "torch._utils._rebuild_sparse_tensor": "sparse tensors",
        "torch._utils._rebuild_nested_tensor": "nested tensors",
        "torch._utils._rebuild_meta_tensor_no_storage": "meta tensors (they have no data)",
        "torch._utils._rebuild_wrapper_subclass": "tensor wrapper subclasses",
        "torch._utils._rebuild_device_tensor_from_numpy": "device tensors rebuilt from numpy",
        "torch._utils._rebuild_device_tensor_from_cpu_tensor": "device tensors rebuilt from CPU copies",
    ]

    /// `module.name` with Python 2 module names normalised.
    static func qualifiedName(module: String, name: String) -> String {
        "\(py2Modules[module] ?? module).\(name)"
    }

    /// True when `global` (a qualified name) is on our allowlist.
    static func isAllowed(_ global: String) -> Bool {
        callables.contains(global) || unsupportedRebuilds[global] != nil || storageClassName(global) != nil
            || torchDTypeName(global) != nil
    }

    /// The value a `GLOBAL module name` opcode pushes.
    static func resolve(module: String, name: String) -> PickleValue {
        let full = qualifiedName(module: module, name: name)
        if let dtype = torchDTypeName(full) { return .torchDType(dtype) }
        if isAllowed(full) { return .global(full) }
        return .opaque(PickleOpaque(global: full))
    }

    /// `FloatStorage` for `torch.FloatStorage`, `torch.cuda.FloatStorage`, `torch.storage.UntypedStorage`.
    static func storageClassName(_ global: String) -> String? {
        for prefix in ["torch.cuda.", "torch.storage.", "torch."] where global.hasPrefix(prefix) {
            let name = String(global.dropFirst(prefix.count))
            if storageClasses[name] != nil { return name }
        }
        return nil
    }

    private static func torchDTypeName(_ global: String) -> String? {
        guard global.hasPrefix("torch.") else { return nil }
        let name = String(global.dropFirst(6))
        return torchDTypes[name] != nil ? name : nil
    }

    // MARK: - REDUCE / NEWOBJ

    /// The result of applying `callable` to `args` (REDUCE, NEWOBJ, INST, OBJ), as data.
    static func call(_ callable: PickleValue, _ args: [PickleValue], context: String) throws -> PickleValue {
        switch callable {
        case .opaque(let o):
            if args.contains(where: containsStorage) {
                throw CheckpointError.unsafe(
                    "\(context): a tensor is rebuilt by \(o.global), which is not on torch's weights-only allowlist; refusing the file (nothing was executed)")
            }
            let result = PickleOpaque(global: o.global)
            result.tensors = args.reduce(0) { $0 + tensorCount($1) }
            return .opaque(result)
        case .global(let g):
            return try callAllowed(g, args, context: context)
        default:
            throw CheckpointError.corrupt("\(context): pickle calls something that is not a class or function")
        }
    }

    private static func callAllowed(_ g: String, _ args: [PickleValue], context: String) throws -> PickleValue {
        func bad() -> CheckpointError {
            .corrupt("\(context): unexpected arguments to \(g): \(args.map(describe).joined(separator: ", "))")
        }
        if let what = unsupportedRebuilds[g] {
            throw CheckpointError.unsupported("\(context): the file holds \(what) (\(g)), which bissl does not support")
        }
        switch g {
        case "collections.OrderedDict", "collections.Counter":
            let d = PickleDict()
            if let first = args.first {
                let items: [PickleValue]
                switch first {
                case .list(let l): items = l.items
                case .tuple(let t): items = t.items
                case .dict(let other): other.entries.forEach { d.set($0.key, $0.value) }; items = []
                default: throw bad()
                }
                for item in items {
                    switch item {
                    case .tuple(let kv) where kv.items.count == 2: d.set(kv.items[0], kv.items[1])
                    case .list(let kv) where kv.items.count == 2: d.set(kv.items[0], kv.items[1])
                    default: throw bad()
                    }
                }
            }
            return .dict(d)
        case "builtins.set", "builtins.frozenset":
            guard let first = args.first else { return .list(PickleList()) }
            switch first {
            case .list(let l): return .list(PickleList(l.items))
            case .tuple(let t): return .list(PickleList(t.items))
            default: throw bad()
            }
        case "builtins.bytearray", "builtins.bytes":
            // protocols < 3 pickle b'' as bytes() and other bytes via _codecs.encode.
            if args.isEmpty { return .bytes(Data()) }
            if case .bytes(let b) = args[0] { return .bytes(b) }
            if args.count == 2 { return try callAllowed("_codecs.encode", args, context: context) }
            throw bad()
        case "_codecs.encode":
            guard case .string(let s)? = args.first else { throw bad() }
            let encoding: String
            if args.count > 1, case .string(let e) = args[1] { encoding = e.lowercased() } else { encoding = "utf-8" }
            switch encoding {
            case "latin1", "latin-1", "iso-8859-1", "iso8859-1":
                var out = Data()
                for scalar in s.unicodeScalars {
                    guard scalar.value < 256 else { throw bad() }
                    out.append(UInt8(scalar.value))
                }
                return .bytes(out)
            case "utf-8", "utf8":
                return .bytes(Data(s.utf8))
            case "ascii" where s.unicodeScalars.allSatisfy(\.isASCII):
                return .bytes(Data(s.utf8))
            default:
                throw CheckpointError.unsupported("\(context): bytes encoded as \(encoding) are not supported")
            }
        case "torch.Size":
            guard args.count == 1 else { throw bad() }
            switch args[0] {
            case .tuple: return args[0]
            case .list(let l): return .tuple(PickleTuple(l.items))
            default: throw bad()
            }
        case "torch.device":
            guard case .string(let type)? = args.first else { throw bad() }
            if args.count == 2, case .int(let index) = args[1] { return .string("\(type):\(index)") }
            if args.count == 2, case .none = args[1] { return .string(type) }
            guard args.count == 1 else { throw bad() }
            return .string(type)
        case "torch.serialization._get_layout":
            guard args.count == 1, case .string(let name) = args[0] else { throw bad() }
            return .string(name)
        case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3":
            return .tensor(try rebuildTensor(g, args, context: context, bad: bad))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state", "torch.nn.parameter.Parameter":
            guard case .tensor(var spec)? = args.first else {
                if case .opaque? = args.first { return args[0] }
                throw bad()
            }
            spec.isParameter = true
            if args.count > 1, case .bool(let rg) = args[1] { spec.requiresGrad = rg }
            return .tensor(spec)
        case "torch._tensor._rebuild_from_type_v2":
            guard args.count >= 3, case .tuple(let innerArgs) = args[2] else { throw bad() }
            switch args[1] {
            case .global("torch.Tensor"), .global("torch.nn.parameter.Parameter"): break
            case .opaque(let o):
                throw CheckpointError.unsafe(
                    "\(context): a tensor is of subclass \(o.global), which is not on torch's weights-only allowlist; refusing the file (nothing was executed)")
            default: throw bad()
            }
            var result = try call(args[0], innerArgs.items, context: context)
            if case .global("torch.nn.parameter.Parameter") = args[1], case .tensor(var spec) = result {
                spec.isParameter = true
                result = .tensor(spec)
            }
            return result
        case "numpy.dtype":
            guard case .string(let code)? = args.first else { throw bad() }
            return .numpyDType(NumpyDTypeBox(code: code))
        case "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar":
            guard args.count == 2, case .numpyDType(let dtype) = args[0], case .bytes(let raw) = args[1] else {
                // numpy object scalars carry a Python object instead of bytes: not data we decode.
                return .opaque(PickleOpaque(global: g))
            }
            return try numpyScalar(dtype, raw, context: context)
        default:
            throw CheckpointError.unsupported("\(context): \(g) cannot be called in a checkpoint")
        }
    }

    private static func rebuildTensor(_ g: String, _ args: [PickleValue], context: String,
                                      bad: () -> CheckpointError) throws -> TorchTensorSpec {
        guard args.count >= 4, case .storage(let storage) = args[0], case .int(let offset) = args[1],
              let size = ints(args[2]), let stride = ints(args[3]) else { throw bad() }
        var dtype = storage.dtype
        var requiresGrad = false
        if g != "torch._utils._rebuild_tensor", args.count >= 5, case .bool(let rg) = args[4] { requiresGrad = rg }
        if g == "torch._utils._rebuild_tensor_v3" {
            guard args.count >= 7, case .torchDType(let name) = args[6] else { throw bad() }
            guard let mapped = torchDTypes[name] ?? nil else {
                throw CheckpointError.unsupported("\(context): tensors of dtype torch.\(name) are not supported")
            }
            dtype = mapped
        }
        guard size.count == stride.count, size.count <= 64, size.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }),
              offset >= 0 else {
            throw CheckpointError.corrupt("\(context): tensor with size \(size), stride \(stride), offset \(offset) is invalid")
        }
        return TorchTensorSpec(storage: storage, dtype: dtype, storageOffset: Int(offset), size: size, stride: stride,
                               requiresGrad: requiresGrad)
    }

    /// A numpy scalar as a number: `scalar(dtype('f8'), b'...')` -> 0.5 (numpy's `.tobytes()` layout).
    private static func numpyScalar(_ dtype: NumpyDTypeBox, _ raw: Data, context: String) throws -> PickleValue {
        let code = dtype.code
        guard let kind = code.first else { throw CheckpointError.corrupt("\(context): empty numpy dtype") }
        let width = code == "?" ? 1 : Int(code.dropFirst()) ?? 0
        guard width > 0, raw.count == width else {
            throw CheckpointError.corrupt("\(context): numpy scalar of dtype \(code) has \(raw.count) bytes")
        }
        var bytes = [UInt8](raw)
        if dtype.byteOrder == ">" { bytes.reverse() }
        let u = bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        switch (kind, width) {
        case ("f", 8): return .float(Double(bitPattern: u))
        case ("f", 4): return .float(Double(Float(bitPattern: UInt32(u))))
        case ("f", 2): return .float(Double(halfToFloat(UInt16(u))))
        case ("i", _):
            let shift = UInt64(64 - 8 * width)
            return .int(Int64(bitPattern: u << shift) >> Int64(shift))
        case ("u", _):
            return u <= UInt64(Int64.max) ? .int(Int64(u)) : .bigInt(String(u))
        case ("b", 1), ("?", 1):
            return .bool(u != 0)
        default:
            throw CheckpointError.unsupported("\(context): numpy scalars of dtype \(code) are not supported")
        }
    }

    // MARK: - BUILD

    /// `BUILD`: sets state on an object. Only dict attributes (a state dict's `_metadata`), numpy
    /// dtype byte order and tensor `__dict__` (ignored) are meaningful; opaque objects absorb it.
    static func build(_ target: PickleValue, state: PickleValue, context: String) throws -> PickleValue {
        switch target {
        case .dict(let d):
            var states: [PickleValue] = [state]
            if case .tuple(let t) = state { states = t.items }
            for s in states {
                switch s {
                case .dict(let attrs):
                    for (k, v) in attrs.entries {
                        guard case .string(let name) = k else { throw CheckpointError.corrupt("\(context): attribute name is not a string") }
                        d.attributes.append((name, v))
                    }
                case .none: continue
                default: throw CheckpointError.corrupt("\(context): unexpected state for a dict: \(describe(s))")
                }
            }
            return target
        case .numpyDType(let box):
            if case .tuple(let t) = state, t.items.count > 1, case .string(let order) = t.items[1] { box.byteOrder = order }
            return target
        case .tensor:
            return target
        case .opaque(let o):
            o.tensors += tensorCount(state)
            return target
        default:
            throw CheckpointError.corrupt("\(context): BUILD on \(describe(target)) is not allowed")
        }
    }

    // MARK: - Helpers

    static func ints(_ v: PickleValue) -> [Int]? {
        let items: [PickleValue]
        switch v {
        case .tuple(let t): items = t.items
        case .list(let l): items = l.items
        default: return nil
        }
        var out: [Int] = []
        for item in items {
            guard case .int(let i) = item else { return nil }
            out.append(Int(i))
        }
        return out
    }

    /// True if `v` holds a storage reference (the raw material of a tensor) anywhere inside.
    static func containsStorage(_ v: PickleValue) -> Bool {
        var found = false
        v.walk { value in
            if case .storage = value { found = true }
            return !found
        }
        return found
    }

    /// Number of tensors inside `v` (for "skipped field held N tensors"); a shared container counts once.
    static func tensorCount(_ v: PickleValue) -> Int {
        var count = 0
        v.walk { value in
            switch value {
            case .tensor: count += 1
            case .opaque(let o): count += o.tensors
            default: break
            }
            return true
        }
        return count
    }

    /// Short description for messages.
    static func describe(_ v: PickleValue) -> String {
        switch v {
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .bigInt(let s): return s
        case .float(let d): return String(d)
        case .string(let s): return "'\(s.prefix(40))'"
        case .bytes(let b): return "bytes(\(b.count))"
        case .tuple(let t): return "tuple(\(t.items.count))"
        case .list(let l): return "list(\(l.items.count))"
        case .dict(let d): return "dict(\(d.entries.count))"
        case .global(let g): return g
        case .storage(let s): return "storage \(s.className) \(s.key)"
        case .tensor: return "tensor"
        case .torchDType(let n): return "torch.\(n)"
        case .numpyDType(let b): return "numpy.dtype(\(b.code))"
        case .opaque(let o): return o.global
        }
    }
}
