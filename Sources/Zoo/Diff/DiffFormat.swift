import Checkpoint
import Foundation

/// Number, shape and value formatting shared by the diff text renderer.
enum DiffFormat {
    /// Integral values below 2^53 exactly (`100`, `-3`); other finite values with 4 significant digits
    /// (`0.01234`, `1.235e-07`); `nan`, `inf`, `-inf` for the rest.
    static func number(_ x: Double) -> String {
        if x.isNaN { return "nan" }
        if x.isInfinite { return x > 0 ? "inf" : "-inf" }
        if x == x.rounded(), Swift.abs(x) < 9_007_199_254_740_992 { return String(Int64(x)) }
        return String(format: "%.4g", x)
    }

    /// Cosine similarity with 6 decimals (`0.999871`), so values near 1 stay distinguishable.
    static func cosine(_ x: Double?) -> String {
        guard let x else { return "-" }
        if x.isNaN { return "nan" }
        return String(format: "%.6f", x)
    }

    /// A quantity that may be undefined (`-`).
    static func optional(_ x: Double?) -> String { x.map(number) ?? "-" }

    /// `[64, 3, 7, 7]`; `[]` for a 0-dim tensor.
    static func shape(_ s: [Int]?) -> String {
        guard let s else { return "-" }
        return "[" + s.map(String.init).joined(separator: ", ") + "]"
    }

    /// A JSON value for one table cell: strings bare (`""` when empty), numbers via `number`,
    /// arrays and objects as compact JSON.
    static func value(_ v: JSONValue?) -> String {
        guard let v else { return "-" }
        switch v {
        case .string(let s): return s.isEmpty ? "\"\"" : s
        case .double(let d): return number(d)
        case .array, .object:
            let encoder = JSONEncoder.bissl()
            return (try? encoder.encode(v)).map { String(decoding: $0, as: UTF8.self) } ?? v.description
        default: return v.description
        }
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded. Cells are stored
/// with their control characters escaped (`String.escapingControlCharacters`).
struct TextTable {
    var rows: [[String]] = []

    mutating func add(_ row: [String]) { rows.append(row.map(\.escapingControlCharacters)) }

    /// Lines, each prefixed by `indent`, trailing spaces removed.
    func lines(indent: String = "  ") -> [String] {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (i, cell) in row.enumerated() where i < columns - 1 { widths[i] = max(widths[i], cell.count) }
        }
        return rows.map { row in
            var line = indent
            for (i, cell) in row.enumerated() {
                line += cell
                if i < row.count - 1 { line += String(repeating: " ", count: widths[i] - cell.count + 2) }
            }
            while line.last == " " { line.removeLast() }
            return line
        }
    }
}
