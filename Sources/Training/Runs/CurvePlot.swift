import CPNG
import Checkpoint
import Foundation

/// Draws a run's logged metrics against the step as an RGB PNG (`curves.png`), encoded by libpng
/// (`bissl_png_encode_rgb` in Sources/CPNG/shim.h).
///
/// Layout: a title band with the run id, then one panel per metric family, each `panelHeight`
/// pixels tall and `width` wide: `loss` (names containing "loss"), `accuracy` (names containing
/// "top1", "top5", "acc" or "map"), then one panel per other metric (e.g. `lr`), sorted. Every panel
/// has a light grid, axes with tick labels (1-2-5 steps), the step on the shared x-axis, and a legend
/// above the plot (wrapping to more rows when long) naming each series next to its colour. A series is one metric in one phase; when a metric is logged in
/// several phases its legend says `name (phase)`. Non-finite values are skipped (the line breaks).
public enum CurvePlot {
    public static let width = 960
    public static let titleHeight = 36
    public static let panelHeight = 300

    /// Series colours in order (matplotlib's tab10 without its grey): distinct from the white
    /// background, the black axes and text, and the grey grid.
    public static let palette: [(UInt8, UInt8, UInt8)] = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (0, 0, 128),
    ]

    /// One curve: `metric` in `phase`, its points in logging order.
    public struct Series: Equatable, Sendable {
        public var metric: String
        public var phase: String
        public var label: String
        public var family: String
        public var points: [(step: Int, value: Double)]
        /// Index into `palette` (modulo its size).
        public var colourIndex: Int

        public static func == (a: Series, b: Series) -> Bool {
            a.metric == b.metric && a.phase == b.phase && a.label == b.label && a.family == b.family
                && a.colourIndex == b.colourIndex && a.points.map(\.step) == b.points.map(\.step)
                && a.points.map(\.value.bitPattern) == b.points.map(\.value.bitPattern)
        }
    }

    /// The panel a metric goes to.
    public static func family(of metric: String) -> String {
        let m = metric.lowercased()
        if m.contains("loss") { return "loss" }
        if ["top1", "top5", "acc", "map"].contains(where: m.contains) { return "accuracy" }
        return metric
    }

    /// The series of `entries`, panel by panel (loss, accuracy, others sorted), colours assigned in
    /// that order.
    public static func series(_ entries: [RunLogEntry]) -> [Series] {
        var phasesOf: [String: [String]] = [:]
        var points: [String: [String: [(step: Int, value: Double)]]] = [:]
        for e in entries {
            for (name, value) in e.metrics {
                if !(phasesOf[name]?.contains(e.phase) ?? false) { phasesOf[name, default: []].append(e.phase) }
                points[name, default: [:]][e.phase, default: []].append((e.step, value))
            }
        }
        func rank(_ name: String) -> (Int, String, String) {
            let f = family(of: name)
            return (f == "loss" ? 0 : f == "accuracy" ? 1 : 2, f, name)
        }
        let names = phasesOf.keys.sorted { rank($0) < rank($1) }
        var out: [Series] = []
        for name in names {
            let phases = phasesOf[name]!
            for phase in phases {
                let label = phases.count > 1 ? "\(name) (\(phase))" : name
                out.append(Series(metric: name, phase: phase, label: label, family: family(of: name),
                                  points: points[name]![phase]!, colourIndex: out.count))
            }
        }
        return out
    }

    /// Panel families in drawing order.
    public static func families(_ series: [Series]) -> [String] {
        var seen: [String] = []
        for s in series where !seen.contains(s.family) { seen.append(s.family) }
        return seen
    }

    /// Draws `entries` and writes the PNG to `url` atomically.
    /// - Throws: `TrainingError.invalid` when nothing was logged, `.io` when the file cannot be written.
    public static func write(entries: [RunLogEntry], to url: URL, title: String) throws {
        let canvas = try render(entries: entries, title: title)
        let data = try encodePNG(canvas)
        try AtomicFile.write(data, to: url)
    }

    /// The picture as an RGB canvas.
    /// - Throws: `TrainingError.invalid` when no metric was logged.
    public static func render(entries: [RunLogEntry], title: String) throws -> Canvas {
        let all = series(entries)
        guard !all.isEmpty else { throw TrainingError.invalid("no metric was logged; nothing to draw") }
        let panels = families(all)
        var canvas = Canvas(width: width, height: titleHeight + panels.count * panelHeight)
        canvas.text(title, x: 12, y: 11, scale: 2, colour: Canvas.black)
        let steps = all.flatMap { $0.points.map(\.step) }
        var (x0, x1) = (Double(steps.min()!), Double(steps.max()!))
        if x0 == x1 { x0 -= 1; x1 += 1 }
        for (k, family) in panels.enumerated() {
            let top = titleHeight + k * panelHeight
            drawPanel(&canvas, series: all.filter { $0.family == family }, title: family, top: top, xRange: (x0, x1))
        }
        return canvas
    }

    private static func drawPanel(_ c: inout Canvas, series: [Series], title: String, top: Int, xRange: (Double, Double)) {
        let left = 110, right = width - 24, plotBottom = top + panelHeight - 44
        c.text(title, x: left, y: top + 14, scale: 2, colour: Canvas.black)
        // Legend above the plot, right-aligned after the title, wrapping to more rows when needed:
        // each item is a colour swatch and the series label.
        let rowHeight = 20
        let itemWidths = series.map { 24 + 8 + BitmapFont.textWidth($0.label, scale: 2) + 20 }
        let available = right - (left + BitmapFont.textWidth(title, scale: 2) + 30)
        var legendRows: [[Int]] = [[]]
        var used = 0
        for (i, w) in itemWidths.enumerated() {
            if used + w > available && !legendRows[legendRows.count - 1].isEmpty { legendRows.append([]); used = 0 }
            legendRows[legendRows.count - 1].append(i)
            used += w
        }
        for (r, row) in legendRows.enumerated() {
            var x = right - row.map { itemWidths[$0] }.reduce(0, +) + 20
            let y = top + 14 + r * rowHeight
            for i in row {
                c.fill(x: x, y: y + 3, w: 24, h: 8, colour: palette[series[i].colourIndex % palette.count])
                c.text(series[i].label, x: x + 32, y: y, scale: 2, colour: Canvas.black)
                x += itemWidths[i]
            }
        }
        let plotTop = top + 40 + (legendRows.count - 1) * rowHeight
        let values = series.flatMap { $0.points.map(\.value) }.filter(\.isFinite)
        var (y0, y1) = (values.min() ?? 0, values.max() ?? 1)
        if y0 == y1 {
            let pad = y0 == 0 ? 1 : abs(y0) * 0.1
            y0 -= pad; y1 += pad
        } else {
            let pad = (y1 - y0) * 0.05
            y0 -= pad; y1 += pad
        }
        let (x0, x1) = xRange
        func px(_ x: Double) -> Int { left + Int(((x - x0) / (x1 - x0) * Double(right - left)).rounded()) }
        func py(_ y: Double) -> Int { plotBottom - Int(((y - y0) / (y1 - y0) * Double(plotBottom - plotTop)).rounded()) }

        // Grid and tick labels.
        for t in ticks(y0, y1) {
            let y = py(t.value)
            c.fill(x: left, y: y, w: right - left + 1, h: 1, colour: Canvas.grid)
            c.fill(x: left - 5, y: y, w: 5, h: 1, colour: Canvas.black)
            let w = BitmapFont.textWidth(t.label, scale: 2)
            c.text(t.label, x: left - 10 - w, y: y - 7, scale: 2, colour: Canvas.black)
        }
        for t in ticks(x0, x1, integers: true) {
            let x = px(t.value)
            c.fill(x: x, y: plotTop, w: 1, h: plotBottom - plotTop + 1, colour: Canvas.grid)
            c.fill(x: x, y: plotBottom, w: 1, h: 6, colour: Canvas.black)
            let w = BitmapFont.textWidth(t.label, scale: 2)
            c.text(t.label, x: x - w / 2, y: plotBottom + 10, scale: 2, colour: Canvas.black)
        }
        c.text("step", x: right - BitmapFont.textWidth("step", scale: 2), y: plotBottom + 28, scale: 2, colour: Canvas.black)
        // Axes.
        c.fill(x: left, y: plotTop, w: 2, h: plotBottom - plotTop + 1, colour: Canvas.black)
        c.fill(x: left, y: plotBottom, w: right - left + 1, h: 2, colour: Canvas.black)

        // Curves.
        for s in series {
            let colour = palette[s.colourIndex % palette.count]
            var previous: (Int, Int)?
            let markers = s.points.count <= 40
            for p in s.points {
                guard p.value.isFinite else { previous = nil; continue }
                let point = (px(Double(p.step)), py(p.value))
                if let previous { c.line(from: previous, to: point, colour: colour) }
                if markers || s.points.count == 1 { c.fill(x: point.0 - 2, y: point.1 - 2, w: 5, h: 5, colour: colour) }
                previous = point
            }
        }
    }

    /// Tick positions and labels: multiples of a 1-2-5 step giving about 5 ticks in `[lo, hi]`.
    static func ticks(_ lo: Double, _ hi: Double, integers: Bool = false) -> [(value: Double, label: String)] {
        var step = niceStep((hi - lo) / 5)
        if integers { step = max(step.rounded(), 1) }
        let first = (lo / step).rounded(.up) * step
        let decimals = step >= 1 ? 0 : Int((-log10(step)).rounded(.up))
        var out: [(Double, String)] = []
        var v = first
        while v <= hi + step * 1e-9 && out.count < 20 {
            let value = abs(v) < step * 1e-9 ? 0 : v
            let label = abs(value) >= 1e6 || (value != 0 && abs(value) < 1e-4) ? String(format: "%.2g", value) : String(format: "%.\(decimals)f", value)
            out.append((value, label))
            v += step
        }
        return out
    }

    /// The smallest of 1, 2, 5 times a power of ten that is at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        for m in [1.0, 2, 5, 10] where m * magnitude >= raw * (1 - 1e-9) { return m * magnitude }
        return 10 * magnitude
    }

    /// PNG bytes of `canvas` (8-bit RGB, libpng).
    /// - Throws: `TrainingError.io` with libpng's reason.
    public static func encodePNG(_ canvas: Canvas) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = canvas.pixels.withUnsafeBufferPointer { p in
            bissl_png_encode_rgb(p.baseAddress, UInt32(canvas.width), UInt32(canvas.height), &out, &size, &message)
        }
        guard status == 0, let out else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw TrainingError.io("cannot encode PNG: \(reason)")
        }
        defer { free(out) }
        return Data(bytes: out, count: size)
    }
}

