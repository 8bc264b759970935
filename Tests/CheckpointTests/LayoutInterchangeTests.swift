@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// Expected resolutions of the layout fixtures (`Tests/Fixtures/layout/expected.json`, derived in
/// Python by tools/fixtures/make_layout_fixtures.py from the objects it saved).
enum LayoutExpectations {
    static func expected() throws -> [String: Any] { try Fixtures.jsonObject("layout/expected.json") }

    /// Sum of a tensor's values in float64, as `float(t.double().sum())` computes it.
    static func sum(_ t: Tensor?) -> Double { t?.doubles().reduce(0, +) ?? .nan }

    static func checkArchitecture(_ arch: Architecture, _ e: [String: Any], file: String) {
        XCTAssertEqual(arch.depth, e["depth"] as? Int, file)
        XCTAssertEqual(arch.block, e["block"] as? String, file)
        XCTAssertEqual(arch.width, e["width"] as? Int, file)
        XCTAssertEqual(arch.stem, e["stem"] as? String, file)
        XCTAssertEqual(arch.layers, e["layers"] as? [Int], file)
        let heads = e["heads"] as! [String: [String: Any]]
        XCTAssertEqual(Set(arch.heads.keys), Set(heads.keys), file)
        for (name, h) in heads {
            XCTAssertEqual(arch.heads[name], .init(kind: h["kind"] as! String, dims: h["dims"] as! [Int]), "\(file) \(name)")
        }
    }

    /// Checks a successful resolution against its expected.json entry.
    static func checkOK(_ file: String, _ r: Resolution, _ e: [String: Any]) {
        if let keyPath = e["keyPath"] as? String { XCTAssertEqual(r.keyPath, keyPath, file) }
        if e.keys.contains("strippedPrefix") { XCTAssertEqual(r.strippedPrefix, e["strippedPrefix"] as? String, file) }
        if let arch = e["architecture"] as? [String: Any] { checkArchitecture(r.architecture, arch, file: file) }
        if let components = e["components"] as? [String: [String]] {
            XCTAssertEqual(Set(r.components.keys), Set(components.keys), file)
            for (name, keys) in components {
                let ours = Array(r.components[name]?.keys ?? [])
                if name == "backbone" {
                    XCTAssertEqual(ours.filter { !$0.hasSuffix("num_batches_tracked") }, keys.filter { !$0.hasSuffix("num_batches_tracked") }, "\(file) \(name)")
                    XCTAssertEqual(Set(ours), Set(keys).union(ours.filter { $0.hasSuffix("num_batches_tracked") }), "\(file) \(name)")
                } else {
                    XCTAssertEqual(ours, keys, "\(file) \(name)")
                }
            }
        }
        if let sums = e["checksums"] as? [String: Double] {
            for (path, value) in sums {
                let parts = path.split(separator: "/", maxSplits: 1).map(String.init)
                XCTAssertEqual(sum(r.components[parts[0]]?[parts[1]]), value, accuracy: 1e-9 * max(1, abs(value)), "\(file) \(path)")
            }
        }
        if let filled = e["filled"] as? Int { XCTAssertEqual(r.filledKeys.count, filled, file) }
        if let dropped = e["dropped"] as? [String] { XCTAssertEqual(r.droppedKeys.sorted(), dropped, file) }
    }
}

/// Layout resolution of flat dicts written by other libraries: `safetensors.torch.save_file` (names
/// sorted) and `numpy.savez`.
final class LayoutInterchangeTests: XCTestCase {
    func testSafetensorsWithBackboneAndProjectorPrefixes() throws {
        let e = try LayoutExpectations.expected()["simclr.safetensors"] as! [String: Any]
        let doc = try SafetensorsFile.read(Fixtures.url("layout/simclr.safetensors"))
        let r = try LayoutResolver.resolve(doc)
        LayoutExpectations.checkOK("simclr.safetensors", r, e)
        XCTAssertEqual(r.aliases, [:])
        XCTAssertEqual(r.locations, [])
        let source = r.source(fileName: "simclr.safetensors", sha256: "00", document: doc)
        XCTAssertEqual(source.metadata, ["format": "pt"])
        XCTAssertEqual(source.strippedPrefix, "backbone.")
        XCTAssertEqual(source.format, "safetensors")
        let ckpt = r.checkpoint(fileName: "simclr.safetensors", sha256: "00", document: doc)
        XCTAssertEqual(ckpt.provenance.stage, "imported")
        XCTAssertEqual(ckpt.provenance.source, source)
        XCTAssertEqual(Array(ckpt.components.keys), ["backbone", "classifier", "projector"])
        // Backbone plus classifier flatten to the torchvision state dict; the projector keeps its prefix.
        let flat = ckpt.flatStateDict()
        XCTAssertEqual(Set(flat.keys).count, 122 + 9)
        XCTAssertNotNil(flat["projector.3.bias"])
        XCTAssertNotNil(flat["fc.weight"])

        // inspect --json: candidates carry their selector and score.
        let json = try JSONEncoder().encode(r.candidates)
        let decoded = try JSONSerialization.jsonObject(with: json) as! [[String: Any]]
        XCTAssertEqual(decoded.first?["selector"] as? String, "backbone")
        XCTAssertEqual(decoded.first?["score"] as? Double, 1)
        XCTAssertEqual(decoded.first?["matched"] as? Int, 120)
    }

    func testNpzWithModulePrefixAndNoCounters() throws {
        let e = try LayoutExpectations.expected()["r18_module_no_nbt.npz"] as! [String: Any]
        let r = try LayoutResolver.resolve(NumPyArchive.read(Fixtures.url("layout/r18_module_no_nbt.npz")))
        LayoutExpectations.checkOK("r18_module_no_nbt.npz", r, e)
        XCTAssertTrue(r.filledKeys.allSatisfy { $0.hasSuffix("num_batches_tracked") })
        XCTAssertEqual(Array(r.components["backbone"]!.keys), try LayoutTrees.backboneKeys(depth: 18))
    }
}
