import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `--zoo DIR` for every zoo command; without it `$BISSL_ZOO`, else `./zoo`.
struct ZooOptions: ParsableArguments {
    @Option(name: .customLong("zoo"), help: ArgumentHelp("Zoo directory (default: $BISSL_ZOO, else ./zoo).", valueName: "DIR"))
    var zoo: String?

    var layout: ZooLayout { ZooLayout.resolve(explicit: zoo) }

    /// Opens the zoo; `create` makes it when missing (import only); `readOnly` commands (list, show,
    /// export, diff, lineage, verify) open the catalog read-only. Prints `Zoo.notice` (a rebuilt
    /// catalog) on stderr.
    func open(create: Bool = false, readOnly: Bool = false) throws -> Zoo {
        let zoo = try Zoo.open(layout, create: create, readOnly: readOnly)
        if let notice = zoo.notice { FileHandle.standardError.write(Data("note: \(notice)\n".utf8)) }
        return zoo
    }
}

/// Output helpers shared by the zoo commands.
enum ZooOutput {
    /// Prints `value` as pretty JSON with sorted keys (non-finite numbers as strings).
    static func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder.bissl(pretty: true)
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// `1.2 MB`, `340 KB`, `512 B` (decimal units, as `ls -h --si`).
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(n) B" : format(value < 10 ? "%.1f" : "%.0f", value) + " " + units[unit]
    }

    /// A metric value with 4 significant digits.
    static func metric(_ name: String?, _ value: Double?) -> String {
        guard let name else { return "" }
        guard let value else { return "\(name)=NaN" }
        return "\(name)=\(format("%.4g", value))"
    }

    /// C's `snprintf` of one double (the same text as `String(format:)`, without Foundation's
    /// format parser: `list` formats two numbers per entry).
    static func format(_ format: String, _ value: Double) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            let n = withVaList([value]) { vsnprintf(buffer.baseAddress, 64, format, $0) }
            return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: Int(max(0, min(n, 63)))), as: UTF8.self)
        }
    }

    /// Left-aligned columns separated by two spaces; the last column is not padded.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        // Built as UTF-8 bytes with each cell's width counted once: a list of 100,000 entries has a
        // million cells.
        let all = [header] + rows
        let counts = all.map { $0.map(width) }
        let widths = header.indices.map { i in counts.map { $0[i] }.max() ?? 0 }
        var out: [UInt8] = []
        out.reserveCapacity(all.count * (widths.reduce(0, +) + 2 * widths.count + 1))
        for (r, row) in all.enumerated() {
            if r > 0 { out.append(0x0A) }
            let lineStart = out.count
            for (i, cell) in row.enumerated() {
                if i > 0 { out.append(contentsOf: [0x20, 0x20]) }
                out.append(contentsOf: cell.utf8)
                if i < row.count - 1 { out.append(contentsOf: repeatElement(0x20, count: max(0, widths[i] - counts[r][i]))) }
            }
            while out.count > lineStart, out.last == 0x20 { out.removeLast() }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Characters of a table cell; for an ASCII cell (nearly all) its UTF-8 byte count, the same
    /// number found without grapheme breaking.
    static func width(_ cell: String) -> Int {
        var cell = cell
        return cell.withUTF8 { bytes in bytes.allSatisfy { $0 < 0x80 } ? bytes.count : nil } ?? cell.count
    }

    /// Refuses an output path inside a zoo's `objects/` folder (writing there could replace an
    /// immutable object): `objects` when given (the zoo a command uses), and any `objects/` folder
    /// next to a `catalog.sqlite` among the output's ancestors. Paths are compared after resolving
    /// symbolic links (`realpath` of the output's existing part).
    /// - Throws: `CLIError` naming the folder.
    static func refuseZooObjectsPath(_ output: String, objects: URL? = nil) throws {
        let resolved = realPath(URL(fileURLWithPath: output).standardizedFileURL.path)
        var candidates: [String] = []
        if let objects { candidates.append(realPath(objects.path)) }
        var dir = (resolved as NSString).deletingLastPathComponent
        while dir != "/" && !dir.isEmpty {
            if (dir as NSString).lastPathComponent == "objects",
               FileManager.default.fileExists(atPath: ((dir as NSString).deletingLastPathComponent as NSString).appendingPathComponent("catalog.sqlite")) {
                candidates.append(dir)
            }
            dir = (dir as NSString).deletingLastPathComponent
        }
        for folder in candidates where resolved == folder || resolved.hasPrefix(folder + "/") {
            throw CLIError("refusing to write \(output): it is inside the zoo's objects folder \(folder), whose files are immutable entries")
        }
    }

    /// `path` with symbolic links resolved: `realpath` of its longest existing prefix, the rest appended.
    static func realPath(_ path: String) -> String {
        var head = path, tail: [String] = []
        while true {
            if let resolved = realpath(head, nil) {
                defer { free(resolved) }
                return ([String(cString: resolved)] + tail.reversed()).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
            }
            let parent = (head as NSString).deletingLastPathComponent
            if parent == head || parent.isEmpty { return path }
            tail.append((head as NSString).lastPathComponent)
            head = parent
        }
    }

    /// `ab12cd34ef56 (name)` for messages.
    static func label(_ id: String, _ name: String?) -> String {
        String(id.prefix(12)) + (name.map { " (\($0))" } ?? "")
    }
}
