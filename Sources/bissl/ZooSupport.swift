import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `--zoo DIR` for every zoo command; without it `$BISSL_ZOO`, else `./zoo`.
struct ZooOptions: ParsableArguments {
    @Option(name: .customLong("zoo"), help: ArgumentHelp("Zoo directory (default: $BISSL_ZOO, else ./zoo).", valueName: "DIR"))
    var zoo: String?

    var layout: ZooLayout { ZooLayout.resolve(explicit: zoo) }

    /// An empty `--zoo` (an unset shell variable) is refused, not read as the default zoo; so is
    /// `BISSL_ZOO` set to nothing (`BISSL_ZOO= bissl list`) when `--zoo` is not given.
    func validate() throws {
        if zoo == "" { throw CLIError("--zoo '': the path is empty (an unset shell variable?); give the zoo's folder") }
        if zoo == nil, ProcessInfo.processInfo.environment["BISSL_ZOO"] == "" {
            throw CLIError("BISSL_ZOO is set but empty (an unset shell variable?); set it to the zoo's folder, or unset it to use ./zoo")
        }
    }

    /// Opens the zoo; `create` makes it when missing (import only); `readOnly` commands (list, show,
    /// export, diff, lineage, verify) open the catalog read-only. Prints `Zoo.notice` (a rebuilt
    /// catalog) on stderr.
    func open(create: Bool = false, readOnly: Bool = false) throws -> Zoo {
        let zoo = try Zoo.open(layout, create: create, readOnly: readOnly)
        if let notice = zoo.notice { printStandardError("note: \(notice)") }
        return zoo
    }

    /// Runs `body` on the zoo, creating the zoo when missing (import, pull). When `body` fails on a
    /// zoo this call created and that holds no entry and no resumable transfer, the zoo is removed
    /// again: a failed first import or pull leaves no empty zoo behind.
    func adding<T>(_ body: (Zoo) throws -> T) throws -> T {
        let existed = FileManager.default.fileExists(atPath: layout.root.path)
        let zoo = try open(create: true)
        defer { try? zoo.close() }
        do {
            return try body(zoo)
        } catch {
            let untouched = !existed && ((try? zoo.list().isEmpty) ?? false)
                && ((try? FileManager.default.contentsOfDirectory(atPath: layout.tmp.path).isEmpty) ?? true)
            if untouched {
                try? zoo.close()
                try? FileManager.default.removeItem(at: layout.root)
            }
            throw error
        }
    }
}

/// Output helpers shared by the zoo commands.
enum ZooOutput {
    /// Prints one line of human-readable output with its control characters written as escapes
    /// (`String.escapingControlCharacters`, as error lines): names and values quoted from a file or
    /// a remote can neither add lines nor send terminal control sequences.
    static func printLine(_ line: String) {
        print(line.escapingControlCharacters)
    }

    /// Prints `value` as pretty JSON with sorted keys (non-finite numbers as strings).
    static func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder.bissl(pretty: true)
        printJSONText(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// `1.2 MB`, `340 KB`, `512 B` (decimal units, as `ls -h --si`).
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(n) B" : fixed(value, decimals: value < 10 ? 1 : 0) + " " + units[unit]
    }

    /// `value` (finite, 0 <= value < 2^52 / 10) with `decimals` (0 or 1) digits after the point, the
    /// same text as C's `%.0f` / `%.1f` (glibc rounds the exact binary value, a tie to even), without
    /// C's variadic call: `list` formats a size per entry. The product `value * 10` is split into its
    /// rounded value and exact error (`fma`), so the rounding decision is taken on the exact product.
    static func fixed(_ value: Double, decimals: Int) -> String {
        let scale: Double = decimals == 1 ? 10 : 1
        let product = value * scale
        let error = (-product).addingProduct(value, scale)   // value * scale - product, exactly (one fused multiply-add)
        let floor = product.rounded(.down)
        let fraction = product - floor   // exact: both lie within one unit
        // A fraction of exactly 0.5 is a tie only when the error is 0; an error below one ulp cannot
        // move any other fraction across 0.5.
        let up = fraction > 0.5 || (fraction == 0.5 && (error > 0 || (error == 0 && Int64(floor) % 2 == 1)))
        let units = Int64(floor) + (up ? 1 : 0)
        return decimals == 1 ? "\(units / 10).\(units % 10)" : "\(units)"
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

    /// Writes `bytes` to standard output in full (after anything `print` buffered), as one `write`
    /// per chunk the kernel takes, with no string made of them.
    static func writeStandardOutput(_ bytes: [UInt8]) {
        fflush(nil)
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(1, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }   // closed or failing output: as print, nothing more to do
                done += n
            }
        }
    }

    /// Left-aligned columns separated by two spaces; the last column is not padded (`TextTable`).
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var table = TextTable(header: header)
        for row in rows { for cell in row { table.append(cell) } }
        return table.text
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
