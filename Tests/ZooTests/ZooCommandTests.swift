import Checkpoint
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// `bissl lineage`, `rm`, `show`, `diff`, `verify`, `gc` through the built binary.
final class ZooCommandTests: XCTestCase {
    private func run(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try BisslBinary.run(args)
        XCTAssertEqual(r.status, 0, "bissl \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    func testLineageThroughARemovedParent() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let pre = ZooTestSupport.checkpoint(seed: 300, stage: "pretext", method: "simclr")
        let preID = ContentID.compute(pre)
        let aligned = ZooTestSupport.checkpoint(seed: 301, stage: "bissl", method: "bissl", parents: [.init(id: preID, relation: "aligned-from")])
        let alignedID = ContentID.compute(aligned)
        let ft = ZooTestSupport.checkpoint(seed: 302, stage: "finetune", parents: [
            .init(id: alignedID, relation: "finetuned-from", note: "classifier re-initialised 1000 -> 10")])
        let ftID = ContentID.compute(ft)
        for (c, name) in [(pre, "pre"), (aligned, "aligned"), (ft, "ft")] {
            let h5 = try ZooTestSupport.writeH5(c, to: dir.appendingPathComponent("\(name).h5"))
            _ = try run(["import", h5.path, "--zoo", zoo, "--name", name])
        }
        let text = try run(["lineage", "ft", "--up", "--zoo", zoo])
        XCTAssertTrue(text.contains(String(alignedID.prefix(12))) && text.contains(String(preID.prefix(12))), text)
        XCTAssertTrue(text.contains("finetuned-from: classifier re-initialised 1000 -> 10"), text)

        let refused = try BisslBinary.run(["rm", "aligned", "--zoo", zoo])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.stderr, "error: entry \(alignedID.prefix(12)) has 1 descendant (\(ftID.prefix(12)) (ft)); bissl rm --force removes it and keeps its provenance as a tombstone\n")
        XCTAssertTrue(try run(["rm", "aligned", "--force", "--zoo", zoo]).contains("its 1 descendant keeps its record in tombstones/\(alignedID).json"))

        let json = try run(["lineage", "ft", "--up", "--format", "json", "--zoo", zoo])
        let graph = try JSONDecoder().decode(LineageGraph.self, from: Data(json.utf8))
        XCTAssertEqual(graph.root, ftID)
        XCTAssertEqual(Set(graph.nodes.map(\.id)), [ftID, alignedID, preID])
        XCTAssertEqual(graph.nodes.first { $0.id == alignedID }?.removed, true)
        XCTAssertEqual(graph.nodes.first { $0.id == alignedID }?.name, "aligned")
        XCTAssertEqual(Set(graph.edges.map { "\($0.child)>\($0.parent):\($0.relation)" }),
                       ["\(ftID)>\(alignedID):finetuned-from", "\(alignedID)>\(preID):aligned-from"])
        let after = try run(["lineage", "ft", "--zoo", zoo])
        XCTAssertTrue(after.contains("(removed)"), after)
        let dot = try run(["lineage", "pre", "--down", "--format", "dot", "--zoo", zoo])
        XCTAssertTrue(dot.hasPrefix("digraph"), dot)
        let mermaid = try run(["lineage", "pre", "--down", "--format", "mermaid", "--zoo", zoo])
        XCTAssertTrue(mermaid.hasPrefix("graph") || mermaid.hasPrefix("flowchart"), mermaid)

        let show = try run(["show", "ft", "--zoo", zoo])
        XCTAssertTrue(show.contains("finetuned-from \(alignedID.prefix(12)) (removed, was bissl 'aligned'): classifier re-initialised 1000 -> 10"), show)
        XCTAssertTrue(try run(["verify", "--zoo", zoo]).contains("checked 2 entries: 0 problems, 0 warnings, 0 leftovers"))
    }

