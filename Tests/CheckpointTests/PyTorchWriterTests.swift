@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// PyTorchFile.write: the archive layout torch 2.x writes, read back by our reader and by real
/// torch (`torch.load(weights_only=True)` + `load_state_dict(strict=True)`, bit-identical tensors,
/// zipfile CRC check) when python3 with torch is installed.
final class PyTorchWriterTests: XCTestCase {
    /// The top-level tensors of a decoded state dict, in order (`_metadata` left out).

    private func fixtureStateDict(_ name: String) throws -> StateDict {
        try stateDict(PyTorchFile.read(Fixtures.url("pth/\(name)")), skippingOthers: true)
    }

    /// Tensors torch cannot infer from a ResNet: empty, 0-dim, every dtype.
    private func oddTensors() throws -> StateDict {
        var sd = StateDict()
        sd["empty"] = try Tensor(dtype: .float32, shape: [2, 0], data: Data())
        sd["scalar"] = Tensor(int64: -42)
        sd["flags"] = try Tensor(dtype: .bool, shape: [3], data: Data([1, 0, 1]))
        sd["bf16"] = try Tensor(dtype: .bfloat16, shape: [2], data: Data([0x80, 0x3F, 0x20, 0xC0]))   // 1.0, -2.5
        sd["half"] = try Tensor(dtype: .float16, shape: [1, 2], data: Data([0x00, 0x3C, 0x00, 0xC0]))  // 1.0, -2.0
        return sd
    }

