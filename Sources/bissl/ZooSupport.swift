import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `--zoo DIR` for every zoo command; without it `$BISSL_ZOO`, else `./zoo`.
struct ZooOptions: ParsableArguments {
    @Option(name: .customLong("zoo"), help: ArgumentHelp("Zoo directory (default: $BISSL_ZOO, else ./zoo).", valueName: "DIR"))
    var zoo: String?

    var layout: ZooLayout { ZooLayout.resolve(explicit: zoo) }

    /// Opens the zoo; `create` makes it when missing (import only).
    func open(create: Bool = false) throws -> Zoo { try Zoo.open(layout, create: create) }
}

/// Output helpers shared by the zoo commands.
enum ZooOutput {
    /// Prints `value` as pretty JSON with sorted keys (non-finite numbers as strings).
    static func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// `1.2 MB`, `340 KB`, `512 B` (decimal units, as `ls -h --si`).
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: value < 10 ? "%.1f %@" : "%.0f %@", value, units[unit])
    }

    /// A metric value with 4 significant digits.
    static func metric(_ name: String?, _ value: Double?) -> String {
        guard let name else { return "" }
        guard let value else { return "\(name)=NaN" }
        return "\(name)=\(String(format: "%.4g", value))"
    }

    /// Left-aligned columns separated by two spaces; the last column is not padded.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        var out = ""
        for row in all {
            var line = ""
            for (i, cell) in row.enumerated() {
                if i > 0 { line += "  " }
                line += cell
                if i < row.count - 1 { line += String(repeating: " ", count: max(0, widths[i] - cell.count)) }
            }
            while line.last == " " { line.removeLast() }
            if !out.isEmpty { out += "\n" }
            out += line
        }
        return out
    }

    /// `ab12cd34ef56 (name)` for messages.
    static func label(_ id: String, _ name: String?) -> String {
        String(id.prefix(12)) + (name.map { " (\($0))" } ?? "")
    }
}
