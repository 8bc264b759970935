import Foundation
import XCTest
@testable import Training
import TestSupport

/// Progress output with an injected clock and sink (no wall-clock assertions).
final class RunProgressTests: XCTestCase {
    final class Sink: @unchecked Sendable {
        var text = ""
        var time = 0.0
    }

    func make(_ mode: ProgressReporter.Mode, total: Int = 400, width: Int = 120) -> (ProgressReporter, Sink) {
        let sink = Sink()
        let p = ProgressReporter(total: total, mode: mode, width: width, write: { sink.text += $0 }, now: { sink.time })
        return (p, sink)
    }

    func testModeFromEnvironmentAndTerminal() {
        XCTAssertEqual(ProgressReporter.mode(environment: [:], isTerminal: true), .bar)
        XCTAssertEqual(ProgressReporter.mode(environment: [:], isTerminal: false), .plain)
        XCTAssertEqual(ProgressReporter.mode(environment: ["BISSL_PROGRESS": "plain"], isTerminal: true), .plain)
        XCTAssertEqual(ProgressReporter.mode(environment: ["BISSL_PROGRESS": "bar"], isTerminal: false), .bar)
        XCTAssertEqual(ProgressReporter.mode(environment: ["BISSL_PROGRESS": "none"], isTerminal: true), .none)
        XCTAssertEqual(ProgressReporter.mode(environment: ["BISSL_PROGRESS": "bogus"], isTerminal: false), .plain)
    }

    /// Plain lines: the first update, then none until 10 s later, then the last state at finish.
    /// Steps take 0.5 s each, so at step 120 of 400 the ETA is 280 * 0.5 s = 2m20s.
    func testPlainLinesAtMostEvery10Seconds() {
        let (p, sink) = make(.plain)
        for step in 100...120 {
            sink.time = Double(step) * 0.5
            p.update(step: step, metrics: ["loss": 1.234, "lr": 0.05], phase: nil)
        }
        // Step 100 printed (first); steps 101...119 are within 10 s of it; step 120 is exactly 10 s later.
        XCTAssertEqual(sink.text.split(separator: "\n"), [
            "step 100/400 (25%) loss 1.234 lr 0.05",
            "step 120/400 (30%) loss 1.234 lr 0.05 eta 2m20s",
        ])
        sink.text = ""
        sink.time += 1
        p.update(step: 121, metrics: ["loss": 1.5, "lr": 0.04, "acc": 0.5], phase: "upper")
        XCTAssertEqual(sink.text, "")
        p.finish()
        // EMA of step time: 0.9 * 0.5 + 0.1 * 1.0 = 0.55 s/step, 279 steps left = 153.45 s.
        XCTAssertEqual(sink.text, "step 121/400 (30%) [upper] loss 1.5 lr 0.04 acc 0.5 eta 2m33s\n")
        sink.text = ""
        p.finish()
        XCTAssertEqual(sink.text, "", "finish prints the last state once")
    }

    func testBarRedrawsInPlaceAndMessagesDoNotCorruptIt() {
        let (p, sink) = make(.bar, total: 400)
        sink.time = 0
        p.update(step: 119, metrics: ["loss": 1.3])
        sink.time = 0.5
        p.update(step: 120, metrics: ["loss": 1.234, "lr": 0.05])
        let expected = "[###.......] 120/400 30% loss 1.234 lr 0.05 ETA 2m20s"
        XCTAssertTrue(sink.text.hasSuffix("\r" + expected + "\u{1B}[K"), sink.text.debugDescription)
        sink.text = ""
        p.message("saved state at step 120")
        XCTAssertEqual(sink.text, "\r\u{1B}[Ksaved state at step 120\n\r" + expected + "\u{1B}[K")
        sink.text = ""
        sink.time = 0.55   // within 0.1 s of the last draw: no redraw
        p.update(step: 121, metrics: ["loss": 1.2])
        XCTAssertEqual(sink.text, "")
        p.finish()
        XCTAssertEqual(sink.text, "\n")
        sink.text = ""
        p.message("done")
        XCTAssertEqual(sink.text, "done\n")
    }

    func testBarIsCutToTerminalWidthAndFullAtEnd() {
        let (p, sink) = make(.bar, total: 10, width: 40)
        p.update(step: 10, metrics: ["loss": 0.5, "a_long_metric_name": 1, "another_one": 2])
        let line = sink.text.replacingOccurrences(of: "\r", with: "").replacingOccurrences(of: "\u{1B}[K", with: "")
        XCTAssertEqual(line.count, 39)
        XCTAssertTrue(line.hasPrefix("[##########] 10/10 100% loss 0.5"), line)
    }

    func testNoneModePrintsOnlyMessages() {
        let (p, sink) = make(.none)
        p.update(step: 1, metrics: ["loss": 1])
        p.finish()
        XCTAssertEqual(sink.text, "")
        p.message("hello")
        XCTAssertEqual(sink.text, "hello\n")
    }

    func testDurationFormat() {
        XCTAssertEqual(ProgressReporter.duration(42), "42s")
        XCTAssertEqual(ProgressReporter.duration(130), "2m10s")
        XCTAssertEqual(ProgressReporter.duration(3600 + 5 * 60 + 10), "1h05m")
    }
}
