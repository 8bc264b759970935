import Checkpoint
import Foundation

/// One line of `log.jsonl`: `{"step":120,"time":61.5,"phase":"train","loss":1.234,"lr":0.05}`.
/// `time` is seconds of work since the run started (summed over resumed segments); metric values
/// are JSON numbers, or the strings `NaN`, `Infinity`, `-Infinity`.
public struct RunLogEntry: Equatable, Sendable {
    public var step: Int
    public var time: Double
    public var phase: String
    public var metrics: [String: Double]

    public init(step: Int, time: Double, phase: String, metrics: [String: Double]) {
        self.step = step
        self.time = time
        self.phase = phase
        self.metrics = metrics
    }

    /// Names a metric cannot take (they are the line's own fields).
    public static let reserved: Set<String> = ["step", "time", "phase"]

    /// The JSON line, without the newline: `step`, `time`, `phase`, then metrics sorted by name.
    /// Numbers use Swift's shortest round-trip form, so reading gives back the same `Double`.
    public var jsonLine: String {
        var s = "{\"step\":\(step),\"time\":\(Self.number(time)),\"phase\":\(Self.string(phase))"
        for (name, value) in metrics.sorted(by: { $0.key < $1.key }) {
            s += ",\(Self.string(name)):\(Self.number(value))"
        }
        return s + "}"
    }

    /// Parses one line; nil when it is not a complete entry (a torn line).
    public init?(jsonLine line: Substring) {
        guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)),
              case .int(let step)? = object["step"], let time = object["time"].flatMap(Self.double),
              case .string(let phase)? = object["phase"] else { return nil }
        var metrics: [String: Double] = [:]
        for (key, value) in object where !Self.reserved.contains(key) {
            guard let v = Self.double(value) else { return nil }
            metrics[key] = v
        }
        self.init(step: Int(step), time: time, phase: phase, metrics: metrics)
    }

    static func double(_ v: JSONValue) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string("NaN"): return .nan
        case .string("Infinity"): return .infinity
        case .string("-Infinity"): return -.infinity
        default: return nil
        }
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "\"NaN\"" }
        if v.isInfinite { return v > 0 ? "\"Infinity\"" : "\"-Infinity\"" }
        return v.description
    }

    static func string(_ s: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return (try? encoder.encode(s)).map { String(decoding: $0, as: UTF8.self) } ?? "\"?\""
    }
}

/// Reading and appending `log.jsonl`.
enum RunLog {
    static let fileName = "log.jsonl"

    /// The complete lines of the log, in order, with the raw text of each. A last line without its
    /// newline (torn by SIGKILL mid-write) and any line that does not parse are left out and counted.
    static func read(_ url: URL) throws -> (entries: [(entry: RunLogEntry, text: Substring)], dropped: Int) {
        guard FileManager.default.fileExists(atPath: url.path) else { return ([], 0) }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TrainingError.io("cannot read \(url.path): \(AtomicFile.reason(error))")
        }
        let text = String(decoding: data, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var dropped = 0
        // The piece after the last newline is empty for a complete file, else a torn line.
        if let last = lines.popLast(), !last.isEmpty { dropped += 1 }
        var out: [(RunLogEntry, Substring)] = []
        for line in lines where !line.isEmpty {
            if let entry = RunLogEntry(jsonLine: line) { out.append((entry, line)) } else { dropped += 1 }
        }
        return (out, dropped)
    }

    /// Opens `url` for appending (created when missing).
    static func openForAppend(_ url: URL) throws -> Int32 {
        let fd = open(url.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw TrainingError.io("cannot open \(url.path): \(String(cString: strerror(errno)))") }
        return fd
    }

    /// Writes `line` plus a newline with one `write(2)` per chunk (retried on partial writes), so a
    /// line reaches the kernel before `append` returns.
    static func append(_ line: String, fd: Int32) -> Bool {
        var bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 { if errno == EINTR { continue }; return false }
            offset += n
        }
        bytes.removeAll()
        return true
    }
}
