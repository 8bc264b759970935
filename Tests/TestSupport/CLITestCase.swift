import Foundation
import XCTest

/// A test of the built `bissl` binary (`BisslBinary`) in a fresh scratch folder `tmp` (made before
/// each test, removed after it) holding a zoo at `zooDir`, with the 8x8 digits of
/// `data/digits/digits.h5` as data. Subclasses that override `setUpWithError` call super first.
open class CLITestCase: XCTestCase {
    /// `data/digits/digits.h5` of the repository (`Fixtures.digits`).
    public static let digits = Fixtures.digits

    /// This test's scratch folder.
    public var tmp: URL!
    /// The zoo of this test (created by the first command or `Zoo.open(..., create: true)`).
    public var zooDir: URL { tmp.appendingPathComponent("zoo") }
    public var zoo: String { zooDir.path }

    open override func setUpWithError() throws {
        try super.setUpWithError()
        tmp = try Fixtures.scratch()
    }

    open override func tearDownWithError() throws {
        if let tmp { try? FileManager.default.removeItem(at: tmp) }
        try super.tearDownWithError()
    }

    /// Runs `bissl args... --zoo <zoo>` to completion.
    public func bissl(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try Fixtures.runBissl(args + ["--zoo", zoo])
    }

    /// The digits with the indices in `range`, as a dataset URI through a `#split=` file in `tmp`.
    public func split(_ range: Range<Int>) throws -> String {
        let file = tmp.appendingPathComponent("split-\(range.lowerBound)-\(range.upperBound).txt")
        try range.map(String.init).joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        return "h5:\(Self.digits)#split=\(file.path)"
    }

    /// Everything in the zoo's `runs/` folder (hidden temporaries included), empty when it does not exist.
    public func runDirectories() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: zooDir.appendingPathComponent("runs").path)) ?? []
    }

    /// Asserts a refusal: a non-zero exit and exactly one line on stderr, `error: ...` containing `expected`.
    public func assertOneLineError(_ r: (status: Int32, stdout: String, stderr: String), _ expected: String,
                                   file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(expected), "expected '\(expected)' in: \(r.stderr)", file: file, line: line)
    }
}
