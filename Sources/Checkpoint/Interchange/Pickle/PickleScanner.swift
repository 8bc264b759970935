import Foundation

/// Lists the globals a pickle references by walking its opcodes only — no stack machine, no
/// object construction, nothing executed (the way `pickletools.genops` walks a pickle).
///
/// Argument layouts follow CPython's `Lib/pickletools.py` opcode table (protocols 0-5).
/// `STACK_GLOBAL` takes its module and name from the last two strings pushed (directly or
/// fetched from the memo), which is how protocol 4+ pickles spell them.
enum PickleScanner {
    struct Result {
        /// `module.name` in first-seen order, without duplicates.
        var globals: [String] = []
        /// Protocol from a leading `PROTO`, if any.
        var proto: Int?
        /// True when the walk reached `STOP`.
        var complete = false
        /// Byte just past the `STOP` (or where the walk ended).
        var end = 0
    }

    /// Walks the first pickle in `data` (stopping at `STOP`, at the end of data, or at an unknown opcode).
    static func scan(_ data: Data) -> Result {
        data.withUnsafeBytes { scan($0) }
    }

    private static func scan(_ b: UnsafeRawBufferPointer) -> Result {
        var result = Result()
        var seen: Set<String> = []
        var recent: [String] = []
        var memo: [Int: String] = [:]
        var memoCount = 0
        var lastString: String?
        var p = 0
        let n = b.count

        func add(_ g: String) { if seen.insert(g).inserted { result.globals.append(g) } }
        func le(_ at: Int, _ count: Int) -> Int? {
            guard at + count <= n else { return nil }
            var v: UInt64 = 0
            for i in 0..<count { v |= UInt64(b[at + i]) << (8 * UInt64(i)) }
            return v > UInt64(Int.max) ? nil : Int(v)
        }
        func line(_ at: Int) -> (String, Int)? {
            var e = at
            while e < n, b[e] != 0x0A { e += 1 }
            guard e < n else { return nil }
            return (String(decoding: UnsafeRawBufferPointer(rebasing: b[at..<e]), as: UTF8.self), e + 1)
        }
        func pushString(_ s: String) {
            recent.append(s)
            if recent.count > 2 { recent.removeFirst() }
            lastString = s
        }

        while p < n {
            let op = b[p]
            p += 1
            var pushed: String?
            switch op {
            case 0x2E: result.complete = true; result.end = p; return result        // STOP
            case 0x80: result.proto = p < n ? Int(b[p]) : nil; p += 1                 // PROTO
            case 0x4B, 0x82: p += 1                                                   // BININT1, EXT1
            case 0x71:                                                                // BINPUT
                if p < n, let s = lastString { memo[Int(b[p])] = s }
                p += 1
            case 0x68:                                                                // BINGET
                if p < n, let s = memo[Int(b[p])] { pushed = s }
                p += 1
            case 0x4D, 0x83: p += 2                                                   // BININT2, EXT2
            case 0x4A, 0x84: p += 4                                                   // BININT, EXT4
            case 0x72:                                                                // LONG_BINPUT
                if let i = le(p, 4), let s = lastString { memo[i] = s }
                p += 4
            case 0x6A:                                                                // LONG_BINGET
                if let i = le(p, 4), let s = memo[i] { pushed = s }
                p += 4
            case 0x94:                                                                // MEMOIZE
                if let s = lastString { memo[memoCount] = s }
                memoCount += 1
            case 0x47, 0x95: p += 8                                                   // BINFLOAT, FRAME
            case 0x55, 0x43, 0x8A:                                                    // 1-byte length
                guard let len = le(p, 1) else { return result }
                p += 1 + len
            case 0x8C:                                                                // SHORT_BINUNICODE
                guard let len = le(p, 1), p + 1 + len <= n else { return result }
                pushed = String(decoding: UnsafeRawBufferPointer(rebasing: b[(p + 1)..<(p + 1 + len)]), as: UTF8.self)
                p += 1 + len
            case 0x58:                                                                // BINUNICODE
                guard let len = le(p, 4), p + 4 + len <= n else { return result }
                pushed = String(decoding: UnsafeRawBufferPointer(rebasing: b[(p + 4)..<(p + 4 + len)]), as: UTF8.self)
                p += 4 + len
            case 0x54, 0x42, 0x8B:                                                    // 4-byte length
                guard let len = le(p, 4) else { return result }
                p += 4 + len
            case 0x8D, 0x8E, 0x96:                                                    // 8-byte length
                guard let len = le(p, 8), len <= n else { return result }
                p += 8 + len
            case 0x49, 0x4C, 0x46, 0x53, 0x56, 0x50:                                  // one text line
                guard let (_, e) = line(p) else { return result }
                p = e
            case 0x70:                                                                // PUT
                guard let (t, e) = line(p) else { return result }
                if let i = Int(t), let s = lastString { memo[i] = s }
                p = e
            case 0x67:                                                                // GET
                guard let (t, e) = line(p) else { return result }
                if let i = Int(t), let s = memo[i] { pushed = s }
                p = e
            case 0x63, 0x69:                                                          // GLOBAL, INST
                guard let (module, e1) = line(p), let (name, e2) = line(e1) else { return result }
                add(PickleGlobals.qualifiedName(module: module, name: name))
                p = e2
            case 0x93:                                                                // STACK_GLOBAL
                if recent.count == 2 { add(PickleGlobals.qualifiedName(module: recent[0], name: recent[1])) }
                else { add("<STACK_GLOBAL with computed names>") }
            case 0x28, 0x30, 0x31, 0x32, 0x4E, 0x88, 0x89, 0x29, 0x74, 0x85, 0x86, 0x87,
                 0x5D, 0x6C, 0x61, 0x65, 0x7D, 0x64, 0x73, 0x75, 0x8F, 0x90, 0x91, 0x52,
                 0x62, 0x81, 0x92, 0x6F, 0x51, 0x97, 0x98:
                break                                                                 // no argument
            default:
                result.end = p - 1
                return result                                                         // not a pickle opcode
            }
            if let s = pushed { pushString(s) } else if op != 0x71 && op != 0x72 && op != 0x94 && op != 0x70 { lastString = nil }
        }
        result.end = min(p, n)
        return result
    }
}
