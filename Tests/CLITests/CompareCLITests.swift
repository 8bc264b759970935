import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// `bissl compare` and `bissl eval` as processes on three tiny random classifiers (ResNet-18 width 2,
/// 10 classes) and the 1,797 8x8 digits: the JSON agrees with itself and with `eval`, the exact
/// McNemar p-value equals a binomial tail summed here from its definition, and bad input is one
/// `error:` line with nothing on stdout. (scipy checks the same numbers in the interop lane.)
final class CompareCLITests: CLITestCase {
    static let digitsURI = "h5:" + digits

    override func setUpWithError() throws {
        try super.setUpWithError()
        let z = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: zoo)), create: true)
        defer { try? z.close() }
        for seed in 1...3 as ClosedRange<UInt64> {
            let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small",
                                    heads: ["classifier": .init(kind: "linear", dims: [16, 10])])
            let net = try Network(architecture: arch, seed: seed)
            _ = try z.add(net.checkpoint(provenance: Provenance(stage: "finetune", method: "finetune")), name: "c\(seed)")
        }
    }

    func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// 2·P(X ≤ min(b, c)) for X ~ Bin(b + c, 1/2), capped at 1: each term C(n, i)/2^n as a product of
    /// n factors (i of (n−k)/k ratios and n halvings interleaved), so nothing overflows for n ≤ 1797.
    func binomialTwoSided(_ b: Int, _ c: Int) -> Double {
        let n = b + c, k = min(b, c)
        guard b != c else { return 1 }
        var tail = 0.0
        for i in 0...k {
            var term = 1.0
            for j in 0..<n { term *= (j < i ? Double(n - j) / Double(i - j) : 1) * 0.5 }
            tail += term
        }
        return min(1, 2 * tail)
    }

    func testThreeEntriesAgreeWithEvalAndTheBinomialTail() throws {
        let r = try bissl(["compare", "c1", "c2", "c3", "--data", Self.digitsURI, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try json(r.stdout)
        XCTAssertEqual(report["images"] as? Int, 1797)
        XCTAssertEqual(report["correction"] as? String, "holm")
        let entries = try XCTUnwrap(report["entries"] as? [[String: Any]])
        let pairs = try XCTUnwrap(report["pairs"] as? [[String: Any]])
        XCTAssertEqual(entries.count, 3)
        XCTAssertEqual(pairs.count, 3)
        // eval of the first entry: the same top-1 and the same Wilson interval
        let e = try json(try bissl(["eval", "c1", "--data", Self.digitsURI, "--json"]).stdout)
        let metrics = try XCTUnwrap(e["metrics"] as? [String: Any])
        XCTAssertEqual(metrics["top1"] as? Double, entries[0]["top1"] as? Double)
        XCTAssertEqual(metrics["top1Lower"] as? Double, entries[0]["top1Lower"] as? Double)
        var raw: [Double] = []
        for pair in pairs {
            let c = try XCTUnwrap(pair["comparison"] as? [String: Any])
            let b = try XCTUnwrap(c["onlyARight"] as? Int), d = try XCTUnwrap(c["onlyBRight"] as? Int)
            let p = try XCTUnwrap(c["mcnemarP"] as? Double)
            // the tail here and the one in PairedTests are float64 sums of at most n terms: 1e-12 relative
            XCTAssertEqual(p, binomialTwoSided(b, d), accuracy: 1e-12 * max(p, 1e-300))
            XCTAssertEqual(try XCTUnwrap(c["difference"] as? Double), 100 * Double(b - d) / 1797, accuracy: 1e-9)
            raw.append(p)
        }
        XCTAssertTrue(raw.contains { $0 < 1 }, "the random classifiers disagree somewhere: \(raw)")
        // Holm by hand from the three raw p-values
        let order = raw.indices.sorted { raw[$0] < raw[$1] }
        var running = 0.0
        for (rank, i) in order.enumerated() {
            running = max(running, min(1, Double(3 - rank) * raw[i]))
            XCTAssertEqual((pairs[i]["comparison"] as? [String: Any])?["holmP"] as? Double ?? -1, running, accuracy: 1e-15)
        }
        let text = try bissl(["compare", "c1", "c2", "--data", Self.digitsURI])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("verdict: "), text.stdout)
    }

    func testBadInputIsOneErrorLine() throws {
        for args in [["compare", "c1", "--data", Self.digitsURI], ["compare", "c1", "c1", "--data", Self.digitsURI],
                     ["compare", "c1", "nope", "--data", Self.digitsURI], ["compare", "c1", "c2", "--data", "h5:/nope.h5"],
                     ["eval", "c1", "--data", Self.digitsURI, "--seed", "-1"]] {
            let r = try bissl(args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertEqual(r.stdout, "", "\(args)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr)
        }
    }
}