    /// Through the zoo: two imports of torch-saved R50-named dicts differing in one
    /// `running_var`; the expected numbers are torch's (Tests/Fixtures/diff/expected.json).
    func testDiffOfTwoEntriesNamesTheOneBNStatistic() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        _ = try run(["import", ZooTestSupport.fixture("diff/c18_a.pth").path, "--zoo", zoo, "--name", "a"])
        _ = try run(["import", ZooTestSupport.fixture("diff/c18_b.pth").path, "--zoo", zoo, "--name", "b"])
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: ZooTestSupport.fixture("diff/expected.json"))) as! [String: Any]
        let c18 = ((expected["c18"] as! [String: Any])["tensors"] as! [String: [String: Any]])["layer3.0.bn2.running_var"]!
        let out = try run(["diff", "a", "b", "--json", "--zoo", zoo])
        let diff = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        let sections = diff["sections"] as! [[String: Any]]
        let listed = sections.flatMap { s in (s["tensors"] as! [[String: Any]]).map { (s["section"] as! String, $0) } }
        XCTAssertEqual(listed.map(\.0), ["bn_statistics"])
        let tensor = listed[0].1
        XCTAssertEqual(tensor["name"] as? String, "layer3.0.bn2.running_var")
        let delta = tensor["delta"] as! [String: Any]
        XCTAssertEqual(delta["l2"] as! Double, c18["l2"] as! Double, accuracy: 1e-6)
        XCTAssertEqual(delta["relative"] as! Double, c18["relative"] as! Double, accuracy: 1e-6)
        XCTAssertEqual(delta["maxAbs"] as! Double, c18["max_abs"] as! Double, accuracy: 1e-6)
        let text = try run(["diff", "a", "b", "--zoo", zoo])
        XCTAssertTrue(text.contains("layer3.0.bn2.running_var"), text)
    }

    /// A checkpoint whose BatchNorm weights are all zero imports, and verify/show warn.
    func testDegenerateBatchNormWarnsOnImportShowAndVerify() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let h5 = try ZooTestSupport.writeH5(ZooTestSupport.checkpoint(seed: 303, zeroBNWeight: true), to: dir.appendingPathComponent("c5.h5"))
        let warning = "backbone: 1 BatchNorm weight tensor is all zero (bn1.weight): degenerate BatchNorm, constant features"
        XCTAssertTrue(try run(["import", h5.path, "--zoo", zoo, "--name", "c5"]).contains("warning: " + warning))
        XCTAssertTrue(try run(["show", "c5", "--zoo", zoo]).contains("warning: " + warning))
        let verify = try run(["verify", "--zoo", zoo])
        XCTAssertTrue(verify.contains("warning: ") && verify.contains(warning), verify)
        XCTAssertTrue(verify.contains("0 problems, 1 warning, 0 leftovers"), verify)
    }

    /// Deleting the catalog loses nothing: verify --reindex rebuilds entries, names, tags and lineage
    /// from the files; gc then finds nothing to do.
    func testReindexAndGCThroughTheCLI() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        let parent = ZooTestSupport.checkpoint(seed: 310, stage: "pretext", method: "byol")
        let child = ZooTestSupport.checkpoint(seed: 311, stage: "finetune", parents: [.init(id: ContentID.compute(parent), relation: "finetuned-from")],
                                              metrics: ["top1": 0.5])
        for (c, name) in [(parent, "p"), (child, "c")] {
            _ = try run(["import", try ZooTestSupport.writeH5(c, to: dir.appendingPathComponent("\(name).h5")).path, "--zoo", zoo, "--name", name])
        }
        _ = try run(["tag", "c", "best", "--zoo", zoo])
        let before = try run(["list", "--json", "--zoo", zoo])
        for suffix in ["", "-wal", "-shm"] { unlink(zoo + "/catalog.sqlite" + suffix) }
        let out = try run(["verify", "--reindex", "--json", "--zoo", zoo])
        let report = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        let reindex = report["reindex"] as! [String: Any]
        XCTAssertEqual(reindex["entries"] as? Int, 2)
        XCTAssertEqual(reindex["labels"] as? Int, 3)
        XCTAssertEqual(((report["report"] as! [String: Any])["findings"] as? [Any])?.count, 0)
        XCTAssertEqual(try run(["list", "--json", "--zoo", zoo]), before)
        XCTAssertTrue(try run(["lineage", "best", "--up", "--zoo", zoo]).contains(String(ContentID.compute(parent).prefix(12))))
        XCTAssertTrue(try run(["gc", "--zoo", zoo]).hasSuffix("removed 0 files, 0 B of disk\n"))
    }
}
