@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// Layouts (key prefixes, heads, BN buffers, branches, aliases, casts), EMA, training and MoCo checkpoints, through real `torch.save` files
/// (Tests/Fixtures/layout, written by tools/fixtures/make_layout_fixtures.py). Expected keys, counts,
/// prefixes, head sizes and value sums come from that script's `expected.json`, derived in Python.
final class LayoutFixtureTests: XCTestCase {
    static func expected() throws -> [String: Any] { try LayoutExpectations.expected() }

    static func resolve(_ file: String, _ options: LayoutOptions = LayoutOptions()) throws -> Resolution {
        try LayoutResolver.resolve(PyTorchFile.read(Fixtures.url("layout/" + file)), options: options)
    }

    static func sum(_ t: Tensor?) -> Double { LayoutExpectations.sum(t) }
    func checkOK(_ file: String, _ r: Resolution, _ e: [String: Any]) { LayoutExpectations.checkOK(file, r, e) }
    func checkArchitecture(_ arch: Architecture, _ e: [String: Any], file: String) {
        LayoutExpectations.checkArchitecture(arch, e, file: file)
    }

    func testEveryOKFixtureResolvesAsPythonSays() throws {
        let all = try Self.expected()
        var checked = 0
        for (file, value) in all where file.hasSuffix(".pth") {
            let e = value as! [String: Any]
            guard e["result"] as? String == "ok", e["select"] == nil else { continue }
            let r = try Self.resolve(file)
            checkOK(file, r, e)
            checked += 1
        }
        XCTAssertEqual(checked, 14)
    }

