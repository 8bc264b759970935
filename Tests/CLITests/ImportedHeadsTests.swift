import Checkpoint
import Engine
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// Checkpoints saved by the training code of SimCLR, SimCLR v2, MoCo v2, MoCo v3, BYOL and SimSiam
/// (real `torch.save`, tools/fixtures/make_head_fixtures.py) import with their projector/predictor
/// in the layout they were saved in, compute what PyTorch computes, and can be probed, fine-tuned and
/// aligned (one BiSSL alternation of 1+1 steps) through the `bissl` binary.
final class ImportedHeadsTests: CLITestCase {
    struct Expected: Decodable {
        struct Head: Decodable {
            var dims: [Int]
            var keys: [String]
            var input: [Double]?
            var output: [Double]?
        }
        var select: String?
        var pretext: String
        var heads: [String: Head]
    }

    func expected() throws -> [String: Expected] {
        try JSONDecoder().decode([String: Expected].self, from: Data(contentsOf: Fixtures.url("heads/expected.json")))
    }

    /// Imports `file` as `name`; fails the test unless import succeeds.
    func importFixture(_ file: String, _ e: Expected, name: String) throws {
        var args = ["import", Fixtures.url("heads/\(file)").path, "--name", name]
        if let s = e.select { args += ["--select", s] }
        let r = try bissl(args)
        XCTAssertEqual(r.status, 0, "\(file): \(r.stderr)")
    }

    /// Every layout loads into the engine with the keys it was saved with, and its eval-mode output
    /// matches PyTorch's (float64 reference). Tolerance: the heads are at most 3 layers of <= 32-term
    /// float32 dot products of O(1) values, then BN with running statistics; each layer adds a relative
    /// error of about 32 * 2^-24 ~ 2e-6 of the largest magnitude, so 1e-5 of the largest output bounds
    /// 3 layers with a margin of ~1.5x.
    func testEveryLayoutLoadsAndComputesWhatPyTorchComputes() throws {
        for (file, e) in try expected().sorted(by: { $0.key < $1.key }) {
            let name = String(file.dropLast(4)).replacingOccurrences(of: "_", with: "-")
            try importFixture(file, e, name: name)
            let zoo = try Zoo.open(ZooLayout(root: zooDir), readOnly: true)
            let checkpoint = try zoo.checkpoint(try zoo.resolve(name))
            try zoo.close()
            let net = try Network(checkpoint: checkpoint)
            for (component, head) in e.heads {
                guard let loaded = net.heads[component] else { XCTFail("\(file): no \(component)"); continue }
                XCTAssertEqual(loaded.record.dims, head.dims, "\(file) \(component)")
                if component == "classifier" { continue }
                XCTAssertEqual(Set(loaded.stateDict().keys), Set(head.keys), "\(file) \(component): keys as saved")
                guard let x = head.input, let y = head.output else { continue }
                let out = loaded.forward(Matrix(rows: 3, cols: head.dims[0], data: x.map(Float.init)), mode: .eval)
                assertClose(out.data, y.map(Float.init), tolerance: 1e-5, "\(file) \(component) eval output")
            }
        }
    }

