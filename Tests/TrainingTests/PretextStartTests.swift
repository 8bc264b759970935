import Checkpoint
import Datasets
import Engine
import Foundation
import XCTest
import Zoo
@testable import Training

/// What `Pretraining.start` checks and records before any training: the `--name` (valid, free) is
/// refused before a run directory exists.
final class PretextStartTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("pretext-start-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    var repo: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Names of the run directories under the zoo's runs/ (none when the folder does not exist).
    func runDirectories(_ zoo: Zoo) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: zoo.layout.runs.path)) ?? []).filter { !$0.hasPrefix(".") }
    }

    func testTakenOrInvalidNameIsRefusedBeforeTheRunExists() throws {
        let zoo = try Zoo.open(ZooLayout(root: tmp.appendingPathComponent("zoo")), create: true)
        defer { try? zoo.close() }
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small")
        let entry = try zoo.add(try Network(architecture: arch, seed: 1).checkpoint(provenance: Provenance(stage: "pretext")),
                                name: "p1", tags: ["t1"])
        func refusal(_ name: String) -> String {
            var o = PretrainOptions(method: .simclr, data: "h5:\(repo.path)/data/digits/digits.h5")
            o.arch = "resnet18"; o.width = 4; o.batchSize = 8; o.steps = 2; o.name = name
            do {
                _ = try Pretraining.start(zoo: zoo, options: o, commandLine: ["test"])
                return "no error"
            } catch { return "\(error)" }
        }
        let taken = refusal("p1")
        XCTAssertTrue(taken.contains("--name p1 is already the name of entry \(entry.id.prefix(12))"), taken)
        let tag = refusal("t1")
        XCTAssertTrue(tag.contains("--name t1 is already the tag of entry \(entry.id.prefix(12))"), tag)
        let bad = refusal("bad name")
        XCTAssertTrue(bad.contains("--name: invalid label 'bad name'"), bad)
        let hex = refusal("abcdef12")
        XCTAssertTrue(hex.contains("6 or more hex digits"), hex)
        for m in [taken, tag, bad, hex] { XCTAssertFalse(m.contains("\n"), m) }
        XCTAssertEqual(runDirectories(zoo), [], "no run was created for a refused name")
    }
}