    // C1 variant: only some keys have `module.`.
    func testC1PartialPrefixIsRefusedWithCounts() throws {
        let e = try Self.expected()["c1_module_partial.pth"] as! [String: Any]
        XCTAssertThrowsError(try Self.resolve("c1_module_partial.pth")) { error in
            guard case .ambiguous(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
            let with = e["withPrefix"] as! Int, without = e["withoutPrefix"] as! Int
            XCTAssertTrue(m.hasPrefix("partial prefix 'module.' in the root dict: \(with) of \(with + without) keys start with it"), m)
            XCTAssertTrue(m.contains("and \(without) do not (\(e["firstWithout"] as! String), "), m)
        }
    }

    // C1 variant: `head.module.weight` keeps its inner `module.`.
    func testC1InnerModuleIsNotRewritten() throws {
        let r = try Self.resolve("c1_head_module.pth")
        XCTAssertEqual(Array(r.components["head"]!.keys), ["module.weight", "module.bias"])
        XCTAssertTrue(r.warnings.contains { $0.hasPrefix("component 'head' (2 tensors from 'module.head.*')") }, "\(r.warnings)")
    }

    // C2: the rule text names the count and the prefix.
    func testC2RuleText() throws {
        let e = try Self.expected()["c2_byol.pth"] as! [String: Any]
        let r = try Self.resolve("c2_byol.pth")
        XCTAssertTrue(r.rules.contains("matched \(e["matched"] as! Int)/\(e["total"] as! Int) backbone keys of resnet50-w1-small by rule 'prefix encoder.'"), "\(r.rules)")
        XCTAssertEqual(e["total"] as? Int, 318)
    }

    // C3: filled counters and what _metadata says.
    func testC3NumBatchesTracked() throws {
        let all = try Self.expected()
        for file in ["c3_full.pth", "c3_no_nbt.pth", "c3_bn_v1.pth"] {
            let e = all[file] as! [String: Any]
            let r = try Self.resolve(file)
            XCTAssertEqual(r.filledKeys, e["filledKeys"] as? [String], file)
            XCTAssertEqual(r.components["backbone"]!.count, 318, file)
            for (key, value) in e["nbtValues"] as! [String: Int] {
                XCTAssertEqual(r.components["backbone"]![key], Tensor(int64: Int64(value)), "\(file) \(key)")
            }
            let note = r.rules.first { $0.hasPrefix("filled ") }
            switch e["bnVersion"] as? Int {
            case 1?: XCTAssertTrue(note?.contains("_metadata says BatchNorm version 1 for 53") == true, "\(file): \(note ?? "none")")
            case 2?: XCTAssertTrue(note?.contains("_metadata says BatchNorm version 2 for 53") == true, "\(file): \(note ?? "none")")
            default: XCTAssertNil(note, file)
            }
        }
    }

    // C4: teacher and student in one file (ambiguous until selected) and in two files; the branch and
    // key path are recorded, and the values are those of the chosen branch.
    func testC4TeacherAndStudent() throws {
        let all = try Self.expected()
        let e = all["c4_teacher_student.pth"] as! [String: Any]
        XCTAssertThrowsError(try Self.resolve("c4_teacher_student.pth")) { error in
            guard case .ambiguous(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
            let n = (e["backbone"] as! [String]).count
            for c in e["candidates"] as! [String] { XCTAssertTrue(m.contains("'\(c)' \(n)/\(n)"), m) }
        }
        let select = e["select"] as! [String: [String: Any]]
        var backbones: [String: StateDict] = [:]
        for (branch, s) in select {
            let r = try Self.resolve("c4_teacher_student.pth", .init(select: branch))
            XCTAssertEqual(r.branch, branch)
            XCTAssertEqual(r.keyPath, s["keyPath"] as? String)
            XCTAssertEqual(r.strippedPrefix, s["strippedPrefix"] as? String)
            XCTAssertEqual(Self.sum(r.components["backbone"]!["conv1.weight"]), s["conv1"] as! Double, accuracy: 1e-9)
            XCTAssertEqual(Array(r.components["backbone"]!.keys), e["backbone"] as? [String])
            checkArchitecture(r.architecture, e["architecture"] as! [String: Any], file: branch)
            XCTAssertTrue(r.rules.contains("branch '\(branch)' (selector '\(r.selector)')"), "\(r.rules)")

            let single = try Self.resolve("c4_\(branch).pth")
            checkOK("c4_\(branch).pth", single, all["c4_\(branch).pth"] as! [String: Any])
            XCTAssertEqual(single.branch, branch)
            XCTAssertEqual(single.components["backbone"], r.components["backbone"], "same tensors from one file or two")
            backbones[branch] = r.components["backbone"]!
        }
        // The branches differ by the amounts torch computed (relative L2 change per tensor).
        for (key, value) in all["c4_relative_change"] as! [String: Double] {
            let t = backbones["teacher"]![key]!.doubles(), s = backbones["student"]![key]!.doubles()
            let change = zip(t, s).map { ($1 - $0) * ($1 - $0) }.reduce(0, +).squareRoot() / t.map { $0 * $0 }.reduce(0, +).squareRoot()
            XCTAssertEqual(change, value, accuracy: 1e-6 * value, key)
        }
    }

    func testEMACheckpointNeedsSelect() throws {
        let e = try Self.expected()["ema.pth"] as! [String: Any]
        XCTAssertThrowsError(try Self.resolve("ema.pth")) { error in
            guard case .ambiguous(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("--select"), m)
        }
        for (sel, s) in e["select"] as! [String: [String: Any]] {
            let r = try Self.resolve("ema.pth", .init(select: sel))
            XCTAssertEqual(r.keyPath, sel)
            XCTAssertEqual(Self.sum(r.components["backbone"]!["conv1.weight"]), s["conv1"] as! Double, accuracy: 1e-9)
            XCTAssertEqual(r.droppedKeys.sorted(), s["dropped"] as? [String])
        }
    }

    func testTrainingCheckpointDropsOptimizerState() throws {
        let e = try Self.expected()["train.pth"] as! [String: Any]
        let r = try Self.resolve("train.pth")
        checkOK("train.pth", r, e)
        XCTAssertTrue(r.rules.contains("dropped optimizer state at 'optimizer'"), "\(r.rules)")
        XCTAssertEqual(Self.sum(r.components["backbone"]!["conv1.weight"]), e["conv1"] as! Double, accuracy: 1e-9)
    }

    /// The query encoder is chosen by itself (the key encoder is its momentum copy), as `--select` picks it.
    func testMoCoQueryEncoderIsPreferred() throws {
        let e = try Self.expected()["moco.pth"] as! [String: Any]
        let auto = try Self.resolve("moco.pth")
        let chosen = e["select"] as! String
        let copy = (e["candidates"] as! [String]).filter { $0 != chosen }
        XCTAssertEqual(copy.count, 1)
        XCTAssertTrue(auto.rules.contains { $0.hasPrefix("chose '\(chosen)' over its momentum copy '\(copy[0])' (MoCo:") }, "\(auto.rules)")
        for r in [auto, try Self.resolve("moco.pth", .init(select: chosen))] {
            XCTAssertEqual(r.selector, chosen)
            XCTAssertEqual(r.strippedPrefix, e["strippedPrefix"] as? String)
            XCTAssertEqual(r.droppedKeys.sorted(), e["droppedInDict"] as? [String])
            XCTAssertEqual(Self.sum(r.components["backbone"]!["conv1.weight"]), e["conv1"] as! Double, accuracy: 1e-9)
        }
    }

    // C6: tied tensors are recorded as aliases.
    func testAliasesFromSharedStorage() throws {
        let e = try Self.expected()["aliases.pth"] as! [String: Any]
        XCTAssertEqual(try Self.resolve("aliases.pth").aliases, e["aliases"] as? [String: String])
        XCTAssertEqual(try Self.resolve("c3_full.pth").aliases, [:])
    }

    // C15: an R50 stored in float16 with a variance of 1e-8 and 7e4 (0 and inf once in float16).
    func testC15HalfStoredVarianceIsWarned() throws {
        let e = try Self.expected()["c15_f16.pth"] as! [String: Any]
        let r = try Self.resolve("c15_f16.pth")
        XCTAssertEqual(r.components["backbone"]!["conv1.weight"]!.dtype, .float16)
        let zeros = e["runningVarZeros"] as! [String: Int], infs = e["runningVarInfs"] as! [String: Int]
        XCTAssertEqual(r.warnings, zeros.keys.map { key in
            "backbone \(key): \(zeros[key]!) zero, \(infs[key]!) inf of 4 values (degenerate BatchNorm statistics; stored as float16, which cannot hold very small or large variances)"
        })
        // Casting it up to float32 keeps the values (exact widening) and warns of nothing.
        let (f32, warnings) = try Precision.cast(r.components["backbone"]!, to: .float32, castBuffers: true)
        XCTAssertEqual(warnings, [])
        XCTAssertEqual(f32["layer1.0.bn3.running_var"]!.floats()[0...1], [0, .infinity])
    }

    // C16: device tags of the storages are collected for provenance.
    func testC16LocationsAreRecorded() throws {
        let e = try Self.expected()["c16_cuda.pth"] as! [String: Any]
        let r = try Self.resolve("c16_cuda.pth")
        XCTAssertEqual(r.locations, e["locations"] as? [String])
    }

    /// The PyTorch reader's own training checkpoint fixture (tools/fixtures/make_pth_fixtures.py):
    /// everything at the top level except `state_dict` is dropped and listed, including loose tensors.
    func testTrainingCheckpointOfThePthFixtures() throws {
        let values = try Fixtures.jsonObject("pth/training_ckpt.expected.json")["values"] as! [String: Any]
        let topLevel = Set(values.keys.map { String($0.split(separator: ".")[0]) })
        let sdKeys = values.keys.filter { $0.hasPrefix("state_dict.") }.map { String($0.dropFirst("state_dict.".count)) }
        let r = try LayoutResolver.resolve(PyTorchFile.read(Fixtures.url("pth/training_ckpt.pth")))
        XCTAssertEqual(r.keyPath, "state_dict")
        XCTAssertEqual(Set(r.droppedKeys), topLevel.subtracting(["state_dict"]))
        XCTAssertEqual(Set(r.components["backbone"]!.keys).union(r.components["classifier"]?.keys ?? []), Set(sdKeys))
        XCTAssertTrue(r.rules.contains("dropped optimizer state at 'optimizer'"), "\(r.rules)")
    }

    /// The legacy (pre-1.6) container resolves like the zip one (the legacy file of the PyTorch reader tests).
    func testLegacyContainerResolvesLikeZip() throws {
        let zip = try LayoutResolver.resolve(PyTorchFile.read(Fixtures.url("pth/resnet18_w2.pth")))
        let legacyDoc = try PyTorchFile.read(Fixtures.url("pth/resnet18_w2_legacy.pth"))
        XCTAssertEqual(legacyDoc.container, "pytorch-legacy")
        let legacy = try LayoutResolver.resolve(legacyDoc)
        XCTAssertEqual(legacy.components, zip.components)
        XCTAssertEqual(legacy.architecture, zip.architecture)
        XCTAssertEqual(legacy.architecture.label, "resnet18-w2-small")
    }

    func testInspectListsEveryCandidateWithScores() throws {
        let doc = try PyTorchFile.read(Fixtures.url("layout/c4_teacher_student.pth"))
        let cs = LayoutResolver.candidates(doc)
        XCTAssertEqual(cs.map(\.selector).sorted(), ["student.module.backbone", "teacher.backbone"])
        XCTAssertTrue(cs.allSatisfy { $0.complete && $0.matched == 120 && $0.total == 120 && $0.score == 1 }, "\(cs.map(\.line))")
        XCTAssertEqual(doc.metadata["byteorder"], "little")
    }
}
