@testable import Checkpoint
import Foundation
import HDF5
import XCTest
import TestSupport

/// Tied weights: two names on one storage with the same view. Expected aliases come from what torch
/// recorded in the fixtures' `.expected.json` (storage group, offset, shape, stride), not from our reader.
final class AliasTests: XCTestCase {
    /// Names grouped by torch's own view record (storage group, offset, shape, stride, dtype) in the
    /// expected JSON: every later name of a group -> the first in `order`.
    private func torchAliases(_ expectedJSON: String, order: [String]) throws -> [String: String] {
        let json = try Fixtures.jsonObject(expectedJSON)
        let values = json["values"] as! [String: [String: Any]]
        var first: [String: String] = [:]
        var aliases: [String: String] = [:]
        for name in order {
            let v = values[name]!
            let view = "\(v["storage_group"]!)|\(v["storage_offset"]!)|\(v["shape"]!)|\(v["stride"]!)|\(v["dtype"]!)"
            if let f = first[view] { aliases[name] = f } else { first[view] = name }
        }
        return aliases
    }

    private func loadC6() throws -> Checkpoint {
        try Interchange.load(Fixtures.url("pth/c6_alias.pth"), options: LayoutOptions(), allowPlainTensors: true, commandLine: ["test"])
    }

    private static let c6Order = ["encoder.weight", "decoder.weight", "base", "window", "matrix", "transposed", "strided"]

    func testImportRecordsExactlyTheSameViewNamesAsAliases() throws {
        let expected = try torchAliases("pth/c6_alias.expected.json", order: Self.c6Order)
        XCTAssertEqual(expected, ["decoder.weight": "encoder.weight"])   // window/matrix/strided share storage, not the view
        let ckpt = try loadC6()
        XCTAssertEqual(Array(ckpt.components["tensors"]!.keys), Self.c6Order)
        XCTAssertEqual(ckpt.aliases, expected)
        XCTAssertEqual(ckpt.provenance.source?.aliases, expected)
        XCTAssertEqual(ckpt.sharedAliases(in: ckpt.flatStateDict()), expected)

        // A ResNet whose two BN running means are tied: flat (torchvision) names, backbone component.
        let layout = try Interchange.load(Fixtures.url("layout/aliases.pth"), options: LayoutOptions(), commandLine: ["test"])
        XCTAssertEqual(layout.aliases, ["layer1.0.bn2.running_mean": "layer1.0.bn1.running_mean"])
        XCTAssertEqual(layout.provenance.source?.aliases, layout.aliases)
    }

    func testH5StoresAnAliasOnceAsAHardLinkAndReadsItBack() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = try loadC6()
        let url = dir.appendingPathComponent("c6.h5")
        try CheckpointFile.write(ckpt, to: url)

        let file = try HDF5.File.open(url.path)
        let group = try file.openGroup("tensors/tensors")
        XCTAssertEqual(try group.childCount(), 7)
        let enc = try group.objectAddress(of: "encoder.weight")
        XCTAssertEqual(try group.objectAddress(of: "decoder.weight"), enc)
        XCTAssertEqual(try group.openDataset("decoder.weight").objectAddress(), enc)
        let others = try ["base", "window", "matrix", "transposed", "strided"].map { try group.objectAddress(of: $0) }
        XCTAssertEqual(Set(others + [enc]).count, 6)

