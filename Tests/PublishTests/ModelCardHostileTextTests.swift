import Checkpoint
import Foundation
@testable import Publish
import XCTest

/// A card of an entry whose file and provenance carry control characters (a tensor-key prefix such
/// as `enc<ESC>[2J<LF>.`, DEL, C1, NUL, U+2028) and `|`: the Markdown keeps one line per field and
/// its table rows intact, holds no control character but its own line feeds (printed or written as
/// README.md), and the front matter quotes each value exactly.
final class ModelCardHostileTextTests: XCTestCase {
    /// ESC + a clear-screen sequence, a line feed starting a Markdown heading, DEL, NEL and CSI (C1),
    /// NUL, U+2028, and a table separator.
    static let hostile = "enc\u{1B}[2J\n# injected\u{7F}\u{85}\u{9B}\u{0}\u{2028}|x."

    static func lineage() -> CardLineage {
        let h = hostile
        var source = Provenance.Source(fileName: h + "r18.pth", sha256: String(repeating: "c", count: 64), format: "pth", container: "zip",
                                       rules: ["stripped prefix " + h], keyPath: h, strippedPrefix: h, droppedKeys: [h])
        source.metadata["license"] = h
        let parent = Provenance(stage: "imported", method: h, source: source, warnings: [h], commandLine: ["bissl", "import", h],
                                startedAt: h, endedAt: h)
        let child = Provenance(stage: "finetune", method: "finetune", parents: [.init(id: ModelCardTests.parentID, relation: "finetuned-from", note: h)],
                               datasets: [.init(role: "downstream-val", uri: h, fingerprint: h)],
                               hyperparameters: [h: .string(h), "nested": .object([h: .array([.string(h)])])],
                               seeds: [h: 1], metrics: ["top1": 90.5, h: 1.5], warnings: [h], commandLine: ["bissl", "finetune", h])
        return CardLineage(stages: [
            .init(id: ModelCardTests.parentID, labels: [h], status: "listed", provenance: parent, arch: "resnet18", components: ["backbone", "classifier"]),
            .init(id: ModelCardTests.childID, labels: [h], status: "listed", provenance: child, arch: "resnet18", components: ["backbone", "classifier"]),
        ])
    }

    /// The scalars of `text` that `String.escapingControlCharacters` would escape, line feeds aside.
    static func controls(_ text: String) -> [UInt32] {
        text.unicodeScalars.filter { $0 != "\n" && $0.isEscapedInErrorLines }.map(\.value)
    }

    /// Cell separators of a table row: `|` not escaped as `\|` (GitHub Flavored Markdown tables).
    static func separators(_ row: Substring) -> Int {
        var count = 0
        var previous: Character = " "
        for c in row {
            if c == "|" && previous != "\\" { count += 1 }
            previous = c
        }
        return count
    }

    func testEveryRecordedFieldStaysOnItsLineWithoutControlCharacters() {
        let card = ModelCard.render(Self.lineage(), preprocessing: .init(imageSize: nil))
        XCTAssertEqual(Self.controls(card), [])
        let lines = card.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertFalse(lines.contains { $0.hasPrefix("# injected") }, "a recorded line feed started a Markdown line")
        // The key as the reader sees it: each control character as its escape, on one line.
        XCTAssertTrue(card.contains("state dict at `enc\\u{1B}[2J\\n# injected\\u{7F}\\u{85}\\u{9B}\\u{0}\\u{2028}|x.`"))
        XCTAssertTrue(card.contains("- rule: stripped prefix enc\\u{1B}[2J\\n# injected"))
        // Every row of each table has the separators of its header row (a raw line feed or `|` would
        // end a row early or add a cell).
        var tables = 0
        var header: Int?
        for line in lines {
            guard line.hasPrefix("|") else { header = nil; continue }
            if let header {
                XCTAssertEqual(Self.separators(line), header, "row: \(line)")
            } else {
                header = Self.separators(line)
                tables += 1
            }
        }
        XCTAssertEqual(tables, 5)  // lineage, data, evaluation, the child stage's hyperparameters and metrics
    }

    func testFrontMatterQuotesTheValuesExactlyWithoutRawControlCharacters() throws {
        let yaml = ModelCard.frontMatter(Self.lineage())
        XCTAssertEqual(Self.controls(yaml), [])
        // Each quoted value is a JSON string (valid YAML double-quoted scalar) that reads back exactly.
        let license = try XCTUnwrap(yaml.split(separator: "\n").first { $0.hasPrefix("license: ") })
        let value = try JSONDecoder().decode(String.self, from: Data(license.dropFirst("license: ".count).utf8))
        XCTAssertEqual(value, Self.hostile)
    }

