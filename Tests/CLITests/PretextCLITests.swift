import Foundation
import XCTest
import TestSupport

/// `bissl pretrain` as users run it (the built binary next to the test bundle, `.build/debug/bissl`, or
/// `$BISSL_BIN`): the
/// start line on stderr, a taken `--name` refused before any run exists, negative numbers reaching the
/// validation instead of reading as flags, a process started by mpirun without a usable libmpi.
final class PretextCLITests: CLITestCase {
    /// A 1-step SimCLR run on 20 digits: ResNet-18 width 4, batch 8.
    func pretrain(_ extra: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try bissl(["pretrain", "--method", "simclr", "--data", try split(0..<20),
                   "--arch", "resnet18", "--width", "4", "--batch-size", "8"] + extra)
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

    /// Started as rank 0 of a 2-rank `mpirun` job (its environment) where the loader finds no usable
    /// Open MPI library (unloadable `libmpi.so.40` and `libmpi.so` first on `LD_LIBRARY_PATH`): one
    /// `error:` line naming the library, exit 1, no run directory.
    func testUnderMPIRunWithoutLibMPIOneErrorLine() throws {
        let libs = tmp.appendingPathComponent("lib")
        try FileManager.default.createDirectory(at: libs, withIntermediateDirectories: true)
        for name in ["libmpi.so.40", "libmpi.so"] { try Data().write(to: libs.appendingPathComponent(name)) }
        var environment = ProcessInfo.processInfo.environment
        environment["LD_LIBRARY_PATH"] = libs.path + (environment["LD_LIBRARY_PATH"].map { ":" + $0 } ?? "")
        environment["OMPI_COMM_WORLD_SIZE"] = "2"
        environment["OMPI_COMM_WORLD_RANK"] = "0"
        let r = try BisslBinary.run(["pretrain", "--method", "simclr", "--data", try split(0..<20), "--arch", "resnet18", "--width", "4",
                                     "--batch-size", "8", "--steps", "1", "--zoo", zoo], environment: environment)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("error: started by mpirun, but Open MPI's library cannot be opened ("), r.stderr)
        XCTAssertTrue(r.stderr.contains("libmpi.so.40"), r.stderr)
        XCTAssertEqual(runDirectories(), [])
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
