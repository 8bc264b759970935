import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// Negative and zero numbers given to the numeric options of `finetune`, `probe`, `eval`, `align` and
/// `data bench` (the built binary, `BisslBinary`): the value reaches the command's own check
/// (`--steps -3` is not read as a missing value followed by a flag), which answers with one
/// `error:` line naming the option and the value, a non-zero exit, and no run directory.
final class CLINumericOptionTests: CLITestCase {
    var data = ""

    override func setUpWithError() throws {
        try super.setUpWithError()
        data = try split(0..<40)
        // an entry with a classifier (probe, eval) and a projector (align), ResNet-18 width 2
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small",
                                heads: ["classifier": .init(kind: "linear", dims: [16, 10]), "projector": .init(kind: "mlp", dims: [16, 16, 8])])
        let z = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), create: true)
        _ = try z.add(Network(architecture: arch, seed: 1).checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), name: "e")
        try z.close()
    }

    /// Runs `bissl args --zoo <zoo>` (`data` commands: no `--zoo`) and checks the one-line error
    /// `expected` (a substring of it).
    func assertRefused(_ args: [String], _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        assertOneLineError(try Fixtures.runBissl(args + (args.first == "data" ? [] : ["--zoo", zoo])), expected, file: file, line: line)
    }

    func testFinetune() throws {
        let base = ["finetune", "--random-init", "--arch", "resnet18", "--width", "2", "--data", data]
        try assertRefused(base + ["--steps", "-3"], "--steps must be at least 1, got -3")
        try assertRefused(base + ["--steps", "0"], "--steps must be at least 1, got 0")
        try assertRefused(base + ["--epochs", "-1"], "--epochs must be at least 1, got -1")
        try assertRefused(base + ["--batch-size", "-8"], "--batch-size must be at least 2 (train-mode BatchNorm needs 2 samples), got -8")
        try assertRefused(base + ["--lr", "-0.1"], "--lr must be a positive finite number, got -0.1")
        try assertRefused(base + ["--lr", "0"], "--lr must be a positive finite number, got 0.0")
        try assertRefused(base + ["--wd", "-1e-3"], "--wd must be a finite number, 0 or more, got -0.001")
        try assertRefused(base + ["--search", "-2"], "--search must be 0 or more, got -2")
        try assertRefused(base + ["--image-size", "-8"], "--image-size must be at least 1, got -8")
        try assertRefused(base + ["--image-size", "100000"], "--image-size must be at most 1024, got 100000")
        try assertRefused(base + ["--seed", "-1"], "--seed must not be negative, got -1")
        try assertRefused(base + ["--checkpoint-every", "-2"], "--checkpoint-every must be at least 1, got -2")
        try assertRefused(["finetune", "--random-init", "--arch", "resnet18", "--width", "-4", "--data", data], "--width must be at least 1, got -4")
        try assertRefused(["finetune", "--random-init", "--arch", "resnet18", "--width", "99999999", "--data", data], "--width must be at most 1024, got 99999999")
        XCTAssertEqual(runDirectories(), [], "no run was created")
    }

    /// The note that entry `e` records no image size came before a usage error (two lines): every
    /// setting is checked first, so the error is the only line.
    func testFinetuneOfAnEntryWithoutImageSizePrintsAUsageErrorAlone() throws {
        let missing = tmp.appendingPathComponent("no-such-data").path
        try assertRefused(["finetune", "e", "--data", data, "--val", missing], "--val \(missing)")
        try assertRefused(["finetune", "e", "--data", data, "--val", "nosuchscheme:x"], "--val nosuchscheme:x")
        try assertRefused(["finetune", "e", "--data", data, "--batch-size", "4096"], "--batch-size 4096 is larger than the")
        XCTAssertEqual(runDirectories(), [], "no run was created")
    }

    func testProbeAndEval() throws {
        try assertRefused(["probe", "e", "--data", data, "--knn", "-5"], "--knn must be at least 1, got -5")
        try assertRefused(["probe", "e", "--data", data, "--probe-epochs", "-1"], "--probe-epochs must be at least 1, got -1")
        try assertRefused(["probe", "e", "--data", data, "--eval-data", data, "--image-size", "-8"], "--image-size must be at least 1, got -8")
        try assertRefused(["probe", "e", "--data", data, "--seed", "-1"], "'-1' is invalid for '--seed")
        try assertRefused(["eval", "e", "--data", data, "--image-size", "-8"], "--image-size must be at least 1, got -8")
        try assertRefused(["eval", "e", "--data", data, "--image-size", "0"], "--image-size must be at least 1, got 0")
        try assertRefused(["eval", "e", "--data", data, "--image-size", "100000"], "--image-size must be at most 1024, got 100000")
    }

    func testAlign() throws {
        let base = ["align", "e", "--data", data, "--pretext-data", data]
        try assertRefused(base + ["--alternations", "-1"], "align: --alternations must be at least 1, got -1")
        try assertRefused(base + ["--lower-steps", "-2"], "align: --lower-steps must be at least 1, got -2")
        try assertRefused(base + ["--upper-steps", "-2"], "align: --upper-steps must be at least 1, got -2")
        try assertRefused(base + ["--cg-iters", "-5"], "align: --cg-iters must be at least 1, got -5")
        try assertRefused(base + ["--warmup-epochs", "-1"], "align: --warmup-epochs must be 0 or more, got -1")
        try assertRefused(base + ["--lambda", "-0.5"], "align: --lambda must not be negative, got -0.5")
        try assertRefused(base + ["--damping", "-1"], "align: --damping must not be negative, got -1.0")
        try assertRefused(base + ["--d-lr", "-0.03"], "align: --d-lr must not be negative, got -0.03")
        try assertRefused(base + ["--p-wd", "-1e-6"], "align: --p-wd must not be negative, got -1e-06")
        try assertRefused(base + ["--clip", "-10"], "align: --clip must not be negative, got -10.0")
        try assertRefused(base + ["--d-batch-size", "-4"], "align: --d-batch-size must be at least 2 (train-mode BatchNorm), got -4")
        try assertRefused(base + ["--p-batch-size", "-4"], "align: --p-batch-size must be at least 2 (train-mode BatchNorm), got -4")
        try assertRefused(base + ["--image-size", "-8"], "align: --image-size must be between 4 and 4096, got -8")
        try assertRefused(base + ["--seed", "-1"], "'-1' is invalid for '--seed")
        XCTAssertEqual(runDirectories(), [], "no run was created")
    }

    func testDataBench() throws {
        try assertRefused(["data", "bench", data, "--images", "-1"], "--images must be at least 1, got -1")
        try assertRefused(["data", "bench", data, "--batch", "-2"], "--batch must be at least 1, got -2")
        try assertRefused(["data", "bench", data, "--batch", "0"], "--batch must be at least 1, got 0")
        try assertRefused(["data", "bench", data, "--workers", "-1"], "--workers must be at least 1, got -1")
        try assertRefused(["data", "bench", data, "--sizes", "-3"], "--sizes must be integers in 1...1024, not '-3'")
        try assertRefused(["data", "bench", data, "--sizes", "100000"], "--sizes must be integers in 1...1024, not '100000'")
        try assertRefused(["data", "bench", data, "--sizes", "8,,8"], "--sizes must be integers in 1...1024, not ''")
    }
}
