import Checkpoint
import Foundation
import HDF5
import XCTest
import TestSupport

/// Outside `.h5` files go through the HDF5 reader process when the binary reads them (`Sandbox`):
/// valid files read as before, hostile ones give one error line.
final class SandboxCommandTests: XCTestCase {
    private func hostile(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/hostile/\(name)").path
    }

    func testAnOutsideCheckpointIsInspectedAndImportedThroughTheReaderProcess() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let checkpoint = ZooTestSupport.checkpoint(seed: 700)
        let h5 = try ZooTestSupport.writeH5(checkpoint, to: dir.appendingPathComponent("in.h5"))
        let inspected = try BisslBinary.run(["inspect", h5.path])
        XCTAssertEqual(inspected.status, 0, inspected.stderr)
        XCTAssertTrue(inspected.stdout.contains("conv1.weight"), inspected.stdout)
        let imported = try BisslBinary.run(["import", h5.path, "--zoo", dir.appendingPathComponent("zoo").path, "--json"])
        XCTAssertEqual(imported.status, 0, imported.stderr)
        XCTAssertTrue(imported.stdout.contains(ContentID.compute(checkpoint)), imported.stdout)
    }

    func testACheckpointModifiedAfterWritingIsRefusedOnImport() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let h5 = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 701), to: dir.appendingPathComponent("in.h5"))
        let file = try HDF5.File.open(h5.path, writable: true)
        try file.setAttribute("content_id", String(repeating: "0", count: 64))
        try file.close()
        let r = try BisslBinary.run(["import", h5.path, "--zoo", dir.appendingPathComponent("zoo").path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("error: in.h5: stored content id 0000"), r.stderr)
        XCTAssertTrue(r.stderr.hasSuffix("the file was modified after it was written\n"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("zoo").path))
    }

    func testHostileHDF5FilesAreOneErrorLine() throws {
        let cases: [([String], String)] = [
            (["data", "info", "h5:" + hostile("images_huge.h5")], "refusing to allocate it"),
            (["data", "info", "h5:" + hostile("labels_huge.h5")], "outside 0..<65536"),
            // One changed byte that makes libhdf5 1.10.8 segfault: contained in the reader process.
            (["data", "info", "h5:" + hostile("hdf5_segv.h5") + "#part=test"], "the HDF5 library crashed (signal 11) reading this file"),
            (["inspect", hostile("space_overflow.h5")], "not a bissl checkpoint"),
        ]
        // Under AddressSanitizer or ThreadSanitizer (make asan, make tsan) their SEGV handler would
        // report libhdf5's crash inside the uninstrumented system library and exit 1 or 66, so the
        // child would not die by the signal this test expects; handle_segv=0 leaves the crash to the
        // kernel as in a normal build (no effect there).
        var environment = ProcessInfo.processInfo.environment
        for name in ["ASAN_OPTIONS", "TSAN_OPTIONS"] {
            environment[name] = [environment[name], "handle_segv=0"].compactMap { $0 }.joined(separator: ":")
        }
        for (args, text) in cases {
            let r = try BisslBinary.run(args, environment: environment)
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains(text), r.stderr)
            XCTAssertEqual(r.stderr.filter { $0 == "\n" }.count, 1, r.stderr)
        }
    }
}
