import Checkpoint
import Foundation
import XCTest
import Zoo
import TestSupport

/// A hand-built pair of checkpoints whose every reported number is worked out by hand in the comments:
/// stage aggregation, heads added/removed/replaced, dtype changes, listing order, provenance and
/// hyperparameter keys, text layout.
final class DiffReportTests: XCTestCase {
    static func f32(_ v: [Float], _ shape: [Int]) -> Tensor { Tensor(float32: v, shape: shape) }

    static func pair() throws -> (Checkpoint, Checkpoint) {
        var hA = Provenance(stage: "pretext", hyperparameters: ["lr": .double(0.1), "opt": .object(["name": .string("sgd")])])
        hA.tool = Provenance.Tool(name: "bissl", version: "0.1.0")
        var hB = Provenance(stage: "finetune",
                            parents: [.init(id: "abc", relation: "finetuned-from", note: "classifier re-initialised")],
                            hyperparameters: ["lr": .double(0.01), "opt": .object(["name": .string("sgd"), "momentum": .double(0.9)])])
        hB.tool = hA.tool
        hB.metricHistory = ["loss": [1, 0.5]]
        let half = try Tensor(dtype: .float16, shape: [2], data: Data([0x00, 0x38, 0x00, 0x34]))  // 0.5, 0.25
        let a = Checkpoint(
            components: [
                "backbone": [
                    "conv1.weight": f32([3, 4], [2]),
                    "bn1.weight": f32([1, 0], [2]),
                    "bn1.running_var": f32([1, 1], [2]),
                    "bn1.num_batches_tracked": Tensor(int64: 5),
                    "layer1.0.conv1.weight": f32([0, 0], [1, 1, 1, 2]),
                    "layer1.0.bn1.weight": f32([0.5, 0.25], [2]),
                ],
                "projector": ["0.weight": f32([1, 0, 0, 1], [2, 2])],
                "predictor": ["0.weight": f32([1, 1], [2])],
            ],
            architecture: nil, provenance: hA)
        let b = Checkpoint(
            components: [
                "backbone": [
                    "conv1.weight": f32([3, 0], [2]),
                    "bn1.weight": f32([1, 0], [2]),
                    "bn1.running_var": f32([1, 2], [2]),
                    "bn1.num_batches_tracked": Tensor(int64: 7),
                    "layer1.0.conv1.weight": f32([0, 1], [1, 1, 1, 2]),
                    "layer1.0.bn1.weight": half,
                ],
                "projector": ["0.weight": f32([1, 0, 0, 1, 1, 1], [3, 2])],
                "classifier": ["fc.weight": f32([1, 1], [1, 2])],
            ],
            architecture: nil, provenance: hB)
        return (a, b)
    }

    func testStagesAndSummaryByHand() throws {
        let (a, b) = try Self.pair()
        let diff = try CheckpointDiff(a, b)
        // Stages: backbone stages first, then heads in order of first appearance (A, then B-only).
        XCTAssertEqual(diff.stages.map(\.stage), ["stem", "layer1", "projector", "predictor", "classifier"])
        XCTAssertEqual(diff.stages.map(\.status), [.changed, .changed, .replaced, .removed, .added])
        // stem: conv1 ||d|| = 4, ||a|| = 5; bn1.weight unchanged, ||a|| = 1 -> 4 / sqrt(26).
        let stem = diff.stage("stem")!
        XCTAssertEqual(stem.relativeChange!, 4 / 26.0.squareRoot(), accuracy: 1e-15)
        XCTAssertEqual(stem.l2, 4)
        XCTAssertEqual([stem.weightTensors, stem.changedWeights, stem.bnStatistics, stem.changedBNStatistics,
                        stem.counters, stem.changedCounters], [2, 1, 1, 1, 1, 1])
        // layer1: conv ||d|| = 1 with ||a|| = 0, bn1 f32 -> f16 same values, ||a||^2 = 0.3125 -> 1 / sqrt(0.3125).
        let layer1 = diff.stage("layer1")!
        XCTAssertEqual(layer1.relativeChange!, 1 / 0.3125.squareRoot(), accuracy: 1e-15)
        XCTAssertEqual(layer1.changedWeights, 2)
        XCTAssertEqual(diff.stage("projector")!.notes, ["projector.0.weight [2, 2] -> [3, 2]"])
        XCTAssertNil(diff.stage("projector")!.relativeChange)
        XCTAssertEqual(diff.stage("predictor")!.notes, [])
        // Whole network: sqrt(16 + 1) / sqrt(25 + 1 + 0.3125).
        XCTAssertEqual(diff.summary.relativeChange!, (17 / 26.3125).squareRoot(), accuracy: 1e-15)
        XCTAssertTrue(diff.summary.weightsChanged)
        XCTAssertTrue(diff.summary.bnStatisticsChanged)
        XCTAssertTrue(diff.summary.countersChanged)
        XCTAssertFalse(diff.summary.identical)
        let w = diff.section(.weights)
        XCTAssertEqual([w.total, w.added, w.removed, w.changed, w.unchanged], [7, 1, 1, 4, 1])
    }

