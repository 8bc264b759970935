import Foundation
import XCTest
import TestSupport

/// `bissl pretrain` as users run it (the built binary next to the test bundle, `.build/debug/bissl`, or
/// `$BISSL_BIN`): the
/// start line on stderr, a taken `--name` refused before any run exists, negative numbers reaching the
/// validation instead of reading as flags.
final class PretextCLITests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("pretext-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        let split = (0..<20).map(String.init).joined(separator: "\n")
        try split.write(to: tmp.appendingPathComponent("split.txt"), atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func bissl(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try Fixtures.runBissl(args)
    }

    var repo: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    var zoo: String { tmp.appendingPathComponent("zoo").path }

    /// A 1-step SimCLR run on 20 digits: ResNet-18 width 4, batch 8.
    func pretrain(_ extra: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try bissl(["pretrain", "--method", "simclr", "--data", "h5:\(repo.path)/data/digits/digits.h5#split=\(tmp.path)/split.txt",
                   "--arch", "resnet18", "--width", "4", "--batch-size", "8", "--zoo", zoo] + extra)
    }

    func runDirectories() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: zoo + "/runs")) ?? []).filter { !$0.hasPrefix(".") }
    }

    func assertOneLineError(_ r: (status: Int32, stdout: String, stderr: String), _ expected: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(expected), "expected '\(expected)' in: \(r.stderr)", file: file, line: line)
    }

    func testStartLineThenTakenNameIsRefusedBeforeTraining() throws {
        let first = try pretrain(["--steps", "1", "--name", "p1", "--lr", "1"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let runs = runDirectories()
        XCTAssertEqual(runs.count, 1)
        let id = try XCTUnwrap(runs.first)
        XCTAssertTrue(first.stderr.contains("run \(id): 1 step (simclr, resnet18-w4-small, "), first.stderr)
        XCTAssertTrue(first.stderr.contains("(resume with: bissl pretrain --resume \(id) --zoo \(zoo))"), first.stderr)

        let again = try pretrain(["--steps", "1", "--name", "p1"])
        assertOneLineError(again, "--name p1 is already the name of entry")
        XCTAssertEqual(runDirectories(), runs, "no run was created")
    }

    func testNegativeNumbersReachTheValidation() throws {
        assertOneLineError(try pretrain(["--steps", "-3"]), "--steps must be positive, got -3")
        assertOneLineError(try pretrain(["--epochs", "-1"]), "--epochs must be positive, got -1")
        assertOneLineError(try pretrain(["--lr", "-0.5"]), "--lr must be positive, got -0.5")
        assertOneLineError(try pretrain(["--temperature", "-0.5"]), "--temperature must be positive, got -0.5")
        assertOneLineError(try pretrain(["--checkpoint-every", "-2", "--steps", "1"]), "--checkpoint-every must be positive, got -2")
        XCTAssertEqual(runDirectories(), [])
    }
}