        let back = try CheckpointFile.read(url, verifyContentID: true)
        XCTAssertEqual(back.aliases, ["decoder.weight": "encoder.weight"])
        XCTAssertEqual(back.components["tensors"]!["decoder.weight"], ckpt.components["tensors"]!["encoder.weight"])
        XCTAssertEqual(back, ckpt)
        // The content id covers names and bytes: the same with or without sharing.
        var unshared = ckpt
        unshared.aliases = [:]
        XCTAssertEqual(try CheckpointFile.storedContentID(url), ContentID.compute(unshared))
        XCTAssertNotEqual(back, unshared)   // same tensors, different sharing
    }

    /// A 64 KiB tensor under two names in two components: the aliased file is smaller by at least
    /// the tensor's bytes; names are flat (`projector.0.weight`).
    func testH5FileHoldsTheBytesOnceAcrossComponents() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let big = Tensor(float32: (0..<16384).map { Float($0) * 0.25 }, shape: [128, 128])
        let small = Tensor(float32: [1, 2, 3], shape: [3])
        var ckpt = Checkpoint(components: ["tensors": ["w": big, "b": small], "projector": ["0.weight": big]],
                              architecture: nil, provenance: Provenance(stage: "imported"),
                              aliases: ["projector.0.weight": "w"])
        let linked = dir.appendingPathComponent("linked.h5")
        try CheckpointFile.write(ckpt, to: linked)
        let copied = dir.appendingPathComponent("copied.h5")
        ckpt.aliases = [:]
        try CheckpointFile.write(ckpt, to: copied)
        let size = { (u: URL) in try FileManager.default.attributesOfItem(atPath: u.path)[.size] as! Int }
        XCTAssertGreaterThanOrEqual(try size(copied) - size(linked), 16384 * 4)
        XCTAssertLessThan(try size(linked), 16384 * 4 * 2)

        let file = try HDF5.File.open(linked.path)
        XCTAssertEqual(try file.openGroup("tensors/projector").objectAddress(of: "0.weight"),
                       try file.openGroup("tensors/tensors").objectAddress(of: "w"))
        let back = try CheckpointFile.read(linked)
        XCTAssertEqual(back.aliases, ["projector.0.weight": "w"])
        XCTAssertEqual(back.components["projector"]!["0.weight"], big)
        XCTAssertEqual(try CheckpointFile.read(copied).aliases, [:])
    }

    func testStaleAndRedundantAliasesAreIgnored() throws {
        let a = Tensor(float32: [1, 2], shape: [2])
        let b = Tensor(float32: [1, 3], shape: [2])
        let empty = try Tensor(dtype: .float32, shape: [2, 0], data: Data())
        let ckpt = Checkpoint(components: ["tensors": ["a": a, "b": b, "c": a, "d": a, "e": empty, "f": empty]],
                              architecture: nil, provenance: Provenance(stage: "imported"),
                              aliases: ["b": "a", "a": "c", "d": "c", "f": "e", "g": "a"])
        // b differs from a (stale), g does not exist, empty tensors never share (C13); a, c, d form one group.
        XCTAssertEqual(ckpt.sharedAliases(in: ckpt.flatStateDict()), ["c": "a", "d": "a"])
        XCTAssertEqual(ckpt.sharedAliases(in: StateDict(uniqueKeysWithValues: [("c", a), ("d", a)])), ["d": "c"])
        var canonical = ckpt
        canonical.aliases = ["c": "a", "d": "a"]
        XCTAssertEqual(ckpt, canonical)

        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("stale.h5")
        try CheckpointFile.write(ckpt, to: url)
        let back = try CheckpointFile.read(url)
        XCTAssertEqual(back.aliases, ["c": "a", "d": "a"])
        XCTAssertEqual(back.components["tensors"]!["b"], b)
        XCTAssertEqual(back, ckpt)
    }

    func testPthWriterSharesOneStorageRecordZipAndLegacy() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = try loadC6()
        let flat = ckpt.flatStateDict()
        for legacy in [false, true] {
            let url = dir.appendingPathComponent(legacy ? "legacy.pth" : "zip.pth")
            try PyTorchFile.write(flat, to: url, legacy: legacy, aliases: ["decoder.weight": "encoder.weight"])
            let doc = try PyTorchFile.read(url)
            let tensors = Dictionary(uniqueKeysWithValues: doc.root.tensorPaths().map { ($0.path, $0.tensor) })
            XCTAssertEqual(tensors["decoder.weight"]?.storageKey, tensors["encoder.weight"]?.storageKey)
            XCTAssertEqual(Set(tensors.values.compactMap(\.storageKey)).count, 6, "legacy \(legacy)")
            XCTAssertEqual(tensors["decoder.weight"]?.tensor, flat["encoder.weight"])
            for (k, t) in flat { XCTAssertEqual(tensors[k]?.tensor, t, k) }
            // The round trip finds the alias again from the shared storage.
            let again = try Interchange.load(url, options: LayoutOptions(), allowPlainTensors: true, commandLine: ["test"])
            XCTAssertEqual(again.aliases, ["decoder.weight": "encoder.weight"])
            if !legacy {
                let records = try Data(contentsOf: url)
                XCTAssertNotNil(records.range(of: Data("zip/data/5".utf8)))
                XCTAssertNil(records.range(of: Data("zip/data/6".utf8)))
            }
        }
    }

    func testPthWriterRefusesAliasesItCannotHonour() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let sd: StateDict = ["a": Tensor(float32: [1, 2], shape: [2]), "b": Tensor(float32: [1, 3], shape: [2])]
        let url = dir.appendingPathComponent("x.pth")
        for aliases in [["b": "a"], ["c": "a"], ["a": "b", "b": "a"]] {
            XCTAssertThrowsError(try PyTorchFile.write(sd, to: url, aliases: aliases)) { error in
                guard case CheckpointError.invalid(let message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.hasPrefix("cannot write \(url.path): "), message)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        }
    }

    func testExportsThatCannotShareWriteCopiesAndSaySo() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = try loadC6()
        let note = "1 aliased tensor (decoder.weight = encoder.weight) written as a separate copy: %@ cannot share storage"
        for (format, ext) in [(InterchangeFormat.safetensors, "safetensors"), (.npz, "npz")] {
            let url = dir.appendingPathComponent("c6.\(ext)")
            let notes = try Interchange.write(ckpt, to: url, format: format)
            XCTAssertEqual(notes, [String(format: note, ext)])
            let doc = format == .npz ? try NumPyArchive.read(url) : try SafetensorsFile.read(url)
            let tensors = Dictionary(uniqueKeysWithValues: doc.root.tensorPaths().map { ($0.path, $0.tensor.tensor) })
            XCTAssertEqual(tensors["decoder.weight"], ckpt.components["tensors"]!["encoder.weight"])
            XCTAssertEqual(tensors["encoder.weight"], ckpt.components["tensors"]!["encoder.weight"])
        }
        XCTAssertEqual(try Interchange.write(ckpt, to: dir.appendingPathComponent("c6.pth"), format: .pth), [])
        XCTAssertEqual(try Interchange.write(ckpt, to: dir.appendingPathComponent("c6.h5"), format: .h5), [])
        var plain = ckpt
        plain.aliases = [:]
        XCTAssertEqual(try Interchange.write(plain, to: dir.appendingPathComponent("p.safetensors"), format: .safetensors), [])

        let two = Checkpoint(components: ["tensors": ["a": Tensor(float32: [1], shape: [1]), "b": Tensor(float32: [1], shape: [1]),
                                                      "c": Tensor(float32: [1], shape: [1])]],
                             architecture: nil, provenance: Provenance(stage: "imported"), aliases: ["b": "a", "c": "b"])
        XCTAssertEqual(try Interchange.write(two, to: dir.appendingPathComponent("two.npz"), format: .npz),
                       ["2 aliased tensors (b = a, c = a) written as separate copies: npz cannot share storage"])
    }
}