/// An 8-bit RGB raster (row-major, 3 bytes per pixel), white when made; drawing clips to it.
public struct Canvas: Sendable {
    public let width: Int, height: Int
    public var pixels: [UInt8]

    static let white: (UInt8, UInt8, UInt8) = (255, 255, 255)
    static let black: (UInt8, UInt8, UInt8) = (0, 0, 0)
    static let grid: (UInt8, UInt8, UInt8) = (225, 225, 225)

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 255, count: width * height * 3)
    }

    public func pixel(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }

    mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    mutating func fill(x: Int, y: Int, w: Int, h: Int, colour: (UInt8, UInt8, UInt8)) {
        guard w > 0, h > 0 else { return }
        for yy in max(y, 0)..<min(y + h, height) { for xx in max(x, 0)..<max(min(x + w, width), max(x, 0)) { set(xx, yy, colour) } }
    }

    mutating func frame(x: Int, y: Int, w: Int, h: Int, colour: (UInt8, UInt8, UInt8)) {
        fill(x: x, y: y, w: w, h: 1, colour: colour)
        fill(x: x, y: y + h - 1, w: w, h: 1, colour: colour)
        fill(x: x, y: y, w: 1, h: h, colour: colour)
        fill(x: x + w - 1, y: y, w: 1, h: h, colour: colour)
    }

    /// A 2-pixel-thick line (Bresenham, each point drawn as a 2x2 block).
    mutating func line(from a: (Int, Int), to b: (Int, Int), colour: (UInt8, UInt8, UInt8)) {
        var (x, y) = a
        let dx = abs(b.0 - x), dy = -abs(b.1 - y)
        let sx = x < b.0 ? 1 : -1, sy = y < b.1 ? 1 : -1
        var err = dx + dy
        while true {
            fill(x: x, y: y, w: 2, h: 2, colour: colour)
            if x == b.0 && y == b.1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    /// `text` in `BitmapFont` with its top-left corner at `(x, y)`, each font pixel `scale` x `scale`.
    mutating func text(_ text: String, x: Int, y: Int, scale: Int, colour: (UInt8, UInt8, UInt8)) {
        var cx = x
        for ch in text {
            let rows = BitmapFont.glyph(ch)
            for (r, bits) in rows.enumerated() {
                for col in 0..<BitmapFont.width where bits & (1 << (BitmapFont.width - 1 - col)) != 0 {
                    fill(x: cx + col * scale, y: y + r * scale, w: scale, h: scale, colour: colour)
                }
            }
            cx += BitmapFont.advance * scale
        }
    }
}
