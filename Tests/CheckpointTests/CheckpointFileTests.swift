@testable import Checkpoint
import Collections
import Crypto
import Foundation
import HDF5
import XCTest
import TestSupport

/// Format v1 (schemas/checkpoint-v1.md): round trips, order, escaping, content id, versions, errors.
final class CheckpointFileTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.scratch() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func le<T: FixedWidthInteger>(_ values: [T]) -> Data {
        values.map { $0.littleEndian }.withUnsafeBytes { Data($0) }
    }

    private func tensor(_ dtype: DType, _ shape: [Int], _ data: Data) -> Tensor {
        try! Tensor(dtype: dtype, shape: shape, data: data)
    }

    private func provenance() -> Provenance {
        Provenance(stage: "imported", tool: .init(name: "bissl", version: "0.1.0"))
    }

    /// The tiny checkpoint spelled out in tools/fixtures/h5_known_content_id.py.
    private func tiny(architecture: Bool = true) -> Checkpoint {
        let backbone: StateDict = [
            "conv1.weight": Tensor(float32: [1.0, -2.5], shape: [2, 1, 1, 1]),
            "bn1.running_var": tensor(.float16, [2], le([UInt16(0x3C00), 0x0001])),
            "bn1.num_batches_tracked": Tensor(int64: 7),
            "a/b": tensor(.bfloat16, [2], le([UInt16(0x3F80), 0xC000])),
            "empty": tensor(.float32, [2, 0], Data()),
            "mask": tensor(.bool, [3], Data([1, 0, 1])),
        ]
        let classifier: StateDict = [
            "fc.weight": tensor(.float64, [1, 2], le([(0.5).bitPattern, (-0.25).bitPattern])),
            "fc.bias": tensor(.int8, [1], Data([0xFD])),
        ]
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 4, stem: "small",
                                heads: ["projector": .init(kind: "mlp", dims: [4, 8, 3]),
                                        "classifier": .init(kind: "linear", dims: [4, 1])])
        return Checkpoint(components: ["backbone": backbone, "classifier": classifier],
                          architecture: architecture ? arch : nil, provenance: provenance())
    }

    // MARK: - round trips

    func testEveryDTypeRoundTripsBitExactly() throws {
        let sd: StateDict = [
            "f64": tensor(.float64, [3], le([(1.0 / 3).bitPattern, Double.nan.bitPattern, (-0.0).bitPattern])),
            "f32": Tensor(float32: [1.5, -.infinity, .leastNonzeroMagnitude, 3e38], shape: [2, 2]),
            // f16 subnormals: 0x0001 = 2^-24, 0x03FF largest subnormal, 0x8001 negative; 0x7BFF = 65504.
            "f16": tensor(.float16, [4], le([UInt16(0x0001), 0x03FF, 0x8001, 0x7BFF])),
            // bf16 bits: 1.0, a NaN payload, -inf, smallest subnormal (must never become f16 values).
            "bf16": tensor(.bfloat16, [2, 2], le([UInt16(0x3F80), 0x7FC1, 0xFF80, 0x0001])),
            "i64": tensor(.int64, [2], le([Int64.min, Int64.max])),
            "i32": tensor(.int32, [2], le([Int32.min, -1])),
            "i16": tensor(.int16, [1, 1, 2], le([Int16.min, 12345])),
            "i8": tensor(.int8, [2], Data([0x80, 0x7F])),
            "u8": tensor(.uint8, [3], Data([0, 128, 255])),
            "bool": tensor(.bool, [2], Data([1, 0])),
            "scalar": Tensor(int64: 1234),
            "scalar_f32": Tensor(float32: [0.25], shape: []),
            "empty": tensor(.float32, [0], Data()),
            "empty2": tensor(.float16, [2, 0], Data()),
        ]
        let ckpt = Checkpoint(components: ["backbone": sd], architecture: nil, provenance: provenance())
        let url = dir.appendingPathComponent("all.h5")
        try CheckpointFile.write(ckpt, to: url)
        let back = try CheckpointFile.read(url)
        XCTAssertEqual(back, ckpt)
        let b = back.components["backbone"]!
        XCTAssertEqual(b["f16"]!.doubles(), [pow(2, -24), 1023 * pow(2, -24), -pow(2, -24), 65504])
        XCTAssertEqual(b["bf16"]!.data, le([UInt16(0x3F80), 0x7FC1, 0xFF80, 0x0001]))
        XCTAssertEqual(b["scalar"]!.shape, [])
        XCTAssertEqual(b["empty2"]!.shape, [2, 0])

        // The HDF5 side follows the spec's dtype table.
        let file = try HDF5.File.open(url.path)
        let g = try file.openGroup("tensors/backbone")
        XCTAssertEqual(try g.openDataset("bf16").elementType, .uint16)
        XCTAssertEqual(try g.openDataset("bf16").stringAttribute("dtype"), "bfloat16")
        XCTAssertEqual(try g.openDataset("bool").elementType, .uint8)
        XCTAssertEqual(try g.openDataset("bool").stringAttribute("dtype"), "bool")
        XCTAssertEqual(try g.openDataset("f16").elementType, .float16)
        XCTAssertFalse(try g.openDataset("f16").hasAttribute("dtype"))
        XCTAssertEqual(try g.openDataset("scalar").shape, [])
    }

    func testArchitectureAndProvenanceRoundTrip() throws {
        var ckpt = tiny()
        ckpt.provenance = Provenance(
            stage: "finetune", method: "bissl",
            parents: [.init(id: String(repeating: "ab", count: 32), relation: "finetuned-from", note: "classifier re-initialised 1000 -> 10")],
            source: .init(fileName: "r50.pth", sha256: String(repeating: "0f", count: 32), format: "pth", container: "pytorch-zip",
                          rules: ["strip prefix module."], keyPath: "state_dict", strippedPrefix: "module.",
                          droppedKeys: ["optimizer"], filledKeys: ["bn1.num_batches_tracked"], aliases: ["b": "a"],
                          locations: ["cuda:0"], metadata: ["byteorder": "little"]),
            datasets: [.init(role: "downstream-train", uri: "idx:/data/fmnist", fingerprint: String(repeating: "1", count: 64))],
            hyperparameters: ["lr": .double(0.05), "epochs": .int(10), "nested": .object(["a": .array([.bool(true), .null])])],
            seeds: ["init": 1, "data": -5], metrics: ["top1": 0.9], warnings: ["degenerate BN in layer3"],
            commandLine: ["bissl", "finetune", "x"], startedAt: "2026-11-29T10:00:00Z", endedAt: "2026-11-29T10:05:00.5Z")
        ckpt.provenance.metricHistory = ["loss": [2.5, 1.25, 0.5], "top1": [], "a/b": [1]]
        let url = dir.appendingPathComponent("full.h5")
        try CheckpointFile.write(ckpt, to: url)
        XCTAssertEqual(try CheckpointFile.read(url), ckpt)
    }

    func testNonFiniteMetricsSurvive() throws {
        var ckpt = tiny()
        ckpt.provenance.metrics = ["loss": .nan, "gap": .infinity]
        let url = dir.appendingPathComponent("nan.h5")
        try CheckpointFile.write(ckpt, to: url)
        let metrics = try CheckpointFile.read(url).provenance.metrics
        XCTAssertTrue(metrics["loss"]!.isNaN)
        XCTAssertEqual(metrics["gap"], .infinity)
    }

    func testKeyAndComponentOrderIsKept() throws {
        let keys = ["zz.weight", "a.bias", "layer1.0.conv1.weight", "b", "10.x", "2.x"]
        var sd = StateDict()
        for (i, k) in keys.enumerated() { sd[k] = Tensor(float32: [Float(i)], shape: [1]) }
        let ckpt = Checkpoint(components: ["projector": sd, "backbone": ["w": Tensor(int64: 1)], "classifier": [:]],
                              architecture: nil, provenance: provenance())
        let url = dir.appendingPathComponent("order.h5")
        try CheckpointFile.write(ckpt, to: url)
        let back = try CheckpointFile.read(url)
        XCTAssertEqual(Array(back.components.keys), ["projector", "backbone", "classifier"])
        XCTAssertEqual(Array(back.components["projector"]!.keys), keys)
        XCTAssertEqual(back.components["classifier"]!.count, 0)
    }

    func testSlashesAndOtherAwkwardKeysRoundTrip() throws {
        let keys = ["a/b", "a%2Fb", "/leading", "trailing/", "%", "", ".", "..", "x//y", "ünï.códe", "a b"]
        var sd = StateDict()
        for (i, k) in keys.enumerated() { sd[k] = Tensor(float32: [Float(i)], shape: [1]) }
        let ckpt = Checkpoint(components: ["odd/comp": sd], architecture: nil, provenance: provenance())
        let url = dir.appendingPathComponent("keys.h5")
        try CheckpointFile.write(ckpt, to: url)
        XCTAssertEqual(try CheckpointFile.read(url), ckpt)
        // Escaped names as the spec defines them.
        let g = try HDF5.File.open(url.path).openGroup("tensors/odd%2Fcomp")
        XCTAssertEqual(Set(try g.childNames()), Set(["a%2Fb", "a%252Fb", "%2Fleading", "trailing%2F", "%25", "%", "%2E", "..",
                                                     "x%2F%2Fy", "ünï.códe", "a b"]))
    }

    func testLinkNameEscapingIsReversible() {
        let cases = ["": "%", ".": "%2E", "a.b": "a.b", "a/b": "a%2Fb", "100%": "100%25", "%2F": "%252F"]
        for (key, name) in cases {
            XCTAssertEqual(LinkName.escape(key), name)
            XCTAssertEqual(LinkName.unescape(name), key)
        }
        XCTAssertNil(LinkName.unescape("%zz"))
    }

    func testNulInKeyIsRefusedAndLeavesNothing() throws {
        let ckpt = Checkpoint(components: ["backbone": ["a\u{0}b": Tensor(int64: 1)]], architecture: nil, provenance: provenance())
        let url = dir.appendingPathComponent("nul.h5")
        XCTAssertThrowsError(try CheckpointFile.write(ckpt, to: url)) { error in
            XCTAssertTrue("\(error)".contains("NUL"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    // MARK: - content id

    func testKnownContentIDMatchesIndependentPythonImplementation() {
        // From `python3 tools/fixtures/h5_known_content_id.py` (tools/fixtures/h5_content_id.py follows the spec).
        XCTAssertEqual(ContentID.compute(tiny()), "b6c9bcc74d6fb493fb6795c1390793ddcfb468dbdb291b640077127d1194fdb8")
        XCTAssertEqual(ContentID.compute(tiny(architecture: false)), "2a98afc463103fa220b3faffbaacf37633bb55df629fdf28ac698ec06655bc1e")
    }

    func testContentIDIsStableAndDependsOnlyOnTensorsAndArchitecture() throws {
        let ckpt = tiny()
        let id = ContentID.compute(ckpt)
        let url = dir.appendingPathComponent("id.h5")
        try CheckpointFile.write(ckpt, to: url)
        XCTAssertEqual(try CheckpointFile.storedContentID(url), id)
        XCTAssertEqual(ContentID.compute(try CheckpointFile.read(url, verifyContentID: true)), id)

        var other = ckpt
        other.provenance = Provenance(stage: "pretext", method: "simclr", seeds: ["init": 3], commandLine: ["x"])
        XCTAssertEqual(ContentID.compute(other), id, "provenance must not change the id")

        var reordered = ckpt
        reordered.components = [:]
        for (c, sd) in ckpt.components.reversed() {
            reordered.components[c] = StateDict(uniqueKeysWithValues: sd.reversed().map { ($0.key, $0.value) })
        }
        XCTAssertEqual(ContentID.compute(reordered), id, "key order must not change the id")

        var changed = ckpt
        changed.components["backbone"]!["conv1.weight"] = Tensor(float32: [1.0, -2.4375], shape: [2, 1, 1, 1])
        XCTAssertNotEqual(ContentID.compute(changed), id)
        var moved = ckpt
        let fc = moved.components["classifier"]!.removeValue(forKey: "fc.bias")!
        moved.components["backbone"]!["fc.bias"] = fc
        XCTAssertNotEqual(ContentID.compute(moved), id, "the component is part of the id")
        var narrower = ckpt
        narrower.architecture!.width = 8
        XCTAssertNotEqual(ContentID.compute(narrower), id)
        var retyped = ckpt
        retyped.components["backbone"]!["a/b"]!.dtype = .float16
        XCTAssertNotEqual(ContentID.compute(retyped), id, "bf16 and f16 with equal bits differ")
        var reshaped = ckpt
        reshaped.components["backbone"]!["conv1.weight"]!.shape = [1, 2, 1, 1]
        XCTAssertNotEqual(ContentID.compute(reshaped), id)
    }

    func testVerifyDetectsTamperedTensor() throws {
        let url = dir.appendingPathComponent("tamper.h5")
        try CheckpointFile.write(tiny(), to: url)
        do {
            let file = try HDF5.File.open(url.path, writable: true)
            try file.openGroup("tensors/backbone").openDataset("conv1.weight").write(Tensor(float32: [1, 2], shape: [2]).data)
        }
        XCTAssertNoThrow(try CheckpointFile.read(url))
        XCTAssertThrowsError(try CheckpointFile.read(url, verifyContentID: true)) { error in
            XCTAssertTrue("\(error)".hasPrefix("tamper.h5: content id mismatch: stored "), "\(error)")
        }
    }

    // MARK: - files written by another implementation

    func testReadsAFileH5pyWroteFromTheSpec() throws {
        // tools/fixtures/make_h5_fixtures.py: fixed-length strings, a big-endian dataset, nulls in
        // provenance, minor version 1.3 with an unknown group; expectations computed by numpy/hashlib.
        struct Expected: Decodable {
            struct Entry: Decodable { let key: String; let dtype: String; let shape: [Int]; let sha256: String }
            let content_id: String
            let components: [String: [Entry]]
        }
        let url = Fixtures.url("h5/h5py_written.h5")
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Fixtures.url("h5/h5py_written.json")))
        let ckpt = try CheckpointFile.read(url, verifyContentID: true)
        XCTAssertEqual(Array(ckpt.components.keys), ["backbone", "projector"])
        for (component, entries) in expected.components {
            let sd = try XCTUnwrap(ckpt.components[component])
            XCTAssertEqual(Array(sd.keys), entries.map(\.key))
            for e in entries {
                let t = try XCTUnwrap(sd[e.key])
                XCTAssertEqual(t.dtype.rawValue, e.dtype, e.key)
                XCTAssertEqual(t.shape, e.shape, e.key)
                XCTAssertEqual(SHA256.hash(data: t.data).map { String(format: "%02x", $0) }.joined(), e.sha256, e.key)
            }
        }
        XCTAssertEqual(ContentID.compute(ckpt), expected.content_id)
        XCTAssertEqual(try CheckpointFile.storedContentID(url), expected.content_id)
        XCTAssertEqual(ckpt.architecture?.heads["projector"], Architecture.Head(kind: "mlp", dims: [4, 3]))
        XCTAssertNil(ckpt.provenance.method)
        XCTAssertEqual(ckpt.provenance.seeds, ["init": 7])
        XCTAssertEqual(ckpt.provenance.metricHistory, ["loss": [3.0, 2.0, 1.5]])
        XCTAssertThrowsError(try CheckpointFile.read(Fixtures.url("h5/future_major.h5"))) { error in
            XCTAssertEqual("\(error)", "future_major.h5 uses bissl checkpoint format 2.0; this bissl (\(bisslVersion)) reads format 1.x: upgrade bissl")
        }
    }

    func testReadsUserBlockAndChunkedDatasetsAsTheSameContent() throws {
        // tools/fixtures/make_h5_fixtures.py: h5py_written.h5's content behind a 512-byte user block,
        // bn1.running_var chunked and gzip-compressed, projector 0.weight chunked.
        let layouts = Fixtures.url("h5/h5py_layouts.h5")
        let plain = try CheckpointFile.read(Fixtures.url("h5/h5py_written.h5"))
        XCTAssertEqual(try CheckpointFile.read(layouts, verifyContentID: true), plain)
        let file = try HDF5.File.open(layouts.path)
        XCTAssertNotNil(try file.openDataset("tensors/backbone/bn1.num_batches_tracked").directExtent(), "contiguous: pread")
        XCTAssertNil(try file.openDataset("tensors/backbone/bn1.running_var").directExtent(), "gzip: H5Dread")
        XCTAssertNil(try file.openDataset("tensors/projector/0.weight").directExtent(), "chunked: H5Dread")
        XCTAssertNil(try file.openDataset("tensors/backbone/conv1.weight").directExtent(), "big-endian: H5Dread converts")
        // Lazy access: one tensor, or one component, without the others' bytes.
        let reader = try CheckpointReader(layouts)
        XCTAssertEqual(try reader.tensor("projector", "idx"), plain.components["projector"]!["idx"])
        XCTAssertEqual(try reader.checkpoint(only: ["projector"]).components, ["projector": plain.components["projector"]!])
        XCTAssertEqual(reader.components["backbone"]?["conv1.weight"]?.shape, [4, 3, 3, 3])
        XCTAssertEqual(reader.storedContentID, ContentID.compute(plain))
    }

    // MARK: - versions and bad input

    func testNewerMajorVersionIsRefusedNewerMinorRead() throws {
        let url = dir.appendingPathComponent("future.h5")
        try CheckpointFile.write(tiny(), to: url)
        try HDF5.File.open(url.path, writable: true).setAttribute("format_version", "1.7")
        XCTAssertEqual(try CheckpointFile.read(url), tiny())
        try HDF5.File.open(url.path, writable: true).setAttribute("format_version", "2.0")
        XCTAssertThrowsError(try CheckpointFile.read(url)) { error in
            XCTAssertEqual(error as? CheckpointError, .unsupported(
                "future.h5 uses bissl checkpoint format 2.0; this bissl (\(bisslVersion)) reads format 1.x: upgrade bissl"))
        }
        try HDF5.File.open(url.path, writable: true).setAttribute("format_version", "one")
        XCTAssertThrowsError(try CheckpointFile.read(url)) { error in
            XCTAssertEqual(error as? CheckpointError, .corrupt("future.h5: invalid format_version \"one\" (expected MAJOR.MINOR)"))
        }
    }

    func testMissingGroupIsACleanError() throws {
        let url = dir.appendingPathComponent("partial.h5")
        do {
            let file = try HDF5.File.create(url.path)
            try file.setAttribute("format", "bissl-checkpoint")
            try file.setAttribute("format_version", "1.0")
            try file.createStringDataset("components", values: ["backbone"])
            _ = try file.createGroup("tensors")
            _ = try file.createGroup("keys")
            try file.createStringDataset("provenance", value: try CheckpointFile.provenanceJSON(provenance()))
        }
        XCTAssertThrowsError(try CheckpointFile.read(url)) { error in
            XCTAssertEqual(error as? CheckpointError, .corrupt("partial.h5: missing /keys/backbone; not a complete bissl checkpoint"))
        }
    }

    func testTensorListedButMissingAndUnlistedDatasets() throws {
        let url = dir.appendingPathComponent("stray.h5")
        try CheckpointFile.write(tiny(), to: url)
        _ = try HDF5.File.open(url.path, writable: true).openGroup("tensors/classifier").createDataset("extra", type: .float32, shape: [1])
        XCTAssertThrowsError(try CheckpointFile.read(url)) { error in
            XCTAssertEqual(error as? CheckpointError,
                           .corrupt("stray.h5: /tensors/classifier holds 3 datasets but /keys/classifier lists 2 keys"))
        }
    }

    func testGarbageAndForeignFilesAreRefused() throws {
        let html = dir.appendingPathComponent("model.h5")
        try Data("<!DOCTYPE html><html>login</html>".utf8).write(to: html)
        XCTAssertFalse(CheckpointFile.isHDF5(html))
        XCTAssertThrowsError(try CheckpointFile.read(html)) { error in
            XCTAssertEqual(error as? CheckpointError, .notACheckpoint("model.h5 is not an HDF5 file (no HDF5 signature), so not a bissl checkpoint"))
        }
        let foreign = dir.appendingPathComponent("keras.h5")
        _ = try HDF5.File.create(foreign.path).createGroup("model_weights")
        XCTAssertTrue(CheckpointFile.isHDF5(foreign))
        XCTAssertThrowsError(try CheckpointFile.read(foreign)) { error in
            XCTAssertEqual(error as? CheckpointError,
                           .notACheckpoint("keras.h5 is an HDF5 file but not a bissl checkpoint (no root attribute format = \"bissl-checkpoint\")"))
        }
        // An HDF5 signature followed by garbage.
        let broken = dir.appendingPathComponent("broken.h5")
        try Data(CheckpointFile.signature + [UInt8](repeating: 0xAB, count: 600)).write(to: broken)
        XCTAssertThrowsError(try CheckpointFile.read(broken)) { error in
            guard case .corrupt(let m)? = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.hasPrefix("broken.h5: damaged HDF5 file"), m)
            XCTAssertFalse(m.contains("\n"))
        }
        XCTAssertThrowsError(try CheckpointFile.read(dir.appendingPathComponent("absent.h5"))) { error in
            guard case .io? = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    func testFailedWriteLeavesNoTemporaryFile() throws {
        // The destination is an existing directory: the rename fails after the file was written.
        let target = dir.appendingPathComponent("taken.h5")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: false)
        XCTAssertThrowsError(try CheckpointFile.write(tiny(), to: target))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["taken.h5"])
        // A missing folder fails inside HDF5; nothing appears anywhere.
        XCTAssertThrowsError(try CheckpointFile.write(tiny(), to: dir.appendingPathComponent("no/such/dir.h5"))) { error in
            guard case .io(let m)? = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.hasPrefix("cannot write \(self.dir.path)/no/such/dir.h5"), m)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["taken.h5"])
    }

    func testWritingTwiceGivesIdenticalBytes() throws {
        let a = dir.appendingPathComponent("a.h5"), b = dir.appendingPathComponent("b.h5")
        try CheckpointFile.write(tiny(), to: a)
        try CheckpointFile.write(tiny(), to: b)
        XCTAssertEqual(try Data(contentsOf: a), try Data(contentsOf: b))
    }

    // MARK: - scale

    func testThreeThousandKeysGoToADatasetNotAnAttribute() throws {
        // 3,000 names of 30 bytes (90 KB) exceed what one HDF5 attribute holds.
        var sd = StateDict()
        for i in 0..<3000 { sd[String(format: "layers.%04d.attention.q.weight", 2999 - i)] = Tensor(int64: Int64(i)) }
        XCTAssertEqual(sd.keys.first!.utf8.count, 30)
        let ckpt = Checkpoint(components: ["backbone": sd], architecture: nil, provenance: provenance())
        let url = dir.appendingPathComponent("c12.h5")
        try CheckpointFile.write(ckpt, to: url)
        XCTAssertEqual(try CheckpointFile.read(url), ckpt)
        let file = try HDF5.File.open(url.path)
        XCTAssertEqual(try file.openDataset("keys/backbone").shape, [3000])
        XCTAssertEqual(try file.attributeNames(), ["content_id", "format", "format_version", "writer"])
        XCTAssertEqual(try file.openGroup("tensors/backbone").attributeNames(), [])
    }

    func testAHundredMegabyteCheckpointRoundTrips() throws {
        // ResNet-50-sized: 320 tensors, ~100 MB of float32.
        var sd = StateDict()
        let perTensor = 100_000_000 / 4 / 320
        for i in 0..<320 {
            sd["layer.\(i).weight"] = try Tensor(dtype: .float32, shape: [perTensor], data: Data(repeating: UInt8(i % 251), count: perTensor * 4))
        }
        let ckpt = Checkpoint(components: ["backbone": sd], architecture: nil, provenance: provenance())
        let url = dir.appendingPathComponent("big.h5")
        try CheckpointFile.write(ckpt, to: url)
        let back = try CheckpointFile.read(url)
        XCTAssertEqual(back.components["backbone"], sd)  // speed is measured by `make bench`, not here
    }
}
