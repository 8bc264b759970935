import Foundation

/// A pickle decoder that never executes anything.
///
/// Implements the opcodes of pickle protocols 0-5 as CPython's `Lib/pickle.py` (`_Unpickler`)
/// defines them and `Lib/pickletools.py` documents them, with the semantics of torch's
/// weights-only unpickler (torch/_weights_only_unpickler.py): `GLOBAL`/`STACK_GLOBAL` resolve only
/// against `PickleGlobals`' allowlist; any other global becomes an opaque placeholder, and calling,
/// instantiating or building one yields another placeholder, never code. Persistent ids go to
/// `persistentLoad` (torch's storages).
///
/// Refused with `CheckpointError`: extension-registry opcodes (`EXT1/2/4`), out-of-band buffers
/// (`NEXT_BUFFER`, `READONLY_BUFFER`), stack underflow, memo misses and truncated streams.
struct PickleReader {
    private let bytes: Data
    private(set) var position: Int
    private let persistentLoad: (PickleValue) throws -> PickleValue
    private let context: String

    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    /// Lists and dicts added to after they were made (`APPEND(S)`, `ADDITEMS`, `SETITEM(S)`, `BUILD`
    /// on a dict): every other container is built from values older than itself, so these are the
    /// only ones through which a value can contain itself. Emptied when `read` is done.
    private var filled: [PickleValue] = []
    private var filledIDs: Set<ObjectIdentifier> = []

    /// - Parameters:
    ///   - data: the pickle bytes; decoding starts at `offset`.
    ///   - context: used in error messages (`model.pth: data.pkl`).
    ///   - persistentLoad: resolves a `PERSID`/`BINPERSID` id (a tuple for torch).
    init(data: Data, offset: Int = 0, context: String,
         persistentLoad: @escaping (PickleValue) throws -> PickleValue = { _ in
             throw CheckpointError.unsupported("pickle uses persistent ids but no loader was given")
         }) {
        self.bytes = data.startIndex == 0 ? data : Data(data)
        self.position = offset
        self.context = context
        self.persistentLoad = persistentLoad
    }

    /// Decodes one pickle (up to its `STOP`) and hands its value to `body` with `end`, the byte just
    /// past the `STOP` (where a following pickle starts; `position` is then the same).
    ///
    /// The value lives only for `body`: when `body` returns or anything throws, every list and dict
    /// the pickle added to after making it is emptied. Python's pickle lets a container contain
    /// itself through the memo (`EMPTY_LIST; BINPUT 0; BINGET 0; APPEND`: a list holding itself, or
    /// longer loops through tuples and dicts); the containers are reference-counted classes, so such
    /// a loop would otherwise keep itself alive after every reference from outside is gone, a leak
    /// per hostile file for a program reading many. Emptying releases their children through
    /// `PickleTeardown` (iteratively), so any depth is freed.
    mutating func read<T>(_ body: (_ value: PickleValue, _ end: Int) throws -> T) throws -> T {
        defer { emptyFilledContainers() }
        let value = try decode()
        return try body(value, position)
    }

    private mutating func emptyFilledContainers() {
        stack = []
        memo = [:]
        for container in filled { PickleTeardown.empty(container) }
        filled = []
        filledIDs = []
    }

    /// Notes a container that the pickle adds to (see `filled`).
    private mutating func filling(_ container: PickleValue) {
        guard let id = container.containerID, filledIDs.insert(id).inserted else { return }
        filled.append(container)
    }

