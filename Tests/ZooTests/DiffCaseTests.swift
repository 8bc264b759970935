import Checkpoint
import Foundation
import XCTest
import Zoo
import TestSupport

/// The c3, c4, c17 and c18 fixtures (BN counters, teacher/student, re-initialised classifier, a few changed values) on real `torch.save` files from tools/fixtures/make_diff_fixtures.py, against
/// expectations that script computed in float64 with torch (Tests/Fixtures/diff/expected.json).
final class DiffCaseTests: XCTestCase {
    static let root = Fixtures.url("diff")

    static var expected: [String: Any] { try! Fixtures.jsonObject("diff/expected.json") }

    func load(_ name: String) throws -> Checkpoint {
        try Interchange.load(Self.root.appendingPathComponent(name), options: LayoutOptions(), commandLine: ["test"])
    }

    /// Compares every tensor, section count and stage of `diff` (listing `.all`) with `expected[pair]`.
    func check(_ diff: CheckpointDiff, pair: String, file: StaticString = #filePath, line: UInt = #line) {
        let exp = Self.expected[pair] as! [String: Any]
        let differing = exp["tensors"] as! [String: [String: Any]]
        let entries = diff.sections.flatMap(\.tensors)
        XCTAssertEqual(entries.count, Set(entries.map(\.name)).count, "duplicate tensor names", file: file, line: line)
        for e in entries {
            guard let x = differing[e.name] else {
                XCTAssertEqual(e.status, .unchanged, "\(pair) \(e.name)", file: file, line: line)
                continue
            }
            XCTAssertEqual(e.status.rawValue, x["status"] as? String, "\(pair) \(e.name) status", file: file, line: line)
            XCTAssertEqual(e.section.rawValue, x["section"] as? String, "\(pair) \(e.name) section", file: file, line: line)
            XCTAssertEqual(e.stage, x["stage"] as? String, "\(pair) \(e.name) stage", file: file, line: line)
            if let shapeB = x["shape_b"] as? [Int] {
                XCTAssertEqual(e.shapeA, x["shape_a"] as? [Int], file: file, line: line)
                XCTAssertEqual(e.shapeB, shapeB, file: file, line: line)
                XCTAssertNil(e.delta, file: file, line: line)
                continue
            }
            guard let d = e.delta else { XCTFail("\(pair) \(e.name): no delta", file: file, line: line); continue }
            func close(_ got: Double?, _ key: String) {
                guard let want = x[key] as? Double else {
                    XCTAssertNil(got, "\(pair) \(e.name) \(key)", file: file, line: line)
                    return
                }
                XCTAssertEqual(got ?? .nan, want, accuracy: 1e-10 * max(1, Swift.abs(want)),
                               "\(pair) \(e.name) \(key)", file: file, line: line)
            }
            close(d.l2, "l2")
            close(d.relative, "relative")
            close(d.cosine, "cosine")
            close(d.maxAbs, "max_abs")
            XCTAssertEqual(d.changedElements, x["changed_elements"] as? Int, "\(pair) \(e.name)", file: file, line: line)
            if x["value_a"] != nil {
                close(e.valueA, "value_a")
                close(e.valueB, "value_b")
            }
        }
        XCTAssertEqual(Set(differing.keys), Set(entries.filter { $0.status != .unchanged }.map(\.name)),
                       pair, file: file, line: line)

        let sections = exp["sections"] as! [String: [String: Int]]
        for s in diff.sections {
            let x = sections[s.section.rawValue]!
            XCTAssertEqual([s.total, s.added, s.removed, s.changed, s.unchanged],
                           [x["total"]!, x["added"]!, x["removed"]!, x["changed"]!, x["unchanged"]!],
                           "\(pair) \(s.section)", file: file, line: line)
        }

        let stages = exp["stages"] as! [String: [String: Any]]
        XCTAssertEqual(Set(diff.stages.map(\.stage)), Set(stages.keys), pair, file: file, line: line)
        for s in diff.stages {
            let x = stages[s.stage]!
            if let r = x["relative"] as? Double, (x["shape_changes"] as! [String]).isEmpty {
                XCTAssertEqual(s.relativeChange ?? .nan, r, accuracy: 1e-10 * max(1, r), "\(pair) \(s.stage)",
                               file: file, line: line)
            }
            XCTAssertEqual(s.weightTensors, x["weight_tensors"] as? Int, "\(pair) \(s.stage)", file: file, line: line)
            XCTAssertEqual(s.changedWeights, x["changed_weights"] as? Int, "\(pair) \(s.stage)", file: file, line: line)
        }
        XCTAssertEqual(diff.summary.weightsChanged, exp["weights_changed"] as? Bool, pair, file: file, line: line)
    }

    // MARK: - C4

