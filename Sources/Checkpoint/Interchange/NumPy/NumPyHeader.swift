import Foundation

/// The header of a `.npy` array: a Python dict literal with `descr`, `fortran_order` and `shape`.
///
/// Spec: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html. The dict is read by
/// a parser for the literal subset NumPy writes (dicts, tuples, lists, strings, ints, `True`/`False`/
/// `None`); nothing is evaluated. Like `numpy.lib.format.read_array_header_*`, the keys must be
/// exactly those three.
struct NumPyHeader: Equatable {
    /// The array-protocol type string: byte order (`<`, `>`, `|`, `=`) + kind + item size, e.g. `<f4`.
    /// A structured dtype (a list) is reported through `structuredDescr`.
    var descr: String
    var fortranOrder: Bool
    var shape: [Int]

    /// A Python literal value as the header writes it.
    indirect enum Literal: Equatable {
        case string(String)
        case int(Int)
        case bool(Bool)
        case none
        case tuple([Literal])
        case list([Literal])
        case dict([(String, Literal)])

        static func == (lhs: Literal, rhs: Literal) -> Bool {
            switch (lhs, rhs) {
            case (.string(let a), .string(let b)): return a == b
            case (.int(let a), .int(let b)): return a == b
            case (.bool(let a), .bool(let b)): return a == b
            case (.none, .none): return true
            case (.tuple(let a), .tuple(let b)), (.list(let a), .list(let b)): return a == b
            case (.dict(let a), .dict(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            default: return false
            }
        }
    }

    /// Errors carry a reason only; the caller adds the file and member name.
    struct Failure: Error {
        var reason: String
        var kind: Kind
        enum Kind { case corrupt, unsupported, unsafe }
    }

    /// Parses the header dict text.
    /// - Throws: `Failure` (`.corrupt`) when it is not a dict literal with exactly the keys `descr`,
    ///   `fortran_order`, `shape` of the right types; (`.unsafe`) for object arrays (`|O`), which
    ///   only unpickling could read; (`.unsupported`) for structured dtypes.
    static func parse(_ text: String) throws -> NumPyHeader {
        var parser = Parser(scalars: Array(text.unicodeScalars))
        let value: Literal
        do {
            parser.skipSpace()
            value = try parser.value(depth: 0)
            parser.skipSpace()
            guard parser.position == parser.scalars.count else { throw parser.fail("unexpected text after the header dict") }
        }
        guard case .dict(let members) = value else { throw Failure(reason: "the array header is not a dict", kind: .corrupt) }
        let keys = members.map(\.0).sorted()
        guard keys == ["descr", "fortran_order", "shape"] else {
            throw Failure(reason: "the array header has keys \(keys), expected descr, fortran_order, shape", kind: .corrupt)
        }
        let dict = Dictionary(members, uniquingKeysWith: { a, _ in a })
        guard case .bool(let fortran) = dict["fortran_order"]! else {
            throw Failure(reason: "the array header's fortran_order is not True or False", kind: .corrupt)
        }
        guard case .tuple(let dims) = dict["shape"]! else {
            throw Failure(reason: "the array header's shape is not a tuple", kind: .corrupt)
        }
        let shape = try dims.map { d -> Int in
            guard case .int(let n) = d, n >= 0 else {
                throw Failure(reason: "the array header's shape has an entry that is not a non-negative integer", kind: .corrupt)
            }
            return n
        }
        switch dict["descr"]! {
        case .string(let descr):
            let body = descr.first.map { "<>|=".contains($0) } == true ? descr.dropFirst() : Substring(descr)
            if body.hasPrefix("O") {
                throw Failure(reason: "holds Python objects (descr '\(descr)'), which only unpickling could read; refused", kind: .unsafe)
            }
            return NumPyHeader(descr: descr, fortranOrder: fortran, shape: shape)
        case .list:
            throw Failure(reason: "has a structured dtype (a list of fields), which bissl does not support", kind: .unsupported)
        default:
            throw Failure(reason: "the array header's descr is not a string", kind: .corrupt)
        }
    }

    /// The header dict as `numpy.lib.format` writes it (`_write_array_header`): keys sorted, each as
    /// `'key': repr(value), `, then spaces leaving room for the first axis to grow to 21 digits.
    var text: String {
        let dims: String
        switch shape.count {
        case 0: dims = "()"
        case 1: dims = "(\(shape[0]),)"
        default: dims = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
        var s = "{'descr': '\(descr)', 'fortran_order': \(fortranOrder ? "True" : "False"), 'shape': \(dims), }"
        if !shape.isEmpty {
            let growAxis = fortranOrder ? shape[shape.count - 1] : shape[0]
            s += String(repeating: " ", count: max(0, 21 - String(growAxis).count))
        }
        return s
    }

    private struct Parser {
        let scalars: [Unicode.Scalar]
        var position = 0
        static let maxDepth = 32

        func fail(_ reason: String) -> Failure { Failure(reason: "the array header is not a valid dict literal (\(reason))", kind: .corrupt) }

        var current: Unicode.Scalar? { position < scalars.count ? scalars[position] : nil }

        mutating func skipSpace() {
            while let c = current, c == " " || c == "\t" || c == "\n" || c == "\r" { position += 1 }
        }

        mutating func value(depth: Int) throws -> Literal {
            guard depth < Self.maxDepth else { throw fail("nested too deeply") }
            skipSpace()
            guard let c = current else { throw fail("unexpected end") }
            switch c {
            case "{":
                position += 1
                var members: [(String, Literal)] = []
                while true {
                    skipSpace()
                    if current == "}" { position += 1; return .dict(members) }
                    guard case .string(let key) = try value(depth: depth + 1) else { throw fail("dict key is not a string") }
                    skipSpace()
                    guard current == ":" else { throw fail("expected ':'") }
                    position += 1
                    members.append((key, try value(depth: depth + 1)))
                    skipSpace()
                    if current == "," { position += 1 } else if current != "}" { throw fail("expected ',' or '}'") }
                }
            case "(", "[":
                let close: Unicode.Scalar = c == "(" ? ")" : "]"
                position += 1
                var items: [Literal] = []
                var sawComma = false
                while true {
                    skipSpace()
                    if current == close {
                        position += 1
                        // `(3)` is the int 3 in Python, not a tuple; NumPy never writes it for a shape.
                        if c == "(" && items.count == 1 && !sawComma { return items[0] }
                        return c == "(" ? .tuple(items) : .list(items)
                    }
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    if current == "," { position += 1; sawComma = true } else if current != close { throw fail("expected ',' or '\(close)'") }
                }
            case "'", "\"":
                return .string(try string(quote: c))
            case "-", "0"..."9":
                var text = ""
                if c == "-" { text.append("-"); position += 1 }
                while let d = current, ("0"..."9").contains(d) { text.unicodeScalars.append(d); position += 1 }
                if current == "L" || current == "l" { position += 1 }  // Python 2 long, in files written by old NumPy
                guard let n = Int(text) else { throw fail("invalid integer '\(text)'") }
                return .int(n)
            default:
                var word = ""
                while let d = current, d.properties.isAlphabetic || d == "_" { word.unicodeScalars.append(d); position += 1 }
                switch word {
                case "True": return .bool(true)
                case "False": return .bool(false)
                case "None": return .none
                default: throw fail(word.isEmpty ? "unexpected character '\(c)'" : "unexpected name '\(word)'")
                }
            }
        }

        mutating func string(quote: Unicode.Scalar) throws -> String {
            position += 1
            var out = ""
            while true {
                guard let c = current else { throw fail("unterminated string") }
                position += 1
                if c == quote { return out }
                if c == "\\" {
                    guard let e = current else { throw fail("unterminated string") }
                    position += 1
                    switch e {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    case "\\", "'", "\"": out.unicodeScalars.append(e)
                    default: throw fail("unsupported escape '\\\(e)'")
                    }
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
    }
}