    /// probe, finetune and one BiSSL alternation run on every imported layout (the head a command does
    /// not need is not read; align trains the projector/predictor as found).
    func testProbeFinetuneAndAlignRunOnEveryLayout() throws {
        let train = try split(0..<16), eval = try split(100..<116), pretext = try split(200..<216)
        for (file, e) in try expected().sorted(by: { $0.key < $1.key }) {
            let name = String(file.dropLast(4)).replacingOccurrences(of: "_", with: "-")
            try importFixture(file, e, name: name)
            var r = try bissl(["probe", name, "--data", train, "--eval-data", eval, "--image-size", "8", "--probe-epochs", "1", "--knn", "3"])
            XCTAssertEqual(r.status, 0, "probe \(file): \(r.stderr)")
            r = try bissl(["finetune", name, "--data", train, "--val", eval, "--steps", "1", "--batch-size", "8",
                           "--image-size", "8", "--name", name + "-ft"])
            XCTAssertEqual(r.status, 0, "finetune \(file): \(r.stderr)")
            r = try bissl(["align", name, "--data", train, "--pretext-data", pretext, "--val", eval, "--pretext", e.pretext,
                           "--warmup-epochs", "0", "--alternations", "1", "--lower-steps", "1", "--upper-steps", "1",
                           "--cg-iters", "1", "--p-batch-size", "4", "--d-batch-size", "8", "--image-size", "8",
                           "--name", name + "-aligned"])
            XCTAssertEqual(r.status, 0, "align \(file): \(r.stderr)")
            // The aligned entry keeps the layout it was given.
            let zoo = try Zoo.open(ZooLayout(root: zooDir), readOnly: true)
            let aligned = try zoo.checkpoint(try zoo.resolve(name + "-aligned"))
            try zoo.close()
            XCTAssertEqual(Set(aligned.components["projector"]?.keys ?? []), Set(e.heads["projector"]!.keys), "\(file): aligned projector keys")
        }
    }

    /// A head align cannot use is explained, with the option that starts fresh ones; with it the
    /// alignment runs. SimCLR's checkpoint has no predictor, so BYOL cannot use its heads.
    func testAlignExplainsAHeadItCannotUseAndOffersFreshHeads() throws {
        let e = try expected()["simclr.pth"]!
        try importFixture("simclr.pth", e, name: "simclr")
        let base = ["align", "simclr", "--data", try split(0..<16), "--pretext-data", try split(200..<216), "--pretext", "byol",
                    "--warmup-epochs", "0", "--alternations", "1", "--lower-steps", "1", "--upper-steps", "1",
                    "--cg-iters", "1", "--p-batch-size", "4", "--d-batch-size", "8", "--image-size", "8"]
        var r = try bissl(base)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.hasPrefix("error: align: the pretext heads of "), r.stderr)
        XCTAssertTrue(r.stderr.contains("no MLP 'predictor' head"), r.stderr)
        XCTAssertTrue(r.stderr.contains("give --fresh-heads to start new ones"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        r = try bissl(base + ["--fresh-heads", "--name", "fresh"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let zoo = try Zoo.open(ZooLayout(root: zooDir), readOnly: true)
        let aligned = try zoo.checkpoint(try zoo.resolve("fresh"))
        try zoo.close()
        XCTAssertEqual(aligned.architecture?.heads["projector"]?.dims, [8, 8, 8, 8], "bissl's default projector on 8 features")
        XCTAssertEqual(aligned.architecture?.heads["predictor"]?.dims, [8, 8, 8, 8])
    }

    /// A projector that cannot be loaded does not stop the commands that do not use it.
    func testCommandsWithoutAHeadDoNotReadIt() throws {
        let zoo = try Zoo.open(ZooLayout(root: zooDir), create: true)
        var arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 1, stem: "small")
        let net = try Network(architecture: arch, seed: 1)
        var components = net.components()
        // A component with a head record that does not describe its tensors (as left by another tool).
        arch.heads["projector"] = .init(kind: "mlp", dims: [8, 8, 4])
        components["projector"] = ["0.weight": Tensor(float32: [Float](repeating: 0.1, count: 64), shape: [8, 8]),
                                   "2.weight": Tensor(float32: [Float](repeating: 0.1, count: 40), shape: [5, 8])]
        let p = Provenance(stage: "pretext", method: "simclr")
        _ = try zoo.add(Checkpoint(components: components, architecture: arch, provenance: p), name: "odd")
        try zoo.close()
        let train = try split(0..<16), eval = try split(100..<116)
        var r = try bissl(["probe", "odd", "--data", train, "--eval-data", eval, "--image-size", "8", "--probe-epochs", "1", "--knn", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try bissl(["finetune", "odd", "--data", train, "--val", eval, "--steps", "1", "--batch-size", "8", "--image-size", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }
}