    func testC4TeacherVersusStudentPerLayerRelativeChange() throws {
        let diff = try CheckpointDiff(load("c4_student.pth"), load("c4_teacher.pth"),
                                      labelA: "student", labelB: "teacher", listing: .all)
        check(diff, pair: "c4")
        // The noise scale grows with depth (stem 1e-3 ... layer4 3e-2): stages in network order.
        XCTAssertEqual(diff.stages.map(\.stage), ["stem", "layer1", "layer2", "layer3", "layer4"])
        XCTAssertTrue(diff.stages.allSatisfy { $0.status == .changed })
        // Largest relative change first in the weights listing.
        let relatives = diff.section(.weights).tensors.map { $0.delta!.relative! }
        XCTAssertEqual(relatives, relatives.sorted(by: >))
        // Provenance: the source file differs (name, hash, and what torch.save records per file:
        // archive folder name, serialization id) and perhaps the import times; nothing else.
        let fileName = try XCTUnwrap(diff.provenance.first { $0.key == "source.fileName" })
        XCTAssertEqual([fileName.a, fileName.b], [.string("c4_student.pth"), .string("c4_teacher.pth")])
        XCTAssertTrue(diff.provenance.contains { $0.key == "source.sha256" })
        let allowed: Set<String> = ["source.fileName", "source.sha256", "source.metadata.zip_folder",
                                    "source.metadata.serialization_id", "startedAt", "endedAt"]
        XCTAssertTrue(Set(diff.provenance.map(\.key)).isSubset(of: allowed), "\(diff.provenance.map(\.key))")
        XCTAssertTrue(diff.hyperparameters.isEmpty)
        XCTAssertTrue(diff.architecture.isEmpty)
        XCTAssertFalse(diff.summary.countersChanged)

        let text = DiffTextRenderer.render(diff)
        let stageLines = text.split(separator: "\n").filter { $0.hasPrefix("  layer") || $0.hasPrefix("  stem") }
        XCTAssertEqual(stageLines.prefix(5).map { String($0.split(separator: " ")[0]) },
                       ["stem", "layer1", "layer2", "layer3", "layer4"])
    }

    // MARK: - C18

    func testC18OneRunningVarNamedInBNSectionWeightsUnchanged() throws {
        let a = try load("c18_a.pth"), b = try load("c18_b.pth")
        check(try CheckpointDiff(a, b, listing: .all), pair: "c18")

        let diff = try CheckpointDiff(a, b)
        XCTAssertFalse(diff.summary.weightsChanged)
        XCTAssertTrue(diff.summary.bnStatisticsChanged)
        XCTAssertFalse(diff.summary.countersChanged)
        XCTAssertEqual(diff.section(.weights).tensors.count, 0)
        XCTAssertEqual(diff.section(.counters).tensors.count, 0)
        let listed = diff.section(.bnStatistics).tensors
        XCTAssertEqual(listed.map(\.name), ["layer3.0.bn2.running_var"])
        let x = (Self.expected["c18"] as! [String: Any])["tensors"] as! [String: [String: Any]]
        let want = x["layer3.0.bn2.running_var"]!
        XCTAssertEqual(listed[0].delta!.l2, want["l2"] as! Double, accuracy: 1e-12)
        XCTAssertEqual(listed[0].delta!.maxAbs, want["max_abs"] as! Double, accuracy: 1e-12)
        XCTAssertEqual(diff.stage("layer3")?.status, .changed)
        XCTAssertEqual(diff.stage("layer3")?.changedWeights, 0)
        XCTAssertEqual(diff.stage("layer3")?.changedBNStatistics, 1)
        XCTAssertEqual(diff.stages.filter { $0.status != .unchanged }.map(\.stage), ["layer3"])

        // Text: the tensor appears once, in the BN statistics section, with its L2 (4 significant digits).
        let text = DiffTextRenderer.render(diff)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let hits = lines.indices.filter { lines[$0].contains("layer3.0.bn2.running_var") }
        XCTAssertEqual(hits.count, 1, text)
        let heading = lines[..<hits[0]].last { !$0.hasPrefix(" ") }
        XCTAssertEqual(heading, "BN statistics: 1 of 106 differs (1 changed)")
        XCTAssertTrue(lines[hits[0]].contains(String(format: "%.4g", want["l2"] as! Double)), lines[hits[0]])
        XCTAssertTrue(lines.contains { $0.hasPrefix("  weights") && $0.hasSuffix("unchanged (159 tensors)") }, text)
    }

    // MARK: - C3

    func testC3CountersOnlyAreNotAWeightChange() throws {
        let a = try load("c18_a.pth"), c = try load("c3_nbt.pth")
        check(try CheckpointDiff(a, c, listing: .all), pair: "c3")
        let diff = try CheckpointDiff(a, c)
        XCTAssertFalse(diff.summary.weightsChanged)
        XCTAssertFalse(diff.summary.bnStatisticsChanged)
        XCTAssertTrue(diff.summary.countersChanged)
        XCTAssertEqual(diff.summary.relativeChange, 0)
        XCTAssertTrue(diff.stages.allSatisfy { $0.status == .unchanged && $0.changedWeights == 0 })
        XCTAssertEqual(diff.stages.reduce(0) { $0 + $1.changedCounters }, 53)
        for e in diff.section(.counters).tensors {
            XCTAssertEqual(e.valueB! - e.valueA!, 500, e.name)
        }
    }