    func testListingOrderAndEntries() throws {
        let (a, b) = try Self.pair()
        let diff = try CheckpointDiff(a, b)
        // Structural changes first in entry order, then by relative change: layer1 conv (undefined,
        // ||a|| = 0) before conv1 (0.8) before the dtype-only change (0).
        XCTAssertEqual(diff.section(.weights).tensors.map(\.name),
                       ["projector.0.weight", "predictor.0.weight", "fc.weight", "layer1.0.conv1.weight",
                        "conv1.weight", "layer1.0.bn1.weight"])
        let all = try CheckpointDiff(a, b, listing: .all)
        XCTAssertEqual(all.section(.weights).tensors.last?.name, "bn1.weight")
        XCTAssertEqual(all.section(.weights).tensors.last?.status, .unchanged)

        let conv = diff.section(.weights).tensors.first { $0.name == "conv1.weight" }!
        XCTAssertEqual(conv.delta?.relative, 0.8)
        XCTAssertEqual(conv.delta?.maxAbs, 4)
        let cast = diff.section(.weights).tensors.first { $0.name == "layer1.0.bn1.weight" }!
        XCTAssertTrue(cast.dtypeChanged)
        XCTAssertEqual(cast.status, .changed)
        XCTAssertEqual(cast.delta?.l2, 0)
        let head = diff.section(.weights).tensors.first { $0.name == "fc.weight" }!
        XCTAssertEqual(head.component, "classifier")
        XCTAssertEqual(head.stage, "classifier")
        XCTAssertNil(head.shapeA)
        XCTAssertEqual(head.shapeB, [1, 2])
        let counter = diff.section(.counters).tensors.first!
        XCTAssertEqual([counter.valueA, counter.valueB], [5, 7])
    }

    func testProvenanceAndHyperparameterKeys() throws {
        let (a, b) = try Self.pair()
        let diff = try CheckpointDiff(a, b)
        func summary(_ changes: [KeyChange]) -> [String] {
            changes.map { "\($0.kind.rawValue) \($0.key) \($0.a?.description ?? "-") \($0.b?.description ?? "-")" }
        }
        XCTAssertEqual(summary(diff.provenance), [
            "changed stage pretext finetune",
            "added parents[0].id - abc",
            "added parents[0].note - classifier re-initialised",
            "added parents[0].relation - finetuned-from",
            "added metricHistory.loss.count - 2",
            "added metricHistory.loss.last - 0.5",
        ])
        XCTAssertEqual(summary(diff.hyperparameters), ["changed lr 0.1 0.01", "added opt.momentum - 0.9"])
        XCTAssertEqual(diff.architecture, [])
    }

    func testTextLayout() throws {
        let (a, b) = try Self.pair()
        let text = DiffTextRenderer.render(try CheckpointDiff(a, b, labelA: "left", labelB: "right"))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(lines[0], "diff left -> right")
        XCTAssertTrue(lines.contains("  weights          6 of 7 tensors differ (3 changed, 1 reshaped in replaced projector, 1 added, 1 removed), relative change 0.8038"), text)
        XCTAssertTrue(lines.contains("  ~  lr            0.1 -> 0.01"), text)
        XCTAssertTrue(lines.contains("  +  opt.momentum  0.9"), text)
        // Provenance key column: as wide as `metricHistory.loss.count` (24) plus two spaces.
        XCTAssertTrue(lines.contains("  ~  stage" + String(repeating: " ", count: 24 - 5 + 2) + "pretext -> finetune"), text)
        // Aligned columns: every row of the weights table starts its shape column at the same offset.
        let start = lines.firstIndex { $0.hasPrefix("weights:") }!
        let header = lines[start + 1]
        let shapeColumn = header.range(of: "shape")!.lowerBound.utf16Offset(in: header)
        for row in lines[(start + 2)...].prefix { !$0.isEmpty } {
            let name = row.dropFirst(5).prefix { $0 != " " }
            let after = row.index(row.startIndex, offsetBy: 5 + name.count)
            let shapeOffset = row[after...].firstIndex { $0 != " " }!.utf16Offset(in: row)
            XCTAssertEqual(shapeOffset, shapeColumn, row)
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("  ~  conv1.weight") && $0.contains("  0.8  ") && $0.contains("0.600000") }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("  ~  layer1.0.bn1.weight") && $0.hasSuffix("dtype float32 -> float16") }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("  -  predictor.0.weight") && $0.hasSuffix("only in A (float32)") }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("  ~  bn1.num_batches_tracked") && $0.hasSuffix("  5  7") }, text)
    }

    func testIdenticalCheckpoints() throws {
        let (a, _) = try Self.pair()
        let diff = try CheckpointDiff(a, a)
        XCTAssertTrue(diff.summary.identical)
        XCTAssertFalse(diff.summary.weightsChanged)
        XCTAssertTrue(diff.sections.allSatisfy { $0.tensors.isEmpty })
        XCTAssertEqual(DiffTextRenderer.render(diff), "diff A -> B\n  identical: same tensors, architecture and provenance\n")
    }
}
