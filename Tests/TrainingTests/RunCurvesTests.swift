import Datasets
import Foundation
import XCTest
@testable import Training
import TestSupport

/// curves.png: drawn, encoded by libpng, read back by the PNG decoder of Datasets (libpng's reader),
/// and by Pillow when python3 has it.
final class RunCurvesTests: XCTestCase {
    /// Two losses (train and val phases of `loss`, plus `loss_aux`), two accuracies, and `lr`:
    /// panels loss, accuracy, lr.
    func entries() -> [RunLogEntry] {
        var out: [RunLogEntry] = []
        for s in 1...30 {
            let x = Double(s)
            out.append(RunLogEntry(step: s, time: x, phase: "train", metrics: ["loss": 3 / x, "loss_aux": 1 + 1 / x, "lr": 0.1 * (1 - x / 40)]))
            if s % 5 == 0 {
                out.append(RunLogEntry(step: s, time: x, phase: "val", metrics: ["loss": 3.5 / x, "top1": 0.3 + x / 100, "knn_top1": x / 60]))
            }
        }
        return out
    }

    func testSeriesFamiliesAndLabels() {
        let series = CurvePlot.series(entries())
        XCTAssertEqual(series.map(\.label), ["loss (train)", "loss (val)", "loss_aux", "knn_top1", "top1", "lr"])
        XCTAssertEqual(CurvePlot.families(series), ["loss", "accuracy", "lr"])
        XCTAssertEqual(series.map(\.colourIndex), Array(0..<6))
        XCTAssertEqual(series[1].points.map(\.step), [5, 10, 15, 20, 25, 30])
    }

    func testPNGHasOnePanelPerFamilyAndEverySeriesColour() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-curves-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("curves.png")
        try CurvePlot.write(entries: entries(), to: url, title: "pretrain-20261129-130000-abc123")

        let image = try ImageDecoder.decode(try Data(contentsOf: url), name: "curves.png")
        XCTAssertEqual(image.width, 960)
        XCTAssertEqual(image.height, 36 + 3 * 300)
        // Rows where each colour appears.
        func rows(of c: (UInt8, UInt8, UInt8)) -> [Int] {
            var out: [Int] = []
            for y in 0..<image.height {
                for x in 0..<image.width {
                    let i = (y * image.width + x) * 3
                    if image.pixels[i] == c.0 && image.pixels[i + 1] == c.1 && image.pixels[i + 2] == c.2 { out.append(y); break }
                }
            }
            return out
        }
        let panelOf = { (y: Int) in (y - 36) / 300 }
        for (index, panel) in [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 2)] {
            let c = CurvePlot.palette[index]
            let ys = rows(of: c)
            XCTAssertGreaterThan(ys.count, 20, "series \(index) drawn")
            XCTAssertEqual(Set(ys.map(panelOf)), [panel], "series \(index) only in panel \(panel)")
        }
        // An unused palette colour does not appear.
        XCTAssertTrue(rows(of: CurvePlot.palette[7]).isEmpty)
        // Text and axes in black in every panel and the title band.
        let black = Set(rows(of: (0, 0, 0)).map { $0 < 36 ? -1 : panelOf($0) })
        XCTAssertEqual(black, [-1, 0, 1, 2])
    }

    /// Pillow (independent PNG reader) agrees on size and pixels where python3 has it.
    func testPillowReadsTheSamePixels() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-curves-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("curves.png")
        let canvas = try CurvePlot.render(entries: entries(), title: "t")
        try CurvePlot.write(entries: entries(), to: url, title: "t")
        let script = """
        import sys
        try:
            from PIL import Image
        except ImportError:
            print("skip"); sys.exit(0)
        im = Image.open(sys.argv[1])
        same = im.convert("RGB").tobytes() == open(sys.argv[2], "rb").read()
        print(im.format, im.mode, im.size[0], im.size[1], same)
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let raw = dir.appendingPathComponent("canvas.raw")
        try Data(canvas.pixels).write(to: raw)
        process.arguments = ["python3", "-c", script, url.path, raw.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch { throw XCTSkip("python3 not available") }
        process.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if out == "skip" || process.terminationStatus != 0 { throw XCTSkip("Pillow not available") }
        XCTAssertEqual(out, "PNG RGB \(canvas.width) \(canvas.height) True")
    }

    func testTicksAreOneTwoFiveSteps() {
        XCTAssertEqual(CurvePlot.niceStep(0.23), 0.5)
        XCTAssertEqual(CurvePlot.niceStep(0.1), 0.1)
        XCTAssertEqual(CurvePlot.niceStep(13), 20)
        XCTAssertEqual(CurvePlot.niceStep(51), 100)
        XCTAssertEqual(CurvePlot.ticks(0, 1).map(\.label), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        XCTAssertEqual(CurvePlot.ticks(1, 30, integers: true).map(\.label), ["10", "20", "30"])
        XCTAssertEqual(CurvePlot.ticks(-0.15, 0.15).map(\.label), ["-0.1", "0.0", "0.1"])
        XCTAssertEqual(CurvePlot.ticks(0.9, 1.01).map(\.label), ["0.90", "0.95", "1.00"])
    }

    func testNothingLoggedIsRefused() {
        XCTAssertThrowsError(try CurvePlot.render(entries: [], title: "x"))
    }

    func testEveryFontCharacterUsedHasAGlyph() {
        let unknown = BitmapFont.glyph("~")
        for ch in "0123456789abcdefghijklmnopqrstuvwxyzABCXYZ.-%_+/:()=, " where ch != "?" {
            if ch == " " { continue }
            XCTAssertNotEqual(BitmapFont.glyph(ch), unknown, "glyph for \(ch)")
        }
        XCTAssertEqual(BitmapFont.glyph("A"), BitmapFont.glyph("a"))
    }
}
