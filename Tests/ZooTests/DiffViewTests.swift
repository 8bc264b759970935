import Checkpoint
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// `bissl diff`'s default view: summary first, command lines compared by option name, volatile keys
/// (times, durations, derived seeds) hidden unless `--all`, `--no-provenance`, long tensor lists cut.
final class DiffViewTests: XCTestCase {
    func testCommandLinesAreComparedByName() {
        let parsed = DiffView.parse(commandLine: ["/usr/bin/bissl", "pretrain", "--method", "simclr", "--batch-size", "64",
                                                 "--json", "--lr=0.5", "--tag", "a", "--tag", "b", "--seed", "-1"])
        XCTAssertEqual(parsed.map { "\($0.key)=\($0.value)" },
                       ["command=bissl pretrain", "--method=simclr", "--batch-size=64", "--json=true", "--lr=0.5",
                        "--tag=a", "--tag[1]=b", "--seed=-1"])
        XCTAssertEqual(DiffView.parse(commandLine: ["bissl", "runs", "show", "RUN-1", "--curves"]).map { "\($0.key)=\($0.value)" },
                       ["command=bissl runs show", "--curves=true", "arguments=RUN-1"])
        XCTAssertEqual(DiffView.parse(commandLine: ["bissl", "align", "demo", "--data", "x"]).map { "\($0.key)=\($0.value)" },
                       ["command=bissl align demo", "--data=x"])
    }

    func testVolatileKeys() {
        for key in ["startedAt", "endedAt", "metrics.durationSeconds", "seeds.loader", "run.segments", "run.resumeCommandLines[0][1]"] {
            XCTAssertTrue(DiffView.isVolatile(key), key)
        }
        for key in ["seed", "metrics.val_top1", "commandLine.--seed", "tool.version", "source.fileName", "parents[0].id"] {
            XCTAssertFalse(DiffView.isVolatile(key), key)
        }
    }

    private func checkpoint(seed: Int, batch: Int, started: String, tensors: Int) -> Checkpoint {
        var c = ZooTestSupport.checkpoint(seed: seed, stage: "pretext", method: "simclr")
        for i in 0..<tensors {
            c.components["backbone"]!["layer\(i / 3 + 1).0.conv\(i % 3 + 1).weight"] =
                Tensor(float32: (0..<8).map { Float($0 + seed * (i + 1)) }, shape: [8])
        }
        c.provenance.commandLine = ["bissl", "pretrain", "--data", "idx:x", "--batch-size", "\(batch)", "--steps", "10"]
        c.provenance.startedAt = started
        c.provenance.endedAt = started
        c.provenance.seeds = ["loader": Int64(seed), "init": Int64(seed + 1)]
        c.provenance.metrics = ["durationSeconds": Double(seed), "loss": 4.5]
        c.provenance.hyperparameters = ["seed": .int(0), "batchSize": .int(Int64(batch))]
        return c
    }

    func testTheDefaultViewThroughTheCLI() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        for (name, c) in [("a", checkpoint(seed: 1, batch: 64, started: "2026-11-29T10:00:00Z", tensors: 12)),
                          ("b", checkpoint(seed: 2, batch: 32, started: "2026-11-30T11:00:00Z", tensors: 12))] {
            let url = try ZooTestSupport.writeH5(c, to: dir.appendingPathComponent(name + ".h5"))
            XCTAssertEqual(try BisslBinary.run(["import", url.path, "--zoo", zoo, "--name", name]).status, 0)
        }
        let r = try BisslBinary.run(["diff", "a", "b", "--zoo", zoo])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertTrue(lines[0].hasPrefix("diff "), r.stdout)
        XCTAssertEqual(lines[2], "summary", r.stdout)
        // The command line by option: one change, not every argument after it.
        let batchLine = lines.first { $0.contains("commandLine.--batch-size") } ?? ""
        XCTAssertTrue(batchLine.contains("64") && batchLine.contains(" -> ") && batchLine.contains("32"), r.stdout)
        // (Both entries were imported from .h5 files: their import steps, `carriedFrom`, differ too.)
        XCTAssertFalse(lines.contains { $0.hasPrefix("  ~  commandLine[") }, r.stdout)
        XCTAssertFalse(r.stdout.contains("commandLine.--steps"), r.stdout)
        // Times, durations and derived seeds are hidden and counted.
        for hidden in ["startedAt", "endedAt", "durationSeconds", "seeds.loader"] { XCTAssertFalse(r.stdout.contains(hidden), hidden) }
        XCTAssertTrue(r.stdout.contains("5 volatile keys hidden (times, durations, derived seeds; --all shows them)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("batchSize"), "a real setting stays: \(r.stdout)")
        // 17 changed weight tensors (conv1, bn1 weight and bias, the 12 added here, fc weight and bias):
        // the 10 largest changes, then a count.
        XCTAssertTrue(r.stdout.contains("  ... 7 more (--all lists every tensor)"), r.stdout)

        let all = try BisslBinary.run(["diff", "a", "b", "--all", "--zoo", zoo])
        for shown in ["startedAt", "endedAt", "metrics.durationSeconds", "seeds.loader"] { XCTAssertTrue(all.stdout.contains(shown), shown) }
        XCTAssertFalse(all.stdout.contains("more (--all"), all.stdout)

        let weightsOnly = try BisslBinary.run(["diff", "a", "b", "--no-provenance", "--zoo", zoo])
        XCTAssertFalse(weightsOnly.stdout.contains("commandLine"), weightsOnly.stdout)
        XCTAssertFalse(weightsOnly.stdout.contains("hyperparameters"), weightsOnly.stdout)
        XCTAssertFalse(weightsOnly.stdout.contains("\nprovenance"), weightsOnly.stdout)
        XCTAssertTrue(weightsOnly.stdout.contains("weights"), weightsOnly.stdout)
        XCTAssertLessThan(weightsOnly.stdout.count, r.stdout.count)
    }
}