    func testTheHubFolderCardHoldsNoControlCharacter() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-hub-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let c = try ONNXExportTests.checkpoint()
        let id = ContentID.compute(c)
        var lineage = Self.lineage()
        lineage.stages[1].id = id
        let dir = scratch.appendingPathComponent("hub")
        try HubFolder.write(c, id: id, lineage: lineage, preprocessing: .init(imageSize: 32), to: dir)
        let readme = try Data(contentsOf: dir.appendingPathComponent("README.md"))
        let text = try XCTUnwrap(String(data: readme, encoding: .utf8))
        XCTAssertEqual(Self.controls(text), [])
        XCTAssertFalse(text.split(separator: "\n").contains { $0.hasPrefix("# injected") })
    }

    /// A code span's delimiter is one backtick longer than the longest run inside (CommonMark,
    /// "Code spans"), padded with a space where the text would join it or lose an edge space.
    func testACodeSpanIsDelimitedByALongerBacktickRunThanItHolds() {
        XCTAssertEqual(ModelCard.code("layer1.0.conv1.weight"), "`layer1.0.conv1.weight`")
        XCTAssertEqual(ModelCard.code("enc`x"), "``enc`x``")
        XCTAssertEqual(ModelCard.code("a``b`c"), "```a``b`c```")
        XCTAssertEqual(ModelCard.code("`"), "`` ` ``")
        XCTAssertEqual(ModelCard.code("x`"), "`` x` ``")
        XCTAssertEqual(ModelCard.code(" a "), "`  a  `")
        XCTAssertEqual(ModelCard.code("  "), "`  `")
        XCTAssertEqual(ModelCard.code(""), "``")
    }

    /// A backtick in a recorded field (a key path, a source file name, a hyperparameter, seed and
    /// metric name, a label) ended its code span early and left the rest as Markdown: each is one
    /// span now, in the printed card and the hub README.md alike.
    func testABacktickInARecordedFieldStaysInsideItsCodeSpan() throws {
        let key = "enc`.`` *x*"
        var source = Provenance.Source(fileName: "r`18.pth", sha256: String(repeating: "c", count: 64), format: "pth", container: "zip",
                                       rules: [], keyPath: key)
        source.metadata["license"] = "mit"
        let parent = Provenance(stage: "imported", source: source)
        let child = Provenance(stage: "finetune", method: "finetune", parents: [.init(id: ModelCardTests.parentID, relation: "finetuned-from")],
                               hyperparameters: [key: .string("v")], seeds: [key: 1], metrics: [key: 1.5])
        let lineage = CardLineage(stages: [
            .init(id: ModelCardTests.parentID, labels: ["p"], status: "listed", provenance: parent, arch: "resnet18", components: ["backbone"]),
            .init(id: ModelCardTests.childID, labels: ["c"], status: "listed", provenance: child, arch: "resnet`18", components: ["backbone"]),
        ])
        // The longest run inside is 2, so 3 delimit it; it neither starts nor ends with a backtick or space.
        XCTAssertEqual(ModelCard.code(key), "```enc`.`` *x*```")
        let card = ModelCard.render(lineage, preprocessing: .init(imageSize: nil))
        XCTAssertTrue(card.contains("- source file: ``r`18.pth`` (pth, zip)"), card)
        XCTAssertTrue(card.contains("state dict at ```enc`.`` *x*```\n"), card)
        XCTAssertEqual(card.components(separatedBy: "| ```enc`.`` *x*``` | ").count, 3, "the hyperparameter and metric rows: \(card)")
        XCTAssertTrue(card.contains("- seed ```enc`.`` *x*```: 1\n"), card)
        XCTAssertTrue(card.contains("| ```enc`.`` *x*``` | 1.5 |"), card)
        XCTAssertTrue(card.contains("A ``resnet`18`` made by the `finetune` stage"), card)

        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-hub-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let c = try ONNXExportTests.checkpoint()
        var hubLineage = lineage
        hubLineage.stages[1].id = ContentID.compute(c)
        try HubFolder.write(c, id: hubLineage.stages[1].id, lineage: hubLineage, preprocessing: .init(imageSize: 32), to: scratch.appendingPathComponent("hub"))
        let readme = try String(contentsOf: scratch.appendingPathComponent("hub/README.md"), encoding: .utf8)
        XCTAssertTrue(readme.contains("state dict at ```enc`.`` *x*```\n"), readme)
        XCTAssertTrue(readme.contains("- seed ```enc`.`` *x*```: 1\n"), readme)
    }
}
