import Foundation

/// Emits protocol-2 pickles the way CPython's `pickle.Pickler` (Lib/pickle.py, `_Pickler`) writes
/// the objects `torch.save` produces, so our files are shaped like torch's own:
/// - every string, non-empty tuple, dict and `REDUCE` result is memoised right after it is written
///   (`BINPUT` below 256, then `LONG_BINPUT`); globals are memoised and re-used with `BINGET`;
/// - tuples of 1-3 items use `TUPLE1/2/3`, longer ones `MARK ... TUPLE`, `()` is `EMPTY_TUPLE`;
/// - ints use `BININT1`/`BININT2`/`BININT`, else `LONG1` (`save_long`); floats `BINFLOAT` (big-endian);
/// - dict items go in batches of 1000 (`SETITEM` for a single item, `MARK ... SETITEMS` otherwise);
/// - `persistent` ids are written as their tuple followed by `BINPERSID`.
/// Strings are memoised by value (CPython memoises by identity; torch's repeated 'storage'/'cpu'
/// literals are the same object, so the output is the same for the values torch writes).
struct PickleWriter {
    /// A value to pickle.
    indirect enum Value {
        case none
        case bool(Bool)
        case int(Int64)
        case float(Double)
        case string(String)
        case tuple([Value])
        case list([Value])
        case dict([(Value, Value)])
        /// `GLOBAL module name`.
        case global(module: String, name: String)
        /// `callable(*args)` by REDUCE.
        case reduce(Value, [Value])
        /// `OrderedDict()` with items, and an optional `BUILD` state (instance `__dict__`), as
        /// `OrderedDict.__reduce__` produces.
        case orderedDict([(Value, Value)], state: Value?)
        /// A persistent id (BINPERSID).
        case persistent(Value)
    }

    private(set) var data = Data()
    private var memo: [String: Int] = [:]
    private var memoCount = 0

    /// One complete pickle of `value` (PROTO 2 ... STOP).
    static func pickle(_ value: Value) -> Data {
        var w = PickleWriter()
        w.data.append(contentsOf: [0x80, 0x02])
        w.save(value)
        w.data.append(0x2E)
        return w.data
    }

    private mutating func put() {
        let i = memoCount
        memoCount += 1
        if i < 256 { data.append(contentsOf: [0x71, UInt8(i)]) } else { data.append(0x72); le32(UInt32(i)) }
    }

    private mutating func get(_ i: Int) {
        if i < 256 { data.append(contentsOf: [0x68, UInt8(i)]) } else { data.append(0x6A); le32(UInt32(i)) }
    }

    private mutating func le32(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) }
    }

    private mutating func save(_ value: Value) {
        switch value {
        case .none: data.append(0x4E)
        case .bool(let b): data.append(b ? 0x88 : 0x89)
        case .int(let v): saveInt(v)
        case .float(let d):
            data.append(0x47)
            withUnsafeBytes(of: d.bitPattern.bigEndian) { data.append(contentsOf: $0) }
        case .string(let s):
            let key = "s:" + s
            if let i = memo[key] { get(i); return }
            let utf8 = Array(s.utf8)
            data.append(0x58); le32(UInt32(utf8.count)); data.append(contentsOf: utf8)
            memo[key] = memoCount
            put()
        case .tuple(let items):
            if items.isEmpty { data.append(0x29); return }
            if items.count <= 3 {
                items.forEach { save($0) }
                data.append([0x85, 0x86, 0x87][items.count - 1])
            } else {
                data.append(0x28)
                items.forEach { save($0) }
                data.append(0x74)
            }
            put()
        case .list(let items):
            data.append(0x5D)
            put()
            for start in stride(from: 0, to: items.count, by: 1000) {
                let batch = items[start..<min(start + 1000, items.count)]
                if batch.count == 1 { save(batch.first!); data.append(0x61) } else {
                    data.append(0x28); batch.forEach { save($0) }; data.append(0x65)
                }
            }
        case .dict(let items):
            data.append(0x7D)
            put()
            setItems(items)
        case .global(let module, let name):
            let key = "g:\(module) \(name)"
            if let i = memo[key] { get(i); return }
            data.append(0x63)
            data.append(contentsOf: Array("\(module)\n\(name)\n".utf8))
            memo[key] = memoCount
            put()
        case .reduce(let callable, let args):
            save(callable)
            save(.tuple(args))
            data.append(0x52)
            put()
        case .orderedDict(let items, let state):
            save(.global(module: "collections", name: "OrderedDict"))
            data.append(0x29)
            data.append(0x52)
            put()
            setItems(items)
            if let state {
                save(state)
                data.append(0x62)
            }
        case .persistent(let pid):
            save(pid)
            data.append(0x51)
        }
    }

    private mutating func setItems(_ items: [(Value, Value)]) {
        for start in stride(from: 0, to: items.count, by: 1000) {
            let batch = items[start..<min(start + 1000, items.count)]
            if batch.count == 1 {
                save(batch.first!.0); save(batch.first!.1); data.append(0x73)
            } else {
                data.append(0x28)
                for (k, v) in batch { save(k); save(v) }
                data.append(0x75)
            }
        }
    }

    /// CPython `save_long` for protocol 2.
    private mutating func saveInt(_ v: Int64) {
        if v >= 0 && v <= 0xFF { data.append(contentsOf: [0x4B, UInt8(v)]); return }
        if v >= 0 && v <= 0xFFFF { data.append(0x4D); withUnsafeBytes(of: UInt16(v).littleEndian) { data.append(contentsOf: $0) }; return }
        if v >= Int64(Int32.min) && v <= Int64(Int32.max) { data.append(0x4A); le32(UInt32(bitPattern: Int32(v))); return }
        // LONG1: minimal little-endian two's complement (pickle.encode_long).
        var bytes = withUnsafeBytes(of: v.littleEndian) { Array($0) }
        while bytes.count > 1 {
            let last = bytes[bytes.count - 1], prev = bytes[bytes.count - 2]
            if (last == 0x00 && prev & 0x80 == 0) || (last == 0xFF && prev & 0x80 != 0) { bytes.removeLast() } else { break }
        }
        data.append(contentsOf: [0x8A, UInt8(bytes.count)])
        data.append(contentsOf: bytes)
    }
}
