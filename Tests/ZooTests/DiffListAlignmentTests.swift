import Checkpoint
import Foundation
import XCTest
@testable import Zoo

/// Lists in provenance (import rules, dropped keys, parents) are aligned by content: an element
/// present in both shows no change wherever it sits.
final class DiffListAlignmentTests: XCTestCase {
    func summary(_ changes: [KeyChange]) -> [String] {
        changes.map { "\($0.kind.rawValue) \($0.key) \($0.a?.description ?? "-") \($0.b?.description ?? "-")" }
    }

    func strings(_ s: [String]) -> JSONValue { .array(s.map { .string($0) }) }

    /// The import rules of one network from a bare `.pth` and from `{"state_dict": {"module.*"}}`:
    /// the shared rules (`'fc.*' is a linear layer`, the filled counters) are not reported; the
    /// differing ones are removed and added lines, never paired with an unrelated rule.
    func testImportRulesOfTheSameNetworkFromTwoLayouts() {
        let bare = ["state dict at the root dict (122 tensors), one of 1 dict(s) of tensors",
                    "matched 120/120 backbone keys of resnet18 by rule 'bare torchvision names'",
                    "'fc.*' is a linear layer 512 -> 1000: component classifier",
                    "filled 20 missing num_batches_tracked with 0 (int64)"]
        let wrapped = ["state dict at 'state_dict' (122 tensors), one of 1 dict(s) of tensors",
                       "matched 120/120 backbone keys of resnet18 by rule 'prefix module.'",
                       "stripped prefix 'module.' shared by all 122 keys",
                       "'fc.*' is a linear layer 512 -> 1000: component classifier",
                       "filled 20 missing num_batches_tracked with 0 (int64)"]
        let a = KeyedDiff.flatten(.object(["source": .object(["rules": strings(bare), "fileName": .string("r18.pth")])]))
        let b = KeyedDiff.flatten(.object(["source": .object(["rules": strings(wrapped), "fileName": .string("r18_module.pth")])]))
        XCTAssertEqual(summary(KeyedDiff.diff(a, b)), [
            "changed source.fileName r18.pth r18_module.pth",
            "removed source.rules[0] \(bare[0]) -",
            "removed source.rules[1] \(bare[1]) -",
            "added source.rules[0] - \(wrapped[0])",
            "added source.rules[1] - \(wrapped[1])",
            "added source.rules[2] - \(wrapped[2])",
        ])
    }

    func testReorderedAndEqualListsAndLeavesOutsideLists() {
        let a = KeyedDiff.flatten(.object(["w": strings(["x", "y", "z"]), "n": .int(1)]))
        XCTAssertEqual(KeyedDiff.diff(a, a), [])
        // One element moved to the front: one removed, one added; the two others are unchanged.
        let b = KeyedDiff.flatten(.object(["w": strings(["z", "x", "y"]), "n": .int(2)]))
        XCTAssertEqual(summary(KeyedDiff.diff(a, b)), ["changed n 1 2", "removed w[2] z -", "added w[0] - z"])
        // A repeated element is matched once per occurrence.
        let c = KeyedDiff.flatten(.object(["w": strings(["x", "x"])]))
        let d = KeyedDiff.flatten(.object(["w": strings(["x"])]))
        XCTAssertEqual(summary(KeyedDiff.diff(c, d)), ["removed w[1] x -"])
    }

    /// Objects between aligned elements are paired in order and compared key by key; an inserted
    /// equal object does not shift the comparison of the others.
    func testObjectsAreComparedByKeyWhenPaired() {
        func parent(_ id: String, _ relation: String) -> JSONValue {
            .object(["id": .string(id), "relation": .string(relation)])
        }
        let a = KeyedDiff.flatten(.object(["parents": .array([parent("a", "finetuned-from"), parent("b", "aligned-from")])]))
        let b = KeyedDiff.flatten(.object(["parents": .array([parent("new", "imported-from"), parent("a", "finetuned-from"),
                                                              parent("b", "pretrained-from")])]))
        XCTAssertEqual(summary(KeyedDiff.diff(a, b)), [
            "changed parents[1].relation aligned-from pretrained-from",
            "added parents[0].id - new",
            "added parents[0].relation - imported-from",
        ])
    }

    /// Long lists (past the exact alignment's size limit) are matched greedily in bounded time,
    /// still reporting only what differs.
    func testLongListsAreAlignedWithinBounds() {
        let x = (0..<3000).map { "k\($0)" }
        var y = x
        y.insert("new", at: 1500)
        y.remove(at: 10)
        let a = KeyedDiff.flatten(.object(["droppedKeys": strings(x)]))
        let b = KeyedDiff.flatten(.object(["droppedKeys": strings(y)]))
        XCTAssertEqual(summary(KeyedDiff.diff(a, b)), ["removed droppedKeys[10] k10 -", "added droppedKeys[1499] - new"])
        // The greedy path on its own (an exact limit of 1 forces it).
        let items = { (s: [String]) in KeyedDiff.elements(KeyedDiff.flatten(.object(["l": self.strings(s)])))[0].items }
        let pairs = KeyedDiff.commonSubsequence(items(["p", "a", "b", "c", "q"]), items(["p", "b", "a", "c", "q"]), exactLimit: 1)
        XCTAssertEqual(pairs.map { [$0.0, $0.1] }, [[0, 0], [1, 2], [3, 3], [4, 4]])
    }

    /// `source.droppedKeys` is a set by meaning (its order is the source file's dict order): 30,000
    /// dropped keys listed in another order, 5 of them gone and one new, diff as 5 removed and 1
    /// added, not as every key removed at one index and added at another. `source.rules` keeps its
    /// order: a rule moved is one removed and one added line.
    func testDroppedKeysCompareAsASetAndRulesInOrder() throws {
        let keys = (0..<30000).map { "state_dict.buf\($0)" }
        // A fixed shuffle: i -> 7919 i mod 30000 is a permutation (7919 is a prime not dividing 30000).
        var shuffled = (0..<30000).map { keys[($0 * 7919) % 30000] }
        let gone = Set(["state_dict.buf3", "state_dict.buf10", "state_dict.buf11", "state_dict.buf20000", "state_dict.buf29999"])
        shuffled.removeAll { gone.contains($0) }
        shuffled.insert("state_dict.bufNEW", at: 12345)
        func entry(_ dropped: [String], rules: [String]) -> Checkpoint {
            let source = Provenance.Source(fileName: "m.pth", sha256: "00", format: "pth", container: "zip", rules: rules, droppedKeys: dropped)
            return Checkpoint(components: ["backbone": ["conv1.weight": Tensor(float32: [1], shape: [1])]], architecture: nil,
                              provenance: Provenance(stage: "imported", source: source))
        }
        let diff = try CheckpointDiff(entry(keys, rules: ["r1", "r2", "r3"]), entry(shuffled, rules: ["r3", "r1", "r2"]))
        let removed = keys.enumerated().filter { gone.contains($0.element) }.map { "removed source.droppedKeys[\($0.offset)] \($0.element) -" }
        // Flattened keys are sorted, so droppedKeys come before rules on each side.
        XCTAssertEqual(summary(diff.provenance), removed + ["removed source.rules[2] r3 -",
                                                            "added source.droppedKeys[12345] - state_dict.bufNEW",
                                                            "added source.rules[0] - r3"])
    }
}
