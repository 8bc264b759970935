import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// Inputs a hostile tester fed the release binary, each generated here: an invalid one is refused with
/// one `error:` line and a non-zero exit, leaving no output file, run or zoo entry behind; a valid one
/// that crashed (a 2x2 image through the ImageNet stem) runs.
final class HostileCLIInputTests: CLITestCase {
    /// Writes a safetensors file of `header` (JSON, padded to 8 bytes as the format asks) and `body`.
    private func safetensors(_ name: String, header: String, body: Data = Data()) throws -> String {
        var json = Data(header.utf8)
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var n = UInt64(json.count).littleEndian
        let url = tmp.appendingPathComponent(name)
        try (Data(bytes: &n, count: 8) + json + body).write(to: url)
        return url.path
    }

    /// What is in `tmp` besides the inputs named.
    private func leftovers(besides inputs: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: tmp.path).filter { !inputs.contains($0) }.sorted()
    }

    func testAZeroElementTensorWhoseStridesOverflowIsRefusedByEveryCommand() throws {
        // No elements, but [0, 2^62, 2^62] has no C-contiguous strides in 64 bits: `convert` to .pth
        // trapped computing them. Refused where the shape is read, whatever the output format.
        let input = try safetensors("z.safetensors", header: #"{"a":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}}"#)
        for output in ["o.pth", "o.h5", "o.npz", "o.safetensors"] {
            assertOneLineError(try Fixtures.runBissl(["convert", input, tmp.appendingPathComponent(output).path]), "too large")
        }
        assertOneLineError(try Fixtures.runBissl(["inspect", input]), "too large")
        assertOneLineError(try bissl(["import", input]), "too large")
        XCTAssertEqual(try leftovers(besides: ["z.safetensors", "zoo"]), [], "no output")
    }

    func testImagesWithoutRowsOrColumnsAreRefusedBeforeAnyRun() throws {
        // An IDX header may declare ten 4x0 images (no pixel bytes follow): every command that reads
        // the data refuses it when opening it, so no loader thread crops it and no run is left behind.
        let dir = tmp.appendingPathComponent("idx")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        func idx(_ dims: [UInt32], _ payload: Data) -> Data {
            Data([0, 0, 8, UInt8(dims.count)]) + dims.reduce(into: Data()) { d, v in withUnsafeBytes(of: v.bigEndian) { d.append(contentsOf: $0) } } + payload
        }
        try idx([10, 4, 0], Data()).write(to: dir.appendingPathComponent("train-images-idx3-ubyte"))
        try idx([10], Data(count: 10)).write(to: dir.appendingPathComponent("train-labels-idx1-ubyte"))
        let uri = "idx:\(dir.path)"
        let expected = "\(uri): its images are 4x0"
        assertOneLineError(try Fixtures.runBissl(["data", "info", uri]), expected)
        assertOneLineError(try Fixtures.runBissl(["data", "bench", uri, "--images", "4"]), expected)
        assertOneLineError(try bissl(["finetune", "--random-init", "--arch", "resnet18", "--width", "2", "--data", uri, "--steps", "1"]), expected)
        assertOneLineError(try bissl(["pretrain", "--method", "simclr", "--data", uri, "--arch", "resnet18", "--width", "2",
                                      "--batch-size", "4", "--steps", "1"]), expected)
        XCTAssertEqual(runDirectories(), [], "no run was created")
    }

    func testFIFOsDevicesAndLinksToThemAreRefusedBeforeTheyAreOpened() throws {
        // Opening a FIFO waits for a writer (convert and import hung), /dev/zero never ends, and the
        // reason given for /dev/null was a permission error. Links are followed first.
        let fifo = tmp.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let zeroLink = tmp.appendingPathComponent("zero.safetensors").path
        try FileManager.default.createSymbolicLink(atPath: zeroLink, withDestinationPath: "/dev/zero")
        let out = tmp.appendingPathComponent("o.h5").path
        for input in [fifo, zeroLink, "/dev/null"] {
            assertOneLineError(try Fixtures.runBissl(["convert", input, out]), "\(input) is not a regular file")
            assertOneLineError(try Fixtures.runBissl(["inspect", input]), "\(input) is not a regular file")
            assertOneLineError(try bissl(["import", input]), "\(input) is not a regular file")
        }
        let z = try Zoo.open(ZooLayout(root: zooDir), create: true)
        _ = try z.add(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), name: "e")
        try z.close()
        assertOneLineError(try bissl(["predict", "e", "--input", fifo]), "\(fifo) is not a regular file")
        assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(fifo)"]), "\(fifo) is not a regular file")
        // A hub folder whose weights link to /dev/zero.
        let hub = tmp.appendingPathComponent("hub")
        try FileManager.default.createDirectory(at: hub, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: hub.appendingPathComponent("model.safetensors").path, withDestinationPath: "/dev/zero")
        try Data("{}".utf8).write(to: hub.appendingPathComponent("config.json"))
        try Data("card".utf8).write(to: hub.appendingPathComponent("README.md"))
        assertOneLineError(try bissl(["import", hub.path]), "model.safetensors is not a regular file")
        // /proc/self/mem is a regular file whose size is 0: refused as empty, in words.
        let mem = try Fixtures.runBissl(["inspect", "/proc/self/mem"])
        assertOneLineError(mem, "mem is empty (0 bytes)")
        XCTAssertFalse(mem.stderr.contains("NSCocoaErrorDomain"), mem.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testNamesFromFilesCannotSendControlSequencesToTheTerminal() throws {
        // Tensor keys and class folder names holding a line feed, NUL and ESC[31m were printed raw.
        func assertEscaped(_ text: String, _ escapes: [String], file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertFalse(text.unicodeScalars.contains { $0 != "\n" && $0.properties.generalCategory == .control }, text, file: file, line: line)
            for e in escapes { XCTAssertTrue(text.contains(e), "expected \(e) in: \(text)", file: file, line: line) }
        }
        let input = try safetensors("keys.safetensors", header: #"{"a\nb":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"c\u0000d":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"e\u001b[31mf":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#,
                                    body: Data([1, 2, 3]))
        let inspect = try Fixtures.runBissl(["inspect", input])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        assertEscaped(inspect.stdout, ["a\\nb", "c\\u{0}d", "e\\u{1B}[31mf"])
        let root = tmp.appendingPathComponent("folder")
        for name in ["x\u{1B}[2Jy", "plain"] {
            let dir = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: Fixtures.url("datasets/folder/cat/rgb.png"), to: dir.appendingPathComponent("1.png"))
        }
        let info = try Fixtures.runBissl(["data", "info", "folder:\(root.path)"])
        XCTAssertEqual(info.status, 0, info.stderr)
        assertEscaped(info.stdout, ["x\\u{1B}[2Jy"])
    }

    func testAFailedImportIntoANewZooLeavesNoZoo() throws {
        // A checkpoint whose provenance names itself as parent (content ids cover tensors only) is
        // refused by the zoo after the zoo was created for it: the empty zoo goes again.
        var checkpoint = try Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "finetune", method: "finetune"))
        checkpoint.provenance.parents = [.init(id: ContentID.compute(checkpoint), relation: "finetuned-from")]
        let file = tmp.appendingPathComponent("self.h5")
        try CheckpointFile.write(checkpoint, to: file)
        assertOneLineError(try bissl(["import", file.path]), "own content id")
        XCTAssertFalse(FileManager.default.fileExists(atPath: zoo), "no empty zoo left behind")
    }

    func testTheImageNetStemTakes1x1And2x2Images() throws {
        // The 7x7/2 stem's first taps read only padding on a 2x2 image; the convolution trapped making
        // their empty window. Padding keeps every layer's output at least 1x1, as in torchvision.
        let arch = Architecture(depth: 50, block: "bottleneck", layers: [3, 4, 6, 3], width: 2, stem: "imagenet")
        let z = try Zoo.open(ZooLayout(root: zooDir), create: true)
        _ = try z.add(Network(architecture: arch, seed: 1).checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), name: "big")
        try z.close()
        for side in [1, 2] {
            let npy = NumPyArray.encode(Tensor(float32: [Float](repeating: 0.5, count: 3 * side * side), shape: [1, 3, side, side]))
            let x = tmp.appendingPathComponent("x\(side).npy")
            try npy.write(to: x)
            let r = try bissl(["predict", "big", "--input", x.path, "--features"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.hasPrefix("features [1, 64] from entry "), r.stdout)
        }
    }
}