    func testZipLayoutIsWhatTorchWrites() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let sd = try fixtureStateDict("resnet18_w2.pth")
        let url = dir.appendingPathComponent("my-model.v1.pth")
        try PyTorchFile.write(sd, to: url)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["my-model.v1.pth"])

        let archive = try ZipArchive(url: url)
        let names = archive.entries.map(\.name)
        let expected = ["data.pkl", ".format_version", ".storage_alignment", "byteorder"]
            + (0..<sd.count).map { "data/\($0)" } + ["version", ".data/serialization_id"]
        XCTAssertEqual(names, expected.map { "my-model.v1/" + $0 })
        func text(_ n: String) throws -> String { String(decoding: try archive.data(for: archive.entry(named: "my-model.v1/" + n)!), as: UTF8.self) }
        XCTAssertEqual(try text(".format_version"), "1")
        XCTAssertEqual(try text(".storage_alignment"), "64")
        XCTAssertEqual(try text("byteorder"), "little")
        XCTAssertEqual(try text("version"), "3\n")
        XCTAssertTrue(try text(".data/serialization_id").allSatisfy(\.isNumber))
        XCTAssertEqual(try text(".data/serialization_id").count, 40)
        for e in archive.entries {
            XCTAssertEqual(e.method, 0, e.name)
            XCTAssertEqual(try archive.dataOffset(for: e) % 64, 0, e.name)
        }
        // The pickle names exactly the globals torch's own state-dict pickle names.
        let globals = PickleScanner.scan(try archive.data(for: archive.entries[0])).globals
        let torchGlobals = PickleScanner.scan(try ZipArchive(url: Fixtures.url("pth/resnet18_w2.pth")).data(
            for: ZipArchive(url: Fixtures.url("pth/resnet18_w2.pth")).entry(named: "resnet18_w2/data.pkl")!)).globals
        XCTAssertEqual(Set(globals), Set(torchGlobals))

        let back = try PyTorchFile.read(url)
        XCTAssertEqual(try stateDict(back, skippingOthers: true), sd)
        XCTAssertEqual(back.metadata["zip_folder"], "my-model.v1")
        guard case .dict(let meta)? = ObjectTree.entry(back.root, "_metadata") else { return XCTFail("no _metadata") }
        let bn1 = meta.first { $0.key.stringValue == "bn1" }?.value
        if case .int(let v)? = bn1.flatMap({ ObjectTree.entry($0, "version") }) { XCTAssertEqual(v, 2) } else { XCTFail("bn1 version") }
        let conv1 = meta.first { $0.key.stringValue == "conv1" }?.value
        if case .int(let v)? = conv1.flatMap({ ObjectTree.entry($0, "version") }) { XCTAssertEqual(v, 1) } else { XCTFail("conv1 version") }
    }

    func testModuleVersionsFollowTorchStateDictMetadata() {
        let versions = PyTorchStateDictPickle.moduleVersions(["conv1.weight", "bn1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                                                             "layer1.0.bn1.num_batches_tracked", "fc.bias"])
        XCTAssertEqual(versions.map(\.prefix), ["", "conv1", "bn1", "layer1", "layer1.0", "layer1.0.conv1", "layer1.0.bn1", "fc"])
        XCTAssertEqual(versions.map(\.version), [1, 1, 2, 1, 1, 1, 2, 1])
    }

    func testLegacyRoundTrip() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var sd = try fixtureStateDict("resnet18_w2.pth")
        for (k, v) in try oddTensors() { sd[k] = v }
        let url = dir.appendingPathComponent("legacy.pth")
        try PyTorchFile.write(sd, to: url, legacy: true)
        XCTAssertEqual(try FileSniffer.sniff(url), .pytorchLegacy)
        let back = try PyTorchFile.read(url)
        XCTAssertEqual(back.container, "pytorch-legacy")
        XCTAssertEqual(try stateDict(back, skippingOthers: true), sd)
    }

    func testOddTensorsRoundTripThroughZip() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let sd = try oddTensors()
        let url = dir.appendingPathComponent("odd.pth")
        try PyTorchFile.write(sd, to: url)
        XCTAssertEqual(try stateDict(PyTorchFile.read(url), skippingOthers: true), sd)
    }

    func testFailedWriteLeavesNothing() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.appendingPathComponent("no-such-dir/out.pth")
        XCTAssertThrowsError(try PyTorchFile.write(try oddTensors(), to: missing))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    // MARK: - Real torch

    /// Runs tools/interop/check_pth_written.py-style checks inline; skips without python3 + torch.
    private func torchCheck(_ script: String, _ args: [String]) throws {
        let root = Fixtures.repository
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import torch"]
        probe.standardError = FileHandle.nullDevice
        do { try probe.run() } catch { throw XCTSkip("python3 not available") }
        probe.waitUntilExit()
        if probe.terminationStatus != 0 { throw XCTSkip("torch not installed") }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + args
        process.currentDirectoryURL = root
        let err = Pipe()
        process.standardError = err
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, message)
    }

    /// Arguments: triples (our file, torch's file, "depth,width" of the reference ResNet or "-").
    private static let compareScript = """
    import sys, zipfile, torch
    sys.path.insert(0, "tools")
    from reference_resnet import ResNet
    def raw(t):
        return bytes(t.contiguous().clone().untyped_storage())
    args = sys.argv[1:]
    for mine, theirs, arch in zip(args[0::3], args[1::3], args[2::3]):
        ours = torch.load(mine, weights_only=True)
        ref = torch.load(theirs, weights_only=True)
        assert list(ours) == list(ref), (mine, list(ours)[:5], list(ref)[:5])
        for k in ref:
            a, b = ours[k], ref[k]
            assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.contiguous().stride(), (mine, k)
            assert raw(a) == raw(b), (mine, k)
        if arch != "-":
            depth, width = map(int, arch.split(","))
            ResNet(depth, width=width, stem="small", num_classes=10).load_state_dict(ours, strict=True)
            assert ours._metadata["bn1"]["version"] == 2, ours._metadata["bn1"]
        if zipfile.is_zipfile(mine):
            assert zipfile.ZipFile(mine).testzip() is None, mine
    """

    func testTorchLoadsOurZipAndLegacyFilesStrictlyWithIdenticalTensors() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var args: [String] = []
        for (fixture, arch) in [("resnet18_w2.pth", "18,2"), ("resnet50_w1.pth", "50,1"), ("c7_big.pth", "-"),
                                ("c6_alias.pth", "-")] {
            let sd = try fixtureStateDict(fixture)
            for legacy in [false, true] {
                let url = dir.appendingPathComponent("\(legacy ? "legacy" : "zip")-\(fixture)")
                try PyTorchFile.write(sd, to: url, legacy: legacy)
                args += [url.path, Fixtures.url("pth/\(fixture)").path, arch]
            }
        }
        try torchCheck(Self.compareScript, args)
    }

    func testTorchReadsEmptyScalarBoolAndHalfTensors() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("odd.pth")
        try PyTorchFile.write(try oddTensors(), to: url)
        try torchCheck("""
        import sys, torch
        sd = torch.load(sys.argv[1], weights_only=True)
        assert sd["empty"].shape == (2, 0) and sd["empty"].dtype == torch.float32
        assert sd["scalar"].shape == () and sd["scalar"].item() == -42 and sd["scalar"].dtype == torch.int64
        assert sd["flags"].tolist() == [True, False, True]
        assert sd["bf16"].dtype == torch.bfloat16 and sd["bf16"].tolist() == [1.0, -2.5]
        assert sd["half"].dtype == torch.float16 and sd["half"].tolist() == [[1.0, -2.0]]
        """, [url.path])
    }
}
