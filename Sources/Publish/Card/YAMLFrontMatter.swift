import Checkpoint
import Foundation

/// A value of a model card's YAML front matter, and its text in block style (YAML 1.2, readable by
/// YAML 1.1 parsers such as PyYAML's `safe_load` too).
///
/// Strings are always double-quoted with JSON's escapes (a JSON string is a valid YAML double-quoted
/// scalar), so no value can turn into another type (`yes`, `1e3`, `null`) or break the document;
/// keys matching `[A-Za-z0-9_-]+` are written plain, others double-quoted. Non-finite numbers have no
/// JSON spelling and are never written: `number` of a NaN or infinity is refused by the card builder.
indirect enum YAMLValue: Equatable {
    case string(String)
    case number(Double)
    case int(Int)
    case bool(Bool)
    case list([YAMLValue])
    case map([(String, YAMLValue)])

    static func == (a: YAMLValue, b: YAMLValue) -> Bool { a.text(indent: 0) == b.text(indent: 0) }

    /// The value as the body of `key:` (or of a list item) at `indent` spaces: a scalar on the same
    /// line, a list or map on the following lines.
    func text(indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        switch self {
        case .string(let s): return " " + Self.quoted(s)
        case .number(let d): return " " + Self.number(d)
        case .int(let i): return " \(i)"
        case .bool(let b): return b ? " true" : " false"
        case .list(let items):
            if items.isEmpty { return " []" }
            return items.map { item -> String in
                if case .map(let pairs) = item, !pairs.isEmpty {
                    // "- key: value" with the further keys aligned under the first.
                    let body = YAMLValue.map(pairs).text(indent: indent + 2)
                    return "\n" + pad + "- " + String(body.dropFirst(indent + 3))
                }
                return "\n" + pad + "-" + item.text(indent: indent + 2)
            }.joined()
        case .map(let pairs):
            if pairs.isEmpty { return " {}" }
            return pairs.map { key, value in "\n" + pad + Self.key(key) + ":" + value.text(indent: indent + 2) }.joined()
        }
    }

    /// The whole front matter: `---`, the top-level map, `---`.
    static func document(_ pairs: [(String, YAMLValue)]) -> String {
        "---" + YAMLValue.map(pairs).text(indent: 0) + "\n---\n"
    }

    /// `s` as a double-quoted scalar with JSON's escapes, and `\uXXXX` (valid in both JSON and YAML
    /// double-quoted scalars) for the control characters JSON leaves raw: DEL and C1 (outside YAML's
    /// printable set, YAML 1.2 section 5.1, so a parser refuses them raw) and U+2028/U+2029 (line
    /// breaks to YAML 1.1 parsers such as PyYAML). The value reads back exactly; the file holds no
    /// control character but the line feeds between lines.
    static func quoted(_ s: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let json = String(decoding: (try? encoder.encode(s)) ?? Data("\"\"".utf8), as: UTF8.self)
        guard json.unicodeScalars.contains(where: \.isEscapedInErrorLines) else { return json }
        var out = ""
        out.reserveCapacity(json.utf8.count + 16)
        for scalar in json.unicodeScalars {
            guard scalar.isEscapedInErrorLines else {
                out.unicodeScalars.append(scalar)
                continue
            }
            let hex = String(scalar.value, radix: 16, uppercase: true)
            out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        }
        return out
    }

    static func key(_ k: String) -> String {
        let plain = !k.isEmpty && k.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || $0 == "_" || $0 == "-" }
        return plain ? k : quoted(k)
    }

    /// Shortest round-tripping decimal with a `.` in the mantissa (`91.0`, `1.0e-05`): YAML 1.1
    /// resolvers (PyYAML) read `1e-05` as a string.
    static func number(_ d: Double) -> String {
        precondition(d.isFinite, "YAML front matter holds finite numbers only")
        let s = "\(d)"
        guard let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }), !s[..<e].contains(".") else { return s }
        return String(s[..<e]) + ".0" + String(s[e...])
    }
}
