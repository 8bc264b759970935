import Checkpoint
import Training
import Foundation
import XCTest
import Zoo
import TestSupport

/// Text from files and remotes (tensor keys, provenance, dataset paths, file names) reaches stdout
/// with its control characters escaped, in every command's text output, and JSON output stays JSON
/// with no raw control character either.
final class StdoutEscapingTests: CLITestCase {
    /// An SGR sequence, a line feed, then a C1 CSI (U+009B, which JSON encoders leave raw): raw, it
    /// turns the terminal red, splits a line and starts another control sequence.
    static let hostile = "x\u{1B}[31m\ny\u{9B}2J"
    /// `hostile` as `String.escapingControlCharacters` writes it.
    static let escaped = "x\\u{1B}[31m\\ny\\u{9B}2J"

    /// Asserts that `text` holds no control character but the line feeds between lines (nor a C1
    /// control or a line/paragraph separator), that no line starts with the hostile text's second
    /// line, and that each of `expected` occurs.
    /// A document (`lines` false: the model card, markdown whose text keeps the line feeds of its
    /// values, as the card file does) is only checked for control characters.
    private func assertClean(_ text: String, _ expected: [String] = [StdoutEscapingTests.escaped], _ what: String, lines: Bool = true,
                             file: StaticString = #filePath, line: UInt = #line) {
        let raw = text.unicodeScalars.filter { $0 != "\n" && $0.isEscapedInErrorLines }
        XCTAssertTrue(raw.isEmpty, "\(what): raw \(raw.map { String($0.value, radix: 16) }) in:\n\(text)", file: file, line: line)
        XCTAssertFalse(lines && text.split(separator: "\n").contains { $0.hasPrefix("y") }, "\(what): a value split a line:\n\(text)", file: file, line: line)
        for e in expected { XCTAssertTrue(text.contains(e), "\(what): expected \(e) in:\n\(text)", file: file, line: line) }
    }

