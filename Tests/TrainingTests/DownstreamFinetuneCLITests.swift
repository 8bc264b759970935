import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training

/// `bissl finetune` as users run it (the built binary, see `Fixtures.bisslBinary`): what it prints on
/// stdout after a tiny run (ResNet-18 width 4 from random init, 1 step on 36 of the 8x8 digits).
final class DownstreamFinetuneCLITests: XCTestCase {
    static let digits = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("data/digits/digits.h5").path

    var tmp: URL!
    var zoo: String { tmp.appendingPathComponent("zoo").path }

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        try (0..<40).map(String.init).joined(separator: "\n").write(to: tmp.appendingPathComponent("split.txt"), atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    var data: String { "h5:\(Self.digits)#split=\(tmp.appendingPathComponent("split.txt").path)" }

    /// `bissl finetune --random-init` (ResNet-18 width 4, small stem) on the 40 digits of the split file,
    /// 1 step of batch 8 at 8x8, plus `extra`.
    func finetune(_ extra: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try Fixtures.runBissl(["finetune", "--random-init", "--arch", "resnet18", "--width", "4", "--data", data,
                               "--batch-size", "8", "--image-size", "8", "--zoo", zoo] + extra)
    }

    /// stdout is the one summary line (`finetune entry <12 hex> (<name>): ...`), no bare id before it.
    func testStdoutIsTheSummaryLineOnly() throws {
        let r = try finetune(["--steps", "1", "--name", "ft1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertEqual(lines.count, 1, r.stdout)
        let line = try XCTUnwrap(lines.first)
        let zooHandle = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), readOnly: true)
        defer { try? zooHandle.close() }
        let id = try zooHandle.resolve("ft1")
        XCTAssertTrue(line.hasPrefix("finetune entry \(id.prefix(12)) (ft1): val top-1 "), String(line))
    }
}
