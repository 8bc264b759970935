import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// SIGINT, SIGTERM and SIGUSR1 at random moments of `bissl pretrain` and `bissl finetune` (the built binary):
/// each stop saves the state at the step it reached, says so with the exact resume command and exits
/// with 128 + the signal; resuming until done gives the same entry as an uninterrupted run, and
/// `runs show` reports the work time.
final class RunInterruptTests: CLITestCase {
    var data = ""

    override func setUpWithError() throws {
        try super.setUpWithError()
        data = try split(0..<64)
    }

    /// Starts `bissl args` and returns the process and its stderr pipe.
    func start(_ args: [String]) throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = try XCTUnwrap(BisslBinary.url, "build the bissl binary first")
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        return (p, err)
    }

    /// Runs `args` to the end, stopping it with a signal at a random moment after its run directory
    /// appears (`stops` times at most; the k-th stop sends SIGUSR1, SIGINT, SIGTERM in turn), then
    /// resuming with the command it printed; returns the entry id.
    func runWithStops(_ args: [String], zoo: String, stops: Int, rng: inout SplitMix) throws -> String {
        var command = args + ["--zoo", zoo]
        var stopsLeft = stops
        var sawStop = false
        for _ in 0..<(2 * stops + 2) {
            let runsDir = zoo + "/runs"
            let before = Set((try? FileManager.default.contentsOfDirectory(atPath: runsDir)) ?? [])
            let (process, err) = try start(command)
            var signal: Int32?
            if stopsLeft > 0 {
                // Wait for the run to exist (its state saving is what is under test), then a random moment.
                let deadline = Date().addingTimeInterval(30)
                while process.isRunning && Date() < deadline {
                    let now = Set((try? FileManager.default.contentsOfDirectory(atPath: runsDir)) ?? [])
                    if command.contains("--resume") || now.count > before.count { break }
                    usleep(5_000)
                }
                // A resumed process gets time to start (its signal handlers are set first thing, but a
                // loaded machine can take a while to get there).
                usleep(UInt32.random(in: command.contains("--resume") ? 400_000...900_000 : 50_000...600_000, using: &rng))
                signal = [SIGUSR1, SIGINT, SIGTERM][(stops - stopsLeft) % 3]
                if process.isRunning { kill(process.processIdentifier, signal!) }
                stopsLeft -= 1
            }
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            if process.terminationReason == .exit && process.terminationStatus == 0 {
                let zooHandle = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), readOnly: true)
                defer { try? zooHandle.close() }
                return try XCTUnwrap(try zooHandle.list().first?.summary.id)
            }
            let sig = try XCTUnwrap(signal, "failed without a signal: \(stderr)")
            XCTAssertEqual(process.terminationReason, .exit, "a stop is an orderly exit: \(stderr)")
            XCTAssertEqual(process.terminationStatus, 128 + sig, stderr)
            XCTAssertFalse(stderr.hasPrefix("\n") || stderr.contains("\n\n"), "no blank line on a pipe: \(stderr)")
            let line = try XCTUnwrap(stderr.split(separator: "\n").last.map(String.init))
            if line == "error: stopped by \(StopRequest.name(of: sig))" { continue }   // before the run was open: nothing to save
            XCTAssertTrue(line.hasPrefix("stopped at step "), stderr)
            XCTAssertTrue(line.contains("(\(StopRequest.name(of: sig))), state saved; resume with: bissl "), line)
            let resume = try XCTUnwrap(line.components(separatedBy: "resume with: ").last)
            XCTAssertTrue(resume.hasSuffix("--zoo \(zoo)"), resume)
            command = Array(resume.split(separator: " ").dropFirst().map(String.init))
            sawStop = true
            // The stop saved the step it reached: runs show has it, and the work time so far.
            let runID = command[command.firstIndex(of: "--resume")! + 1]
            let show = try Fixtures.runBissl(["runs", "show", runID, "--json", "--zoo", zoo])
            let summary = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])?["summary"] as? [String: Any])
            let stoppedAt = Int(line.dropFirst("stopped at step ".count).prefix { $0.isNumber })!
            XCTAssertEqual(summary["savedStep"] as? Int, stoppedAt, show.stdout)
            XCTAssertEqual(summary["state"] as? String, "interrupted")
            XCTAssertGreaterThan(summary["workSeconds"] as? Double ?? 0, 0)
        }
        XCTAssertTrue(sawStop || stops == 0)
        XCTFail("the run did not finish")
        return ""
    }

    func testPretrainStoppedAtRandomMomentsResumesToTheSameEntry() throws {
        var rng = SplitMix(seed: 1)  // seeded stop moments and signals (the process timing still varies)
        let args = ["pretrain", "--method", "simclr", "--data", data, "--arch", "resnet18-w2-small", "--batch-size", "8",
                    "--image-size", "16", "--steps", "40", "--checkpoint-every", "1000"]
        let plain = try runWithStops(args, zoo: tmp.appendingPathComponent("plain").path, stops: 0, rng: &rng)
        let stopped = try runWithStops(args, zoo: tmp.appendingPathComponent("stopped").path, stops: 3, rng: &rng)
        XCTAssertEqual(stopped, plain, "resuming after stops gives the entry of the uninterrupted run")
    }

    func testFinetuneStoppedAtRandomMomentsResumesToTheSameEntry() throws {
        var rng = SplitMix(seed: 2)
        let args = ["finetune", "--random-init", "--arch", "resnet18-w2-small", "--data", data, "--batch-size", "8",
                    "--image-size", "16", "--steps", "40", "--checkpoint-every", "1000"]
        let plain = try runWithStops(args, zoo: tmp.appendingPathComponent("plain").path, stops: 0, rng: &rng)
        let stopped = try runWithStops(args, zoo: tmp.appendingPathComponent("stopped").path, stops: 3, rng: &rng)
        XCTAssertEqual(stopped, plain)
    }
}