    /// C3 variant: a file without `num_batches_tracked` is filled with 0 on import; against the full
    /// dict only counters (and the provenance of the fill) differ.
    func testC3MissingCountersFilledOnImportAreNotAWeightChange() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-diff-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let full = try load("c18_a.pth")
        var stripped = full
        stripped.components["backbone"] = full.components["backbone"]!.filter { !$0.key.hasSuffix("num_batches_tracked") }
        let url = dir.appendingPathComponent("no_nbt.pth")
        try Interchange.write(stripped, to: url, format: .pth)
        let filled = try Interchange.load(url, options: LayoutOptions(), commandLine: ["test"])
        let diff = try CheckpointDiff(full, filled)
        XCTAssertFalse(diff.summary.weightsChanged)
        XCTAssertFalse(diff.summary.bnStatisticsChanged)
        XCTAssertEqual(diff.section(.counters).changed, 53)
        XCTAssertTrue(diff.section(.counters).tensors.allSatisfy { $0.valueB == 0 && $0.valueA! > 0 })
        let filledKeys = diff.provenance.filter { $0.key.hasPrefix("source.filledKeys[") }
        XCTAssertEqual(filledKeys.count, 53)
        XCTAssertTrue(filledKeys.allSatisfy { $0.kind == .added })
    }

    // MARK: - C17

    func testC17ClassifierReplacedThousandToTen() throws {
        let diff = try CheckpointDiff(load("c17_pretrained.pth"), load("c17_finetuned.pth"), listing: .all)
        check(diff, pair: "c17")
        let head = try XCTUnwrap(diff.stage("classifier"))
        XCTAssertEqual(head.status, .replaced)
        XCTAssertNil(head.relativeChange)
        XCTAssertEqual(head.notes, ["fc.weight [1000, 16] -> [10, 16]", "fc.bias [1000] -> [10]"])
        XCTAssertEqual(diff.stages.last?.stage, "classifier")
        XCTAssertTrue(diff.stages.dropLast().allSatisfy { $0.status == .changed })
        let dims = try XCTUnwrap(diff.architecture.first { $0.key == "heads.classifier.dims" })
        XCTAssertEqual(dims.a, .array([.int(16), .int(1000)]))
        XCTAssertEqual(dims.b, .array([.int(16), .int(10)]))
        // Shape changes come first in the weights listing, before any value change.
        XCTAssertEqual(diff.section(.weights).tensors.prefix(2).map(\.name), ["fc.weight", "fc.bias"])
        let text = DiffTextRenderer.render(diff)
        XCTAssertTrue(text.contains("fc.weight [1000, 16] -> [10, 16]"), text)
        XCTAssertTrue(text.split(separator: "\n").contains { $0.hasPrefix("  classifier") && $0.contains("replaced") }, text)
        // The summary agrees with the stage table: the two reshaped tensors are counted apart from the
        // changed ones (it said "N of N tensors differ (N changed)").
        let weights = diff.section(.weights)
        let summary = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("  weights") }.map(String.init))
        XCTAssertTrue(summary.contains("(\(weights.changed - 2) changed, 2 reshaped in replaced classifier)"), summary)
    }

    // MARK: - JSON

    func testJSONReportRoundTripsAndNamesTheFields() throws {
        let diff = try CheckpointDiff(load("c18_a.pth"), load("c18_b.pth"), labelA: "a", labelB: "b")
        let json = try DiffJSONRenderer.render(diff)
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        XCTAssertEqual(Set(object.keys), ["labelA", "labelB", "listing", "summary", "sections", "stages",
                                          "provenance", "hyperparameters", "architecture", "hiddenVolatile", "provenanceOmitted"])
        let summary = object["summary"] as! [String: Any]
        XCTAssertEqual(summary["weightsChanged"] as? Bool, false)
        let bn = (object["sections"] as! [[String: Any]]).first { $0["section"] as? String == "bn_statistics" }!
        let tensors = bn["tensors"] as! [[String: Any]]
        XCTAssertEqual(tensors.map { $0["name"] as! String }, ["layer3.0.bn2.running_var"])
        XCTAssertEqual(tensors[0]["shapeChanged"] as? Bool, false)
        let decoded = try JSONDecoder().decode(CheckpointDiff.self, from: Data(json.utf8))
        XCTAssertEqual(decoded.section(.bnStatistics).tensors.first?.delta, diff.section(.bnStatistics).tensors.first?.delta)
    }
}