    private mutating func decode() throws -> PickleValue {
        stack.removeAll(keepingCapacity: true)
        marks.removeAll()
        memo.removeAll()
        while true {
            let opAt = position
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()                                   // PROTO n
            case 0x95: _ = try take(8)                                  // FRAME (length; data follows inline)
            case 0x2E:                                                  // STOP
                guard let top = stack.popLast() else { throw corrupt("STOP on an empty stack") }
                return top
            case 0x28: marks.append(stack.count)                        // MARK
            case 0x30: _ = try pop()                                    // POP
            case 0x31: _ = try popMark()                                // POP_MARK
            case 0x32: stack.append(try peek())                         // DUP
            case 0x4E: stack.append(.none)                              // NONE
            case 0x88: stack.append(.bool(true))                        // NEWTRUE
            case 0x89: stack.append(.bool(false))                       // NEWFALSE

            // Integers
            case 0x4A: stack.append(.int(Int64(Int32(bitPattern: try le32()))))   // BININT
            case 0x4B: stack.append(.int(Int64(try byte())))                      // BININT1
            case 0x4D: stack.append(.int(Int64(try le16())))                      // BININT2
            case 0x8A: stack.append(PickleReader.long(try take(Int(try byte())))) // LONG1
            case 0x8B:                                                             // LONG4
                let n = Int(Int32(bitPattern: try le32()))
                guard n >= 0 else { throw corrupt("negative LONG4 length") }
                stack.append(PickleReader.long(try take(n)))
            case 0x49:                                                             // INT (text)
                let line = try textLine()
                if line == "00" { stack.append(.bool(false)) }
                else if line == "01" { stack.append(.bool(true)) }
                else { stack.append(try PickleReader.decimal(line, at: opAt, context: context)) }
            case 0x4C:                                                             // LONG (text)
                var line = try textLine()
                if line.hasSuffix("L") { line.removeLast() }
                stack.append(try PickleReader.decimal(line, at: opAt, context: context))

            // Floats
            case 0x47:                                                             // BINFLOAT (big-endian)
                let b = try take(8)
                let bits = b.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                stack.append(.float(Double(bitPattern: bits)))
            case 0x46:                                                             // FLOAT (text)
                let line = try textLine()
                guard let d = Double(line) ?? PickleReader.specialFloat(line) else { throw corrupt("invalid FLOAT \(line)") }
                stack.append(.float(d))

            // Strings and bytes
            case 0x58: stack.append(.string(try utf8(try take(Int(try le32())))))       // BINUNICODE
            case 0x8C: stack.append(.string(try utf8(try take(Int(try byte())))))       // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(try utf8(try take(try le64Count()))))       // BINUNICODE8
            case 0x56:                                                                   // UNICODE (text)
                // raw-unicode-escape: bytes are Latin-1 code points, \uXXXX / \UXXXXXXXX escapes.
                let latin1 = String((try lineBytes()).map { Character(Unicode.Scalar($0)) })
                stack.append(.string(PickleReader.rawUnicodeEscape(latin1)))
            // Python 2 `str`: torch loads legacy files with encoding='utf-8', so these are text.
            case 0x54:                                                                   // BINSTRING
                let n = Int(Int32(bitPattern: try le32()))
                guard n >= 0 else { throw corrupt("negative BINSTRING length") }
                stack.append(.string(PickleReader.py2String(try take(n))))
            case 0x55: stack.append(.string(PickleReader.py2String(try take(Int(try byte())))))  // SHORT_BINSTRING
            case 0x53: stack.append(.string(try PickleReader.quoted(try textLine(), context: context)))  // STRING
            case 0x42: stack.append(.bytes(Data(try take(Int(try le32())))))             // BINBYTES
            case 0x43: stack.append(.bytes(Data(try take(Int(try byte())))))             // SHORT_BINBYTES
            case 0x8E: stack.append(.bytes(Data(try take(try le64Count()))))             // BINBYTES8
            case 0x96: stack.append(.bytes(Data(try take(try le64Count()))))             // BYTEARRAY8

            // Tuples
            case 0x29: stack.append(.tuple(PickleTuple([])))                                          // EMPTY_TUPLE
            case 0x85: stack.append(.tuple(PickleTuple([try pop()])))                                 // TUPLE1
            case 0x86: let b = try pop(); let a = try pop(); stack.append(.tuple(PickleTuple([a, b]))) // TUPLE2
            case 0x87:                                                                   // TUPLE3
                let c = try pop(); let b = try pop(); let a = try pop()
                stack.append(.tuple(PickleTuple([a, b, c])))
            case 0x74: stack.append(.tuple(PickleTuple(try popMark())))                               // TUPLE

            // Lists
            case 0x5D: stack.append(.list(PickleList()))                                 // EMPTY_LIST
            case 0x6C: stack.append(.list(PickleList(try popMark())))                    // LIST
            case 0x61:                                                                   // APPEND
                let v = try pop()
                try append([v], to: try peek(), at: opAt)
            case 0x65:                                                                   // APPENDS
                let items = try popMark()
                try append(items, to: try peek(), at: opAt)

            // Dicts
            case 0x7D: stack.append(.dict(PickleDict()))                                 // EMPTY_DICT
            case 0x64:                                                                   // DICT
                let items = try popMark()
                let d = PickleDict()
                try PickleReader.pairs(items).forEach { d.set($0.0, $0.1) }
                stack.append(.dict(d))
            case 0x73:                                                                   // SETITEM
                let v = try pop(); let k = try pop()
                try setItems([(k, v)], on: try peek(), at: opAt)
            case 0x75:                                                                   // SETITEMS
                let items = try popMark()
                try setItems(try PickleReader.pairs(items), on: try peek(), at: opAt)

            // Sets (kept as lists: ObjectValue has no set)
            case 0x8F: stack.append(.list(PickleList()))                                 // EMPTY_SET
            case 0x90:                                                                   // ADDITEMS
                let items = try popMark()
                try append(items, to: try peek(), at: opAt)
            case 0x91: stack.append(.list(PickleList(try popMark())))                    // FROZENSET

            // Globals and object construction
            case 0x63:                                                                   // GLOBAL
                let module = try textLine(); let name = try textLine()
                stack.append(PickleGlobals.resolve(module: module, name: name))
            case 0x93:                                                                   // STACK_GLOBAL
                let name = try pop(); let module = try pop()
                guard case .string(let n) = name, case .string(let m) = module else {
                    throw corrupt("STACK_GLOBAL needs two strings")
                }
                stack.append(PickleGlobals.resolve(module: m, name: n))
            case 0x52:                                                                   // REDUCE
                let args = try pop(); let callable = try pop()
                guard case .tuple(let a) = args else { throw corrupt("REDUCE arguments are not a tuple") }
                stack.append(try PickleGlobals.call(callable, a.items, context: context))
            case 0x81:                                                                   // NEWOBJ
                let args = try pop(); let cls = try pop()
                guard case .tuple(let a) = args else { throw corrupt("NEWOBJ arguments are not a tuple") }
                stack.append(try PickleGlobals.call(cls, a.items, context: context))
            case 0x92:                                                                   // NEWOBJ_EX
                let kwargs = try pop(); let args = try pop(); let cls = try pop()
                guard case .tuple(let a) = args else { throw corrupt("NEWOBJ_EX arguments are not a tuple") }
                if case .dict(let kw) = kwargs, !kw.entries.isEmpty, case .global(let g) = cls, PickleGlobals.isAllowed(g) {
                    throw CheckpointError.unsupported("\(context): keyword arguments to \(g) are not supported")
                }
                stack.append(try PickleGlobals.call(cls, a.items, context: context))
            case 0x69:                                                                   // INST (protocol 0)
                let module = try textLine(); let name = try textLine()
                let args = try popMark()
                stack.append(try PickleGlobals.call(PickleGlobals.resolve(module: module, name: name), args, context: context))
            case 0x6F:                                                                   // OBJ (protocol 1)
                var items = try popMark()
                guard !items.isEmpty else { throw corrupt("OBJ without a class") }
                let cls = items.removeFirst()
                stack.append(try PickleGlobals.call(cls, items, context: context))
            case 0x62:                                                                   // BUILD
                let state = try pop()
                let target = try pop()
                if case .dict = target { filling(target) }
                stack.append(try PickleGlobals.build(target, state: state, context: context))

            // Persistent ids
            case 0x51: stack.append(try persistentLoad(try pop()))                      // BINPERSID
            case 0x50: stack.append(try persistentLoad(.string(try textLine())))        // PERSID

            // Memo
            case 0x71: memo[Int(try byte())] = try peek()                                // BINPUT
            case 0x72: memo[Int(try le32())] = try peek()                                // LONG_BINPUT
            case 0x70: memo[try memoIndex(try textLine())] = try peek()                  // PUT
            case 0x94: memo[memo.count] = try peek()                                     // MEMOIZE
            case 0x68: stack.append(try fetch(Int(try byte()), at: opAt))                // BINGET
            case 0x6A: stack.append(try fetch(Int(try le32()), at: opAt))                // LONG_BINGET
            case 0x67: stack.append(try fetch(try memoIndex(try textLine()), at: opAt))  // GET

            case 0x82, 0x83, 0x84:
                throw CheckpointError.unsupported("\(context): pickle uses the copyreg extension registry (EXT opcodes), which torch never writes")
            case 0x97, 0x98:
                throw CheckpointError.unsupported("\(context): pickle uses out-of-band buffers (protocol 5), which a file cannot carry")
            default:
                throw corrupt(String(format: "unknown pickle opcode 0x%02x at byte %d", op, opAt))
            }
        }
    }

    // MARK: - Container mutation (only what weights-only allows: APPEND on lists, SETITEM on dicts)

    private mutating func append(_ items: [PickleValue], to target: PickleValue, at: Int) throws {
        switch target {
        case .list(let l): filling(target); l.items.append(contentsOf: items)
        case .opaque(let o): o.tensors += items.reduce(0) { $0 + PickleGlobals.tensorCount($1) }
        default: throw corrupt("APPEND on something that is not a list at byte \(at)")
        }
    }

    private mutating func setItems(_ pairs: [(PickleValue, PickleValue)], on target: PickleValue, at: Int) throws {
        switch target {
        case .dict(let d): filling(target); pairs.forEach { d.set($0.0, $0.1) }
        case .opaque(let o): o.tensors += pairs.reduce(0) { $0 + PickleGlobals.tensorCount($1.1) }
        default: throw corrupt("SETITEM on something that is not a dict at byte \(at)")
        }
    }

    private static func pairs(_ items: [PickleValue]) throws -> [(PickleValue, PickleValue)] {
        guard items.count % 2 == 0 else { throw CheckpointError.corrupt("pickle SETITEMS/DICT with an odd number of items") }
        return stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) }
    }

    // MARK: - Stack

    private mutating func pop() throws -> PickleValue {
        if let m = marks.last, stack.count <= m { throw corrupt("pickle stack underflow (pop across a MARK) at byte \(position)") }
        guard let v = stack.popLast() else { throw corrupt("pickle stack underflow at byte \(position)") }
        return v
    }

    private func peek() throws -> PickleValue {
        guard let v = stack.last else { throw corrupt("pickle stack underflow at byte \(position)") }
        return v
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast(), m <= stack.count else { throw corrupt("pickle MARK missing at byte \(position)") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private func fetch(_ index: Int, at: Int) throws -> PickleValue {
        guard let v = memo[index] else { throw corrupt("pickle memo entry \(index) missing at byte \(at)") }
        return v
    }

    private func memoIndex(_ line: String) throws -> Int {
        guard let i = Int(line), i >= 0 else { throw corrupt("invalid memo index \(line)") }
        return i
    }

    // MARK: - Bytes

    private func corrupt(_ message: String) -> CheckpointError {
        .corrupt("\(context): \(message)")
    }

    private mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw corrupt("pickle ends early (no STOP); the file is truncated") }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func take(_ n: Int) throws -> Data {
        guard n >= 0, n <= bytes.count - position else {
            throw corrupt("pickle ends early (needs \(n) bytes at byte \(position), has \(bytes.count - position)); the file is truncated")
        }
        defer { position += n }
        return bytes[position..<(position + n)]
    }

    private mutating func le16() throws -> UInt16 {
        let b = try take(2)
        return UInt16(b[b.startIndex]) | UInt16(b[b.startIndex + 1]) << 8
    }

    private mutating func le32() throws -> UInt32 {
        try take(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    private mutating func le64Count() throws -> Int {
        let v = try take(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard v <= UInt64(Int.max) else { throw corrupt("length out of range") }
        return Int(v)
    }

    private mutating func lineBytes() throws -> Data {
        guard let nl = bytes[position...].firstIndex(of: 0x0A) else { throw corrupt("pickle ends inside a text argument") }
        defer { position = nl + 1 }
        return bytes[position..<nl]
    }

    private mutating func textLine() throws -> String {
        let s = String(decoding: try lineBytes(), as: UTF8.self)
        return s.hasSuffix("\r") ? String(s.dropLast()) : s
    }

    private func utf8(_ b: Data) throws -> String {
        guard let s = String(bytes: b, encoding: .utf8) else { throw corrupt("string is not valid UTF-8") }
        return s
    }

    // MARK: - Scalar decoding

    /// LONG1/LONG4 payload: little-endian two's complement (pickletools `decode_long`).
    static func long(_ b: Data) -> PickleValue {
        if b.isEmpty { return .int(0) }
        if b.count <= 8 {
            var v: UInt64 = 0
            for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
            if b.count < 8, b.last! & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(b.count)) }
            return .int(Int64(bitPattern: v))
        }
        return .bigInt(decimalString(littleEndianTwosComplement: Array(b)))
    }

    /// Decimal text of an arbitrary-length little-endian two's-complement integer.
    static func decimalString(littleEndianTwosComplement b: [UInt8]) -> String {
        let negative = b.last! & 0x80 != 0
        var magnitude = b
        if negative {   // two's complement negate: invert and add one
            var carry = 1
            for i in magnitude.indices {
                let s = Int(~magnitude[i]) + carry
                magnitude[i] = UInt8(s & 0xFF)
                carry = s >> 8
            }
        }
        var digits: [UInt8] = []
        var words = Array(magnitude.reversed())   // big-endian
        while words.contains(where: { $0 != 0 }) {
            var remainder = 0
            for i in words.indices {
                let cur = remainder << 8 | Int(words[i])
                words[i] = UInt8(cur / 10)
                remainder = cur % 10
            }
            digits.append(UInt8(remainder))
        }
        let text = digits.isEmpty ? "0" : String(digits.reversed().map { Character(String($0)) })
        return negative ? "-" + text : text
    }

    static func decimal(_ text: String, at: Int, context: String) throws -> PickleValue {
        if let v = Int64(text) { return .int(v) }
        let body = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        guard !body.isEmpty, body.allSatisfy(\.isASCII), body.allSatisfy(\.isNumber) else {
            throw CheckpointError.corrupt("\(context): invalid integer \(text) at byte \(at)")
        }
        return .bigInt(text)
    }

    static func specialFloat(_ s: String) -> Double? {
        switch s.lowercased() {
        case "inf": return .infinity
        case "-inf": return -.infinity
        case "nan": return .nan
        default: return nil
        }
    }

    /// Python 2 byte strings: UTF-8 when valid, else Latin-1 (every byte maps to one code point).
    static func py2String<C: Collection>(_ b: C) -> String where C.Element == UInt8 {
        String(bytes: b, encoding: .utf8) ?? String(b.map { Character(Unicode.Scalar($0)) })
    }

    /// Protocol 0 `STRING` argument: a Python repr in quotes, with backslash escapes.
    static func quoted(_ line: String, context: String) throws -> String {
        guard line.count >= 2, let q = line.first, q == "'" || q == "\"", line.last == q else {
            throw CheckpointError.corrupt("\(context): STRING argument is not quoted")
        }
        return unescape(String(line.dropFirst().dropLast()))
    }

    /// Protocol 0 `UNICODE` argument (raw-unicode-escape: only \uXXXX and \UXXXXXXXX are escapes).
    static func rawUnicodeEscape(_ line: String) -> String {
        var out = ""
        let chars = Array(line)
        var i = 0
        while i < chars.count {
            if chars[i] == "\\", i + 1 < chars.count, chars[i + 1] == "u" || chars[i + 1] == "U" {
                let n = chars[i + 1] == "u" ? 4 : 8
                if i + 2 + n <= chars.count, let v = UInt32(String(chars[(i + 2)..<(i + 2 + n)]), radix: 16),
                   let s = Unicode.Scalar(v) {
                    out.unicodeScalars.append(s)
                    i += 2 + n
                    continue
                }
            }
            out.append(chars[i])
            i += 1
        }
        return out
    }

    private static func unescape(_ s: String) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            guard b[i] == UInt8(ascii: "\\"), i + 1 < b.count else { out.append(b[i]); i += 1; continue }
            let c = b[i + 1]
            i += 2
            switch c {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "0"): out.append(0x00)
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(c)
            case UInt8(ascii: "x") where i + 2 <= b.count:
                if let v = UInt8(String(decoding: b[i..<(i + 2)], as: UTF8.self), radix: 16) { out.append(v); i += 2 }
            default: out.append(UInt8(ascii: "\\")); out.append(c)
            }
        }
        return py2String(out[...])
    }
}
