import Foundation

/// Progress of a long job on stderr: a progress bar on a terminal and plain log lines otherwise
/// (README.md, "Training on zoo entries").
///
/// - `bar` (stderr is a terminal): one line redrawn in place,
///   `[#####.....] 120/400 30% loss 1.234 lr 0.05 ETA 2m10s`, at most 10 redraws per second.
/// - `plain` (stderr is a file or pipe): `step 120/400 (30%) loss 1.234 lr 0.05 eta 2m10s`, the first
///   update, then at most one line every 10 s, and the last state at `finish()`.
/// - `none`: nothing but `message(_:)` lines.
///
/// The environment variable `BISSL_PROGRESS=plain|bar|none` forces a mode. The ETA is
/// `(total - step) * τ`, τ an exponential moving average (weight 0.1 for each new sample) of the
/// seconds per step between successive updates. Metrics print `loss` first, then `lr`, then the
/// rest sorted, each with 4 significant digits; a phase (e.g. `upper`) prints in brackets.
///
/// Thread-safe: all output goes through one lock.
public final class ProgressReporter: @unchecked Sendable {
    public enum Mode: String, Sendable { case bar, plain, none }

    public let total: Int
    public let mode: Mode
    private let write: (String) -> Void
    private let now: () -> Double
    private let lock = NSLock()
    private let width: Int

    private var lastStep: Int?
    private var lastTime = 0.0
    private var secondsPerStep: Double?
    private var lastDraw = -Double.infinity
    private var lastLine = ""
    private var lineShown = ""        // what the bar/plain output last showed
    private var barVisible = false
    private var finished = false

    /// Minimum seconds between plain lines.
    public static let plainInterval = 10.0
    /// Minimum seconds between bar redraws.
    static let barInterval = 0.1

    /// Progress of `total` steps on stderr, in the mode `BISSL_PROGRESS` asks for, else `bar` when
    /// stderr is a terminal (`isatty(2)`) and `plain` otherwise.
    public convenience init(total: Int, environment: [String: String] = ProcessInfo.processInfo.environment) {
        let mode = Self.mode(environment: environment, isTerminal: isatty(2) == 1)
        self.init(total: total, mode: mode, width: Self.terminalWidth(),
                  write: { FileHandle.standardError.write(Data($0.utf8)) },
                  now: { Date().timeIntervalSinceReferenceDate })
    }

    /// Progress writing to `write` with the clock `now` (seconds), for tests and other sinks.
    public init(total: Int, mode: Mode, width: Int = 100, write: @escaping (String) -> Void, now: @escaping () -> Double) {
        self.total = max(total, 0)
        self.mode = mode
        self.width = max(width, 40)
        self.write = write
        self.now = now
    }

    /// The mode: `BISSL_PROGRESS` when it names one, else bar on a terminal, plain otherwise.
    public static func mode(environment: [String: String], isTerminal: Bool) -> Mode {
        if let forced = environment["BISSL_PROGRESS"].flatMap({ Mode(rawValue: $0.lowercased()) }) { return forced }
        return isTerminal ? .bar : .plain
    }

    /// Reports that `step` of `total` steps are done, with the current metrics.
    public func update(step: Int, metrics: [String: Double] = [:], phase: String? = nil) {
        lock.lock(); defer { lock.unlock() }
        let t = now()
        if let previous = lastStep, step > previous {
            let sample = (t - lastTime) / Double(step - previous)
            secondsPerStep = secondsPerStep.map { 0.9 * $0 + 0.1 * sample } ?? sample
        }
        if lastStep == nil || step != lastStep { lastStep = step; lastTime = t }
        switch mode {
        case .none:
            return
        case .bar:
            lastLine = barLine(step: step, metrics: metrics, phase: phase)
            if t - lastDraw >= Self.barInterval || step >= total {
                drawBar()
                lastDraw = t
            }
        case .plain:
            lastLine = plainLine(step: step, metrics: metrics, phase: phase)
            if t - lastDraw >= Self.plainInterval {
                write(lastLine + "\n")
                lineShown = lastLine
                lastDraw = t
            }
        }
    }

    /// Prints `text` as a full line; on a terminal the bar is cleared first and redrawn below it.
    public func message(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        if mode == .bar && barVisible {
            write("\r\u{1B}[K" + text + "\n")
            drawBar()
        } else {
            write(text + "\n")
        }
    }

    /// Ends the progress output: the bar's line is completed with a newline; in plain mode the last
    /// state is printed unless it was the last line printed. Later updates start a new bar.
    public func finish() {
        lock.lock(); defer { lock.unlock() }
        switch mode {
        case .none: break
        case .bar:
            if barVisible { write("\n") }
            barVisible = false
        case .plain:
            if !lastLine.isEmpty && lastLine != lineShown { write(lastLine + "\n"); lineShown = lastLine }
        }
        lastDraw = -Double.infinity
    }

    private func drawBar() {
        guard !lastLine.isEmpty else { return }
        write("\r" + lastLine + "\u{1B}[K")
        barVisible = true
    }

    // MARK: - formatting

    func barLine(step: Int, metrics: [String: Double], phase: String?) -> String {
        let fraction = total > 0 ? min(max(Double(step) / Double(total), 0), 1) : 0
        let cells = 10
        let filled = Int((fraction * Double(cells)).rounded(.down))
        var line = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: cells - filled) + "]"
        line += " \(step)/\(total) \(Int((fraction * 100).rounded(.down)))%"
        if let phase { line += " [\(phase)]" }
        for (name, value) in Self.ordered(metrics) { line += " \(name) \(Self.number(value))" }
        if let eta = eta(step: step) { line += " ETA \(Self.duration(eta))" }
        if line.count > width - 1 { line = String(line.prefix(width - 1)) }
        return line
    }

    func plainLine(step: Int, metrics: [String: Double], phase: String?) -> String {
        let fraction = total > 0 ? min(max(Double(step) / Double(total), 0), 1) : 0
        var line = "step \(step)/\(total) (\(Int((fraction * 100).rounded(.down)))%)"
        if let phase { line += " [\(phase)]" }
        for (name, value) in Self.ordered(metrics) { line += " \(name) \(Self.number(value))" }
        if let eta = eta(step: step) { line += " eta \(Self.duration(eta))" }
        return line
    }

    private func eta(step: Int) -> Double? {
        guard let s = secondsPerStep, step < total else { return nil }
        return s * Double(total - step)
    }

    /// `loss` first, then `lr`, then the other names sorted.
    static func ordered(_ metrics: [String: Double]) -> [(String, Double)] {
        func rank(_ name: String) -> Int { name == "loss" ? 0 : name == "lr" ? 1 : 2 }
        return metrics.sorted { (rank($0.key), $0.key) < (rank($1.key), $1.key) }.map { ($0.key, $0.value) }
    }

    /// 4 significant digits (`1.234`, `0.05`, `1.2e-05`).
    static func number(_ v: Double) -> String {
        if v.isNaN { return "nan" }
        if v.isInfinite { return v > 0 ? "inf" : "-inf" }
        return String(format: "%.4g", v)
    }

    /// `42s`, `2m10s`, `1h05m`.
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" + String(format: "%02ds", s % 60) }
        return "\(s / 3600)h" + String(format: "%02dm", (s % 3600) / 60)
    }

    static func terminalWidth() -> Int {
        var size = winsize()
        if ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return 100
    }
}