    /// `bissl args...` (with `--zoo` unless `zoo` is false), which must succeed; its stdout.
    private func run(_ args: [String], zoo: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = zoo ? try bissl(args) : try Fixtures.runBissl(args)
        XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    /// Two entries whose provenance carries the hostile text in every free-text field: a parent and
    /// a fine-tuned child (its edge note, hyperparameters, command line, dataset URI, warnings).
    private func hostileZoo() throws {
        let arch = Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small")
        let h = Self.hostile
        let z = try Zoo.open(ZooLayout(root: zooDir), create: true)
        defer { try? z.close() }
        var parent = Provenance(stage: "pretext", method: "simclr", hyperparameters: ["lr": .string(h)],
                                warnings: [h], commandLine: ["bissl", "pretrain", h])
        parent.datasets = [.init(role: "train", uri: "h5:/data/\(h).h5", fingerprint: String(repeating: "0", count: 64))]
        let a = try z.add(Network(architecture: arch, seed: 1).checkpoint(provenance: parent), name: "p")
        var child = Provenance(stage: "finetune", method: "finetune", parents: [.init(id: a.id, relation: "finetuned-from", note: h)],
                               hyperparameters: ["lr": .string("b" + h), h: .int(1)], warnings: ["c" + h],
                               commandLine: ["bissl", "finetune", "p", "--note", h])
        child.datasets = parent.datasets
        _ = try z.add(Network(architecture: arch, seed: 2).checkpoint(provenance: child), name: "c")
    }

    func testProvenanceTextIsEscapedInListShowLineageDiffAndCard() throws {
        try hostileZoo()
        assertClean(try run(["show", "c"]), [Self.escaped], "show")
        assertClean(try run(["list"]), [], "list")
        for format in ["text", "dot", "mermaid"] {
            assertClean(try run(["lineage", "c", "--format", format]), format == "text" ? [Self.escaped] : [], "lineage \(format)")
        }
        assertClean(try run(["diff", "p", "c", "--all"]), [Self.escaped], "diff")
        assertClean(try run(["card", "c"]), [], "card", lines: false)
        // JSON: valid, the hostile text intact once decoded, no raw control character.
        for args in [["diff", "p", "c", "--json"], ["lineage", "c", "--format", "json"], ["list", "--json"], ["show", "c", "--json"]] {
            let out = try run(args)
            assertClean(out, [], args.joined(separator: " "))
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(out.utf8)), args.joined(separator: " "))
        }
        let lineageJSON = try run(["lineage", "c", "--format", "json"])
        XCTAssertTrue(lineageJSON.contains(#"x\u001b[31m\ny\u009b2J"#), lineageJSON)
    }

    /// A ResNet checkpoint file with one more tensor whose key holds the hostile text: the rule
    /// naming the dropped key is printed by convert and import, and by show for the entry.
    func testAKeyFromAFileIsEscapedInConvertImportAndShow() throws {
        let base = tmp.appendingPathComponent("base.safetensors")
        let made = try Fixtures.runBissl(["convert", Fixtures.url("pth/resnet18_w2.pth").path, base.path])
        XCTAssertEqual(made.status, 0, made.stderr)
        let input = try addingTensor(named: Self.hostile, to: base)
        assertClean(try run(["inspect", input], zoo: false), [Self.escaped], "inspect")
        assertClean(try run(["convert", input, tmp.appendingPathComponent("o.h5").path], zoo: false), [Self.escaped], "convert")
        assertClean(try run(["import", input, "--name", "k"]), [Self.escaped], "import")
        assertClean(try run(["show", "k"]), [Self.escaped], "show")
    }

    /// A dataset in a folder whose name holds the hostile text: probe's lines naming the data.
    func testADatasetPathIsEscapedInProbe() throws {
        try hostileZoo()
        let folder = tmp.appendingPathComponent(Self.hostile)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.digits, toPath: folder.appendingPathComponent("d.h5").path)
        let split = folder.appendingPathComponent("s.txt")
        try (0..<40).map(String.init).joined(separator: "\n").write(to: split, atomically: true, encoding: .utf8)
        let uri = "h5:\(folder.path)/d.h5#split=\(split.path)"
        assertClean(try run(["probe", "p", "--data", uri, "--eval-data", uri, "--image-size", "8", "--knn", "3", "--probe-epochs", "1"]),
                    [Self.escaped], "probe")
        assertClean(try run(["data", "info", uri], zoo: false), [Self.escaped], "data info")
    }

    /// A warning on stderr naming a file (an undecodable image) escapes the name as stdout does.
    func testAWarningNamingAFileIsEscapedOnStderr() throws {
        let root = tmp.appendingPathComponent("folder")
        let cat = root.appendingPathComponent("cat")
        try FileManager.default.createDirectory(at: cat, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Fixtures.url("datasets/folder/cat/rgb.png"), to: cat.appendingPathComponent("1.png"))
        try Data("not a png".utf8).write(to: cat.appendingPathComponent(Self.hostile + ".png"))
        let r = try Fixtures.runBissl(["data", "info", "folder:\(root.path)"])
        XCTAssertEqual(r.status, 0, r.stderr)
        assertClean(r.stderr, [Self.escaped], "data info warnings")
    }

    /// `file` (a safetensors file) with one more 1-byte uint8 tensor named `key`, as a new file.
    private func addingTensor(named key: String, to file: URL) throws -> String {
        let data = try Data(contentsOf: file)
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        let body = data.subdata(in: (8 + n)..<data.count)
        header[key] = ["dtype": "U8", "shape": [1], "data_offsets": [body.count, body.count + 1]]
        var json = try JSONSerialization.data(withJSONObject: header)
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var length = UInt64(json.count).littleEndian
        let out = tmp.appendingPathComponent("hostile.safetensors")
        try (Data(bytes: &length, count: 8) + json + body + Data([7])).write(to: out)
        return out.path
    }
}
