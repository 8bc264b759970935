@testable import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// Messages a hostile tester found misleading, too long or unlike each other, as the binary prints them.
final class MessagesCLITests: CLITestCase {
    /// A safetensors file of float32 tensors (zeros) of these shapes.
    private func safetensors(_ name: String, _ tensors: [(String, [Int])]) throws -> String {
        var entries: [String] = []
        var offset = 0
        for (key, shape) in tensors {
            let bytes = 4 * shape.reduce(1, *)
            entries.append("\"\(key)\":{\"dtype\":\"F32\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var json = Data(("{" + entries.joined(separator: ",") + "}").utf8)
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var n = UInt64(json.count).littleEndian
        let url = tmp.appendingPathComponent(name)
        try (Data(bytes: &n, count: 8) + json + Data(count: offset)).write(to: url)
        return url.path
    }

    /// A bare `--remote` (no name) is refused in one line that says which commands take the zoo's
    /// only remote without it (push, pull) and which need its name to work on a remote at all (list,
    /// lineage, gc), naming the zoo's remotes. (It said only `Missing value for '--remote <NAME>'`,
    /// while schemas/remote.md said every command used the only remote without a name.)
    func testABareRemoteOptionSaysWhichCommandsNeedTheNameAndNamesTheRemotes() throws {
        try FileManager.default.createDirectory(at: zooDir, withIntermediateDirectories: true)
        try Data(#"{"version": 1, "remotes": [{"name": "team", "url": "s3://models/zoos/team", "endpoint": "http://127.0.0.1:9"}]}"#.utf8)
            .write(to: zooDir.appendingPathComponent("remotes.json"))
        for args in [["list", "--remote"], ["lineage", "base", "--remote"], ["gc", "--remote"]] {
            let r = try bissl(args)
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertEqual(r.stderr, "error: Missing value for '--remote <NAME>': bissl \(args[0]) works on a remote only when --remote names it, even the zoo's only one (the zoo's remotes: team)\n")
        }
        for command in ["push", "pull"] {
            let r = try bissl([command, "base", "--remote"])
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertEqual(r.stderr, "error: Missing value for '--remote <NAME>': give the remote's name, or leave --remote out to use the zoo's only remote (the zoo's remotes: team)\n")
        }
        let bare = tmp.appendingPathComponent("bare").path   // --zoo first, as the tester typed it
        let r = try Fixtures.runBissl(["list", "--zoo", bare, "--remote"])
        XCTAssertEqual(r.stderr, "error: Missing value for '--remote <NAME>': bissl list works on a remote only when --remote names it, even the zoo's only one (there is no zoo at \(bare), so no remote; choose the zoo with --zoo DIR or BISSL_ZOO, or start one there with bissl remote add NAME s3://BUCKET/PREFIX)\n")
    }

    /// With no remote, the message says whether the folder is a zoo without a remote or no zoo at all
    /// (a wrong --zoo or BISSL_ZOO is then the likelier cause), for a bare --remote, push and pull without
    /// one, and a remote named that does not exist; nothing is created.
    func testNoRemoteSaysWhetherThereIsAZoo() throws {
        let bare = tmp.appendingPathComponent("bare").path
        let noZoo = "there is no zoo at \(bare), so no remote (choose the zoo with --zoo DIR or BISSL_ZOO, or start one there with bissl remote add NAME s3://BUCKET/PREFIX)"
        for command in ["push", "pull"] {
            let r = try Fixtures.runBissl([command, "base", "--zoo", bare])
            XCTAssertEqual(r.stderr, "error: \(noZoo)\n", command)
            XCTAssertNotEqual(r.status, 0)
        }
        let named = try Fixtures.runBissl(["list", "--remote", "team", "--zoo", bare])
        XCTAssertEqual(named.stderr, "error: no remote 'team': there is no zoo at \(bare), so no remote (choose the zoo with --zoo DIR or BISSL_ZOO, or start one there with bissl remote add team s3://BUCKET/PREFIX)\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: bare), "nothing created")

        let zooHandle = try Zoo.open(ZooLayout(root: zooDir), create: true)
        try zooHandle.close()
        let pull = try bissl(["pull", "base"])
        XCTAssertEqual(pull.stderr, "error: the zoo at \(zoo) has no remote (bissl remote add NAME s3://BUCKET/PREFIX)\n")
        let bareOption = try bissl(["list", "--remote"])
        XCTAssertTrue(bareOption.stderr.hasSuffix("(the zoo at \(zoo) has no remote; bissl remote add NAME s3://BUCKET/PREFIX)\n"), bareOption.stderr)
        let namedInZoo = try bissl(["list", "--remote", "team"])
        XCTAssertEqual(namedInZoo.stderr, "error: no remote 'team' in this zoo (bissl remote add team s3://BUCKET/PREFIX)\n")
    }

    /// Names and provenance from files reach stdout with their control characters escaped: a file
    /// name holding a newline and an ESC sequence neither splits the `wrote` line nor reaches the
    /// terminal, in convert's output or in show's `source` line of the imported entry.
    func testFileNamesWithControlCharactersAreEscapedOnStdout() throws {
        let input = Fixtures.url("pth/resnet18_w2.pth").path
        let odd = tmp.appendingPathComponent("a\nb\u{1B}[31m.safetensors")
        let r = try Fixtures.runBissl(["convert", input, odd.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("wrote \(tmp.path)/a\\nb\\u{1B}[31m.safetensors (safetensors, "), r.stdout)
        XCTAssertFalse(r.stdout.contains("\u{1B}"), r.stdout)
        let imported = try bissl(["import", odd.path, "--name", "odd"])
        XCTAssertEqual(imported.status, 0, imported.stderr)
        let show = try bissl(["show", "odd"])
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("source   a\\nb\\u{1B}[31m.safetensors (safetensors, "), show.stdout)
        XCTAssertFalse(show.stdout.contains("\u{1B}"), show.stdout)
    }

    /// A torch.save-style zip holding `pickle` as its data.pkl (and `data/0` of 16 bytes).
    private func pth(_ name: String, pickle: Data) throws -> String {
        let url = tmp.appendingPathComponent(name)
        let folder = String(name.dropLast(4))
        var writer = ZipWriter(url: url, alignment: 64)
        try writer.add(name: "\(folder)/data.pkl", data: pickle)
        try writer.add(name: "\(folder)/data/0", data: Data(count: 16))
        try writer.add(name: "\(folder)/version", data: Data("3\n".utf8))
        try writer.finish()
        return url.path
    }

    func testPredictWarnsOnceWhenTheEntrysWeightsMakeTheOutputNonFinite() throws {
        // resnet18_w2.pth's classifier (16 -> 10) with NaN weights: every logit is NaN, and top-1 read 0.
        var checkpoint = try Interchange.load(Fixtures.url("pth/resnet18_w2.pth"), options: LayoutOptions())
        let key = checkpoint.components["classifier"]!.keys.first { $0.hasSuffix("weight") }!
        let fc = checkpoint.components["classifier"]![key]!
        checkpoint.components["classifier"]![key] = Tensor(float32: [Float](repeating: .nan, count: fc.shape.reduce(1, *)), shape: fc.shape)
        let z = try Zoo.open(ZooLayout(root: zooDir), create: true)
        let id = try z.add(checkpoint, name: "nan").id
        try z.close()
        let x = tmp.appendingPathComponent("x.npy")
        try NumPyArray.encode(Tensor(float32: [Float](repeating: 0.5, count: 2 * 3 * 8 * 8), shape: [2, 3, 8, 8])).write(to: x)
        let r = try bissl(["predict", "nan", "--input", x.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "warning: the logits of 2 of 2 images hold NaN or infinite values, so their top-1 class and the summary mean nothing; entry \(id.prefix(12)) has non-finite weights or invalid BatchNorm statistics (bissl verify \(id.prefix(12)) reports them)\n")
        XCTAssertTrue(r.stdout.hasPrefix("logits [2, 10] from entry "), r.stdout)
        // The backbone's features are finite: no warning for them.
        XCTAssertEqual(try bissl(["predict", "nan", "--input", x.path, "--features"]).stderr, "")
    }

    func testAZeroWidthResNetIsNamedAsSuchNotAsMissingKeys() throws {
        let file = try safetensors("zero.safetensors", [("conv1.weight", [0, 3, 3, 3]), ("bn1.weight", [0]), ("bn1.bias", [0])])
        assertOneLineError(try bissl(["import", file]),
                           "the root dict has ResNet backbone keys (conv1.*, bn1.*, layerN.*), but they fit no ResNet: the stem has 0 channels (conv1.weight [0, 3, 3, 3]): a ResNet needs at least 1")
        let inspect = try Fixtures.runBissl(["inspect", file])
        XCTAssertTrue(inspect.stdout.contains("<root>  3 tensors, ResNet backbone keys that fit no ResNet: the stem has 0 channels"), inspect.stdout)
    }

    func testTheClosestIncompleteBackboneIsDescribedInWords() throws {
        let file = try safetensors("partial.safetensors", [("conv1.weight", [64, 3, 7, 7])])
        assertOneLineError(try Fixtures.runBissl(["convert", file, tmp.appendingPathComponent("o.h5").path]),
                           "no complete ResNet backbone: the closest, the root dict, holds 1 of the 100 keys a resnet18 requires (architecture guessed from the keys present); differences: missing 99 (bn1.weight, bn1.bias, bn1.running_mean, ...)")
    }

    func testPickleErrorsNameTheFileAndStayShort() throws {
        // 300 nested lists: EMPTY_LIST x 300, then APPEND x 299 (each pops a list into the one below).
        let deep = try pth("deep.pth", pickle: Data([0x80, 0x02] + [UInt8](repeating: 0x5D, count: 300) + [UInt8](repeating: 0x61, count: 299) + [0x2E]))
        let r = try Fixtures.runBissl(["inspect", deep])
        assertOneLineError(r, "error: deep.pth: objects nested deeper than 200 levels at 0.0.0 ... 0.0 (200 keys)")
        XCTAssertLessThan(r.stderr.count, 120, r.stderr)

        // _rebuild_tensor_v2 with a size whose element count overflows Int64.
        let huge = Int64(1) << 40
        let absurd = try pth("absurd.pth", pickle: PickleWriter.pickle(.orderedDict([(.string("w"), .reduce(
            .global(module: "torch._utils", name: "_rebuild_tensor_v2"),
            [.persistent(.tuple([.string("storage"), .global(module: "torch", name: "FloatStorage"), .string("0"), .string("cpu"), .int(4)])),
             .int(0), .tuple([.int(huge), .int(huge)]), .tuple([.int(huge), .int(1)]), .bool(false), .orderedDict([], state: nil)]))],
            state: nil)))
        assertOneLineError(try Fixtures.runBissl(["convert", absurd, tmp.appendingPathComponent("o.h5").path]),
                           "error: absurd.pth: w: size [1099511627776, 1099511627776] is negative or too large")

        // pickle.dump({'a': [1, 2, 3]}): no global at all, so nothing could run; what is wrong is that it holds no tensors.
        let plain = tmp.appendingPathComponent("plain.pkl")
        try Data([0x80, 0x02, 0x7D, 0x71, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71, 0x01, 0x5D, 0x71, 0x02,
                  0x28, 0x4B, 0x01, 0x4B, 0x02, 0x4B, 0x03, 0x65, 0x73, 0x2E]).write(to: plain)
        let p = try Fixtures.runBissl(["inspect", plain.path])
        assertOneLineError(p, "plain.pkl is a plain Python pickle (pickle.dump), not torch.save output: it references no class, so it holds no tensors")
        XCTAssertFalse(p.stderr.contains("run code"), p.stderr)
    }

    func testAMissingFileIsWordedTheSameByEveryCommand() throws {
        let z = try Zoo.open(ZooLayout(root: zooDir), create: true)
        _ = try z.add(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), name: "e")
        try z.close()
        let nope = tmp.appendingPathComponent("nope").path
        assertOneLineError(try bissl(["predict", "e", "--input", nope + ".npy"]), "error: cannot read \(nope).npy: no such file")
        assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(nope).h5"]), "error: cannot read \(nope).h5: no such file")
        assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(nope).txt"]), "error: cannot read \(nope).txt: no such file")
        assertOneLineError(try bissl(["diff", "e", nope + ".h5"]), "error: cannot read \(nope).h5: no such file, and no entry, name or tag")
        assertOneLineError(try Fixtures.runBissl(["diff", nope + ".h5", "x.pth", "--zoo", tmp.appendingPathComponent("nozoo").path]),
                           "error: cannot read \(nope).h5: no such file")
        assertOneLineError(try Fixtures.runBissl(["inspect", nope + ".h5"]), "error: cannot read \(nope).h5: no such file")
    }

    func testASplitFileListsEachImageOnceAndLongLinesAreShortened() throws {
        let split = tmp.appendingPathComponent("split.txt")
        try Data("# a comment\n3\n\n 5 \r\n3\n".utf8).write(to: split)
        assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(split.path)"]),
                           "split file \(split.path) line 5: index 3 is listed a second time (a split file lists each image at most once)")
        try Data(("1\n" + String(repeating: "x", count: 100_000) + "\n").utf8).write(to: split)
        let long = try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(split.path)"])
        assertOneLineError(long, "line 2: '\(String(repeating: "x", count: 40))...' is not a non-negative integer index")
        XCTAssertLessThan(long.stderr.count, 300)
        try Data("0\n 5\t\r\n".utf8).write(to: split)
        let ok = try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(split.path)"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("images: 2"), ok.stdout)
    }

    func testASplitFileMayStartWithAByteOrderMarkAndMustListAnImage() throws {
        let split = tmp.appendingPathComponent("bom.txt")
        try Data([0xEF, 0xBB, 0xBF] + Array("1\r\n2\r\n".utf8)).write(to: split)   // as Windows editors save it
        let ok = try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(split.path)"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("images: 2"), ok.stdout)
        let empty = tmp.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(empty.path)"]),
                           "error: split file \(empty.path) lists no image index (it holds nothing); a split file lists one index per line")
        try Data([0xEF, 0xBB, 0xBF] + Array("# only a comment\n\n".utf8)).write(to: empty)
        assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(empty.path)"]),
                           "error: split file \(empty.path) lists no image index (it holds only blank lines and # comments)")
    }

    func testAMissingOutputFolderAndAnEmptyPathAreSaidInTheOneWording() throws {
        let input = tmp.appendingPathComponent("in.h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: input)
        // As typed, relative to the working folder.
        for output in ["nodir/o.h5", "nodir/o.npz", "nodir/o.safetensors", "nodir/o.pth"] {
            let r = try BisslBinary.run(["-c", "cd \"$0\" && exec \"$@\"", tmp.path, BisslBinary.url!.path, "convert", "in.h5", output],
                                        executable: URL(fileURLWithPath: "/bin/sh"))
            assertOneLineError((r.status, r.stdout, r.stderr), "error: cannot write \(output): no such folder nodir")
        }
        let absolute = tmp.appendingPathComponent("nodir/o.h5").path
        assertOneLineError(try Fixtures.runBissl(["convert", input.path, absolute]),
                           "error: cannot write \(absolute): no such folder \(tmp.appendingPathComponent("nodir").path)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path).sorted(), ["in.h5"])
        for args in [["inspect", ""], ["convert", "", "o.h5"]] {
            assertOneLineError(try Fixtures.runBissl(args), "error: cannot read '': the path is empty")
        }
    }

    func testShowPrintsEachHealthWarningOnce() throws {
        // The converter records degenerate BatchNorm statistics in the provenance's warnings, and the
        // health scan finds them again.
        let imported = try bissl(["import", Fixtures.url("layout/c15_f16.pth").path, "--name", "half"])
        XCTAssertEqual(imported.status, 0, imported.stderr)
        for args in [["show", "half"], ["verify", "half"]] {
            let r = try bissl(args)
            let warnings = r.stdout.split(separator: "\n").filter { $0.contains("degenerate BatchNorm statistics") }
            XCTAssertFalse(warnings.isEmpty, r.stdout)
            XCTAssertEqual(warnings.count, Set(warnings).count, r.stdout)
        }
    }

    func testTableCellsEscapeC1AndLineSeparatorsAndAlignByCharacters() throws {
        // TextTable decides escape and width in one pass over each cell: C1 controls (U+0085) and
        // U+2028 are written as escapes, a non-ASCII name is padded by its characters, not its bytes.
        let root = tmp.appendingPathComponent("folder")
        for name in ["\u{E9}-class", "x\u{85}y", "plain", "a\u{2028}b"] {
            let dir = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: Fixtures.url("datasets/folder/cat/rgb.png"), to: dir.appendingPathComponent("1.png"))
        }
        let r = try Fixtures.runBissl(["data", "info", "folder:\(root.path)"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let classes = lines.firstIndex { $0.hasPrefix("classes:") }! + 1
        XCTAssertEqual(Array(lines[classes..<(classes + 4)]), [
            "    0  a\\u{2028}b  1", "    1  plain       1", "    2  x\\u{85}y    1", "    3  \u{E9}-class     1"])
    }
}
