import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// `bissl align` as a process: bad input is refused with one `error:` line before a run directory
/// exists, `--resume` takes no other option, and a tiny real alignment (ResNet-18 width 2, 8x8
/// digits, 1 warmup epoch, 1 alternation of 1+1 steps) records the hyperparameters as given.
final class BiSSLAlignCommandTests: CLITestCase {
    /// A tiny SimCLR-like pretext entry (`withProjector`) or a plain backbone entry; returns its id.
    func addEntry(zoo: Zoo, withProjector: Bool, seed: UInt64, name: String? = nil, method: String? = "simclr") throws -> String {
        let heads: [String: Architecture.Head] = withProjector ? ["projector": .init(kind: "mlp", dims: [16, 16, 8])] : [:]
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small", heads: heads)
        let net = try Network(architecture: arch, seed: seed)
        let p = Provenance(stage: method == nil ? "imported" : "pretext", method: method, hyperparameters: ["imageSize": .int(8), "batchSize": .int(4)])
        return try zoo.add(net.checkpoint(provenance: p), name: name).id
    }

    /// Every bad input users have given (and the numeric options' neighbours) gives exactly one
    /// `error:` line naming the option, a non-zero exit and no run directory.
    func testBadInputIsRefusedBeforeARunExists() throws {
        let zoo = try Zoo.open(ZooLayout(root: zooDir), create: true)
        let ref = try addEntry(zoo: zoo, withProjector: true, seed: 1)
        let bare = try addEntry(zoo: zoo, withProjector: false, seed: 2)
        _ = try addEntry(zoo: zoo, withProjector: true, seed: 3, name: "taken")
        _ = try addEntry(zoo: zoo, withProjector: true, seed: 5, name: "held-upper")
        let imported = try addEntry(zoo: zoo, withProjector: true, seed: 7, name: "imported-one", method: nil)
        try zoo.close()
        let train = try split(0..<40), pretext = try split(100..<140)
        let base = [String(ref.prefix(12)), "--data", train, "--pretext-data", pretext]
        let cases: [([String], String)] = [
            (base + ["--d-batch-size", "0", "--alternations", "1"], "error: align: --d-batch-size must be at least 2 (train-mode BatchNorm), got 0"),
            (base + ["--alternations", "0"], "error: align: --alternations must be at least 1, got 0"),
            (base + ["--lower-steps=-1"], "error: align: --lower-steps must be at least 1, got -1"),
            (base + ["--warmup-epochs=-2"], "error: align: --warmup-epochs must be 0 or more, got -2"),
            (base + ["--d-lr", "nan"], "error: align: --d-lr must be a finite number, got nan"),
            (base + ["--lambda=-0.5"], "error: align: --lambda must not be negative, got -0.5"),
            (base + ["--p-wd", "1e300"], "error: align: --p-wd must be a finite number, got 1e+300"),
            (base + ["--d-batch-size", "4096"], "error: align: --d-batch-size 4096 is larger than --data (40 images)"),
            (base + ["--p-batch-size", "41"], "error: align: --p-batch-size 41 is larger than --pretext-data (40 images)"),
            ([String(ref.prefix(12)), "--data", train, "--pretext-data", "idx:/nope"], "error: --pretext-data idx:/nope: idx: cannot read /nope: no such folder"),
            (base + ["--val", "h5:/nope.h5"], "error: --val h5:/nope.h5: "),
            ([String(bare.prefix(12)), "--data", train, "--pretext-data", pretext],
             "error: align: the pretext heads of \(bare.prefix(12)) cannot be used for simclr (pretext simclr: the network has no MLP 'projector' head); give --fresh-heads to start new ones on its backbone"),
            (base + ["--name", "taken"], "error: --name taken is already the name of entry "),
            (base + ["--name", "bad name"], "error: --name: invalid label 'bad name'"),
            (base + ["--augment", "crop:9"], "error: align: --augment 'crop:9': the crop's minimum area must be a number in (0, 1]"),
            (base + ["--pretext-val", "idx:/nope"], "error: --pretext-val idx:/nope: idx: cannot read /nope: no such folder"),
            (base + ["--keep-upper", "--name", "held"], "error: --name held-upper is already the name of entry "),
            (base + ["--sync-bn"], "error: align: --sync-bn needs --hvp central or --hvp forward (or --no-ij)"),
            // The entry as named, not the usage placeholder REF.
            (["imported-one", "--data", train, "--pretext-data", pretext],
             "error: align: entry imported-one (\(imported.prefix(12))) records no pretext method; give --pretext "),
            ([String(imported.prefix(12)), "--data", train, "--pretext-data", pretext],
             "error: align: entry \(imported.prefix(12)) records no pretext method; give --pretext "),
        ]
        for (args, expected) in cases {
            let r = try bissl(["align"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            let lines = r.stderr.split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(lines.first?.hasPrefix(expected) ?? false, "\(args): got \(r.stderr), expected \(expected)")
            XCTAssertEqual(runDirectories(), [], "\(args) left a run directory")
        }
    }

    /// `--resume RUN` with any other option is refused before the run is opened.
    func testResumeTakesNoOtherOptions() throws {
        _ = try Zoo.open(ZooLayout(root: zooDir), create: true)
        let r = try bissl(["align", "--resume", "align-20260101-000000-abcdef", "--alternations", "50", "--name", "sneaky", "--no-ij"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: --resume takes no other options (the run's config has them): remove --alternations, --no-ij, --name\n")
    }

    /// A real (tiny) alignment: the entry's hyperparameters hold the values as typed (0.03, not
    /// 0.029999999329447746), the constants as written, and the default --d-batch-size is clamped to
    /// the data with a note.
    func testHyperparametersAreRecordedAsGiven() throws {
        let zoo = try Zoo.open(ZooLayout(root: zooDir), create: true)
        let ref = try addEntry(zoo: zoo, withProjector: true, seed: 4)
        try zoo.close()
        let r = try bissl(["align", String(ref.prefix(12)), "--data", try split(0..<8), "--pretext-data", try split(100..<108),
                           "--val", try split(200..<208), "--alternations", "1", "--lower-steps", "1", "--upper-steps", "1",
                           "--warmup-epochs", "1", "--cg-iters", "1", "--p-batch-size", "4",
                           "--d-lr", "0.03", "--lambda", "0.001", "--p-wd", "1e-6", "--clip", "2.7", "--name", "tiny-aligned", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\"name\" : \"tiny-aligned\""), r.stdout)
        XCTAssertTrue(r.stderr.contains("note: --d-batch-size defaults to 256, more than --data has; using 8"), r.stderr)
        let reopened = try Zoo.open(ZooLayout(root: zooDir))
        let entries = try reopened.list().map(\.summary.id).filter { $0 != ref }
        XCTAssertEqual(entries.count, 1)
        let h = try reopened.checkpoint(entries[0]).provenance.hyperparameters
        XCTAssertEqual(h["dLR"], .double(0.03))
        XCTAssertEqual(h["lambda"], .double(0.001))
        XCTAssertEqual(h["pWD"], .double(1e-6))
        XCTAssertEqual(h["clip"], .double(2.7))
        XCTAssertEqual(h["dWD"], .double(0.001))
        XCTAssertEqual(h["dMomentum"], .double(0.9))
        XCTAssertEqual(h["pEta"], .double(0.001))
        XCTAssertEqual(h["dBatchSize"], .int(8))
        XCTAssertNil(h["run.segments"], "not resumed")
        XCTAssertEqual(try reopened.resolve("tiny-aligned"), entries[0])
        XCTAssertEqual(h["augment"], .string("crop:0.08+flip"), "the default --augment")
    }

    /// `--keep-upper` adds θ_D, φ_D as `NAME-upper` (parent REF, the two entries name each other);
    /// `--augment` is recorded; penalty_share (0 at λ = 0) and the held-out pretext loss are in the
    /// metric history.
    func testKeepUpperAugmentAndLoggedShares() throws {
        let zoo = try Zoo.open(ZooLayout(root: zooDir), create: true)
        let ref = try addEntry(zoo: zoo, withProjector: true, seed: 4)
        try zoo.close()
        let r = try bissl(["align", String(ref.prefix(12)), "--data", try split(0..<8), "--pretext-data", try split(100..<108),
                           "--val", try split(200..<208), "--pretext-val", try split(300..<306), "--alternations", "2",
                           "--lower-steps", "2", "--upper-steps", "1", "--warmup-epochs", "0", "--p-batch-size", "4",
                           "--d-batch-size", "4", "--lambda", "0", "--no-ij", "--augment", "crop:0.5", "--keep-upper",
                           "--name", "al", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: String])
        let reopened = try Zoo.open(ZooLayout(root: zooDir), readOnly: true)
        let lowerID = try reopened.resolve("al"), upperID = try reopened.resolve("al-upper")
        XCTAssertEqual(out["upper"], upperID)
        let lower = try reopened.checkpoint(lowerID), upper = try reopened.checkpoint(upperID)
        XCTAssertEqual(lower.provenance.hyperparameters["upperEntry"], .string(upperID))
        XCTAssertEqual(upper.provenance.hyperparameters["lowerEntry"], .string(lowerID))
        XCTAssertEqual(upper.provenance.parents.map(\.id), [ref])
        XCTAssertEqual(upper.provenance.parents.first?.relation, "aligned-from")
        XCTAssertEqual(Set(upper.components.keys), ["backbone", "classifier"])
        XCTAssertEqual(upper.components["classifier"], lower.components["classifier"], "φ_D is in both")
        XCTAssertNotEqual(upper.components["backbone"], lower.components["backbone"], "θ_D is not θ_P")
        let p = lower.provenance
        XCTAssertEqual(p.hyperparameters["augment"], .string("crop:0.5"))
        XCTAssertEqual(p.metricHistory["penalty_share"], [0, 0, 0, 0])
        XCTAssertEqual(p.metricHistory["loss_pretext_heldout"]?.count, 2)
        XCTAssertEqual(p.metricHistory["loss_pretext_heldout_start"]?.count, 1)
        XCTAssertTrue(p.datasets.contains { $0.role == "pretext-heldout" })
    }
}
