import Foundation
import XCTest
import Zoo
import TestSupport

/// Exact expected output for a small DAG (shared ancestor, an entry with two parents), escaping of
/// hostile names, dot accepted by Graphviz, and speed on a 1,000-deep chain.
final class LineageRenderTests: XCTestCase {
    static func id(_ digit: Character) -> String { String(repeating: digit, count: 64) }

    /// in1k (imported) -> byol (pretext) -> {cifar (bissl), pets (bissl)} -> merged (finetune, two parents);
    /// `other` is a sibling branch of byol (child of in1k).
    static let graph = LineageGraph(
        root: LineageRenderTests.id("5"),
        nodes: [
            LineageNode(id: LineageRenderTests.id("5"), name: "ft-merged", stage: "finetune", method: "sgd", arch: "resnet50",
                        created: "2026-01-05T00:00:00Z"),
            LineageNode(id: LineageRenderTests.id("1"), name: "r50-in1k", stage: "imported", arch: "resnet50",
                        created: "2026-01-01T00:00:00Z"),
            LineageNode(id: LineageRenderTests.id("2"), name: "r50-byol", stage: "pretext", method: "byol", arch: "resnet50",
                        created: "2026-01-02T00:00:00Z"),
            LineageNode(id: LineageRenderTests.id("4"), name: "bissl-pets", stage: "bissl", method: "bissl", arch: "resnet50",
                        created: "2026-01-04T00:00:00Z"),
            LineageNode(id: LineageRenderTests.id("3"), name: "bissl-cifar10", stage: "bissl", method: "bissl", arch: "resnet50",
                        created: "2026-01-03T00:00:00Z"),
            LineageNode(id: LineageRenderTests.id("6"), name: "other", stage: "finetune", arch: "resnet50", created: "2026-01-06T00:00:00Z"),
        ],
        edges: [
            LineageEdge(parent: LineageRenderTests.id("1"), child: LineageRenderTests.id("2"), relation: "pretrained-from"),
            LineageEdge(parent: LineageRenderTests.id("2"), child: LineageRenderTests.id("3"), relation: "aligned-from"),
            LineageEdge(parent: LineageRenderTests.id("2"), child: LineageRenderTests.id("4"), relation: "aligned-from"),
            LineageEdge(parent: LineageRenderTests.id("3"), child: LineageRenderTests.id("5"), relation: "finetuned-from",
                        note: "classifier re-initialised 1000 -> 10"),
            LineageEdge(parent: LineageRenderTests.id("4"), child: LineageRenderTests.id("5"), relation: "finetuned-from"),
            LineageEdge(parent: LineageRenderTests.id("1"), child: LineageRenderTests.id("6"), relation: "finetuned-from"),
        ])

    func testTextUpMarksTheSharedAncestorAsRepeat() {
        let expected = """
            555555555555  ft-merged  finetune/sgd  resnet50  2026-01-05T00:00:00Z
            ancestors:
              ├── 333333333333  bissl-cifar10  bissl/bissl  resnet50  2026-01-03T00:00:00Z  [finetuned-from: classifier re-initialised 1000 -> 10]
              │   222222222222  r50-byol  pretext/byol  resnet50  2026-01-02T00:00:00Z  [aligned-from]
              │   111111111111  r50-in1k  imported  resnet50  2026-01-01T00:00:00Z  [pretrained-from]
              └── 444444444444  bissl-pets  bissl/bissl  resnet50  2026-01-04T00:00:00Z  [finetuned-from]
                  222222222222  r50-byol  pretext/byol  resnet50  2026-01-02T00:00:00Z  [aligned-from]  (repeat, see above)

            """
        XCTAssertEqual(LineageRender.text(Self.graph, direction: .up), expected)
    }

    func testTextBothFromTheImportedRoot() {
        var g = Self.graph
        g.root = Self.id("1")
        let expected = """
            111111111111  r50-in1k  imported  resnet50  2026-01-01T00:00:00Z
            ancestors:
              (none)
            descendants:
              ├── 222222222222  r50-byol  pretext/byol  resnet50  2026-01-02T00:00:00Z  [pretrained-from]
              │   ├── 333333333333  bissl-cifar10  bissl/bissl  resnet50  2026-01-03T00:00:00Z  [aligned-from]
              │   │   555555555555  ft-merged  finetune/sgd  resnet50  2026-01-05T00:00:00Z  [finetuned-from: classifier re-initialised 1000 -> 10]
              │   └── 444444444444  bissl-pets  bissl/bissl  resnet50  2026-01-04T00:00:00Z  [aligned-from]
              │       555555555555  ft-merged  finetune/sgd  resnet50  2026-01-05T00:00:00Z  [finetuned-from]  (repeat, see above)
              └── 666666666666  other  finetune  resnet50  2026-01-06T00:00:00Z  [finetuned-from]

            """
        XCTAssertEqual(LineageRender.text(g, direction: .both), expected)
        XCTAssertEqual(try LineageRender.render(g, format: .text, direction: .both), expected)
    }

    func testTextBothSidesOfAMiddleEntry() {
        var g = Self.graph
        g.root = Self.id("2")
        let expected = """
            222222222222  r50-byol  pretext/byol  resnet50  2026-01-02T00:00:00Z
            ancestors:
              111111111111  r50-in1k  imported  resnet50  2026-01-01T00:00:00Z  [pretrained-from]
            descendants:
              ├── 333333333333  bissl-cifar10  bissl/bissl  resnet50  2026-01-03T00:00:00Z  [aligned-from]
              │   555555555555  ft-merged  finetune/sgd  resnet50  2026-01-05T00:00:00Z  [finetuned-from: classifier re-initialised 1000 -> 10]
              └── 444444444444  bissl-pets  bissl/bissl  resnet50  2026-01-04T00:00:00Z  [aligned-from]
                  555555555555  ft-merged  finetune/sgd  resnet50  2026-01-05T00:00:00Z  [finetuned-from]  (repeat, see above)

            """
        XCTAssertEqual(LineageRender.text(g, direction: .both), expected)
    }

    func testTextDownOfALeafAndUnknownOrRemovedParents() {
        let g = LineageGraph(
            root: Self.id("a"),
            nodes: [LineageNode(id: Self.id("a"), shortID: "aaaaaa", stage: "finetune"),
                    LineageNode(id: Self.id("b"), shortID: "bbbbbb", name: "gone", stage: "bissl", removed: true)],
            edges: [LineageEdge(parent: Self.id("b"), child: Self.id("a"), relation: "finetuned-from"),
                    LineageEdge(parent: Self.id("c"), child: Self.id("b"), relation: "aligned-from")])
        XCTAssertEqual(LineageRender.text(g, direction: .down), "aaaaaa  finetune\ndescendants:\n  (none)\n")
        XCTAssertEqual(LineageRender.text(g, direction: .up), """
            aaaaaa  finetune
            ancestors:
              bbbbbb  gone  bissl  (removed)  [finetuned-from]
              cccccccccccc  (not in zoo)  [aligned-from]

            """)
    }

    func testCycleTerminates() {
        let g = LineageGraph(
            root: Self.id("a"),
            nodes: [LineageNode(id: Self.id("a"), shortID: "a", stage: "x"), LineageNode(id: Self.id("b"), shortID: "b", stage: "y")],
            edges: [LineageEdge(parent: Self.id("a"), child: Self.id("b"), relation: "r"),
                    LineageEdge(parent: Self.id("b"), child: Self.id("a"), relation: "r")])
        XCTAssertEqual(LineageRender.text(g, direction: .up), "a  x\nancestors:\n  b  y  [r]\n  a  x  [r]  (repeat, see above)\n")
    }

    func testRestrictedKeepsOnlyTheRequestedSide() {
        let up = Self.graph.restricted(to: .up)
        XCTAssertEqual(Set(up.nodes.map(\.id)), Set("51234".map(Self.id)))
        XCTAssertEqual(up.nodes.first?.id, Self.id("5"), "root first")
        XCTAssertEqual(up.edges.count, 5)
        var g = Self.graph
        g.root = Self.id("2")
        XCTAssertEqual(Set(g.restricted(to: .down).nodes.map(\.id)), Set("2345".map(Self.id)))
        XCTAssertEqual(Set(g.restricted(to: .up).nodes.map(\.id)), Set("21".map(Self.id)))
        XCTAssertEqual(Set(g.restricted(to: .both).nodes.map(\.id)), Set("12345".map(Self.id)), "sibling branch 6 left out")
    }

    func testJSONRoundTrip() throws {
        let json = try LineageRender.render(Self.graph, format: .json, direction: .up)
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        XCTAssertEqual(Set(object.keys), ["root", "direction", "nodes", "edges"])
        XCTAssertEqual(object["direction"] as? String, "up")
        let nodes = object["nodes"] as! [[String: Any]]
        XCTAssertEqual(nodes.count, 5)
        XCTAssertEqual(nodes[0]["shortID"] as? String, "555555555555")
        XCTAssertEqual(nodes[0]["removed"] as? Bool, false)
        struct Doc: Decodable { var root: String; var nodes: [LineageNode]; var edges: [LineageEdge] }
        let doc = try JSONDecoder().decode(Doc.self, from: Data(json.utf8))
        XCTAssertEqual(LineageGraph(root: doc.root, nodes: doc.nodes, edges: doc.edges), Self.graph.restricted(to: .up))
    }

    // MARK: - dot

    static let hostile = LineageGraph(
        root: LineageRenderTests.id("a"),
        nodes: [LineageNode(id: LineageRenderTests.id("a"), name: "say \"hi\" \\ back\nslash {x} <b>#1</b> & ;", stage: "finetune",
                            method: "sgd", arch: "resnet50"),
                LineageNode(id: LineageRenderTests.id("b"), name: "end", stage: "bissl", removed: true)],
        edges: [LineageEdge(parent: LineageRenderTests.id("b"), child: LineageRenderTests.id("a"), relation: "finetuned-from",
                            note: "head \"fc\" 1000 -> 10 | x")])

    func testDotExactForTheHostileGraph() {
        let a = Self.id("a"), b = Self.id("b")
        let expected = """
            digraph lineage {
              rankdir=TB;
              node [shape=box, fontname="Helvetica", fontsize=10];
              edge [fontname="Helvetica", fontsize=9];
              "\(a)" [label="aaaaaaaaaaaa\\nsay \\"hi\\" \\\\ back\\nslash {x} <b>#1</b> & ;\\nfinetune/sgd · resnet50", style="bold"];
              "\(b)" [label="bbbbbbbbbbbb\\nend\\nbissl\\nremoved", style="dashed"];
              "\(b)" -> "\(a)" [label="finetuned-from\\nhead \\"fc\\" 1000 -> 10 | x"];
            }

            """
        XCTAssertEqual(LineageRender.dot(Self.hostile), expected)
    }

    func testDotIsAcceptedByGraphviz() throws {
        let dotPath = ["/usr/bin/dot", "/usr/local/bin/dot"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let dotPath else { throw XCTSkip("graphviz `dot` not installed") }
        for graph in [Self.graph, Self.hostile] {
            let source = LineageRender.dot(graph)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: dotPath)
            process.arguments = ["-Tsvg"]
            let input = Pipe(), output = Pipe(), errors = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            input.fileHandleForWriting.write(Data(source.utf8))
            try input.fileHandleForWriting.close()
            let svg = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, stderr)
            XCTAssertTrue(stderr.isEmpty, stderr)
            // One <g class="node"> per entry and one <g class="edge"> per edge.
            XCTAssertEqual(svg.components(separatedBy: "class=\"node\"").count - 1, graph.nodes.count, svg)
            XCTAssertEqual(svg.components(separatedBy: "class=\"edge\"").count - 1, graph.edges.count, svg)
        }
        // The label text survives escaping: Graphviz shows the quotes and the backslash.
        let svg = try runDot(LineageRender.dot(Self.hostile), dotPath: dotPath)
        XCTAssertTrue(svg.contains("say &quot;hi&quot; \\ back"), svg)
    }

    private func runDot(_ source: String, dotPath: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: dotPath)
        process.arguments = ["-Tsvg"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(source.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: - Mermaid

    func testMermaidExactForTheHostileGraph() {
        let expected = """
            flowchart TD
              n0["aaaaaaaaaaaa<br/>say #quot;hi#quot; \\ back slash {x} #lt;b#gt;#35;1#lt;/b#gt; #amp; ;<br/>finetune/sgd · resnet50"]
              n1["bbbbbbbbbbbb<br/>end<br/>bissl<br/>removed"]
              n1 -->|"finetuned-from head #quot;fc#quot; 1000 -#gt; 10 #124; x"| n0
              classDef root stroke-width:3px
              classDef removed stroke-dasharray:5 5
              class n0 root
              class n1 removed

            """
        XCTAssertEqual(LineageRender.mermaid(Self.hostile), expected)
    }

    func testMermaidStructure() {
        let text = LineageRender.mermaid(Self.graph.restricted(to: .up))
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "flowchart TD")
        let nodeLines = lines.filter { $0.range(of: #"^  n\d+\["[^"]*"\]$"#, options: .regularExpression) != nil }
        let edgeLines = lines.filter { $0.range(of: #"^  n\d+ -->\|"[^"]*"\| n\d+$"#, options: .regularExpression) != nil }
        XCTAssertEqual(nodeLines.count, 5)
        XCTAssertEqual(edgeLines.count, 5)
        XCTAssertEqual(lines.count, 1 + 5 + 5 + 3, text)
    }

    // MARK: - Carried records

    /// `claimed` was imported from a bissl .h5: its record, and so its `finetuned-from` edge to an
    /// entry this zoo never held, is that file's claim; `child` was fine-tuned from it here.
    static let carried = LineageGraph(
        root: LineageRenderTests.id("c"),
        nodes: [LineageNode(id: LineageRenderTests.id("c"), name: "claimed", stage: "finetune", method: "finetune", arch: "resnet18",
                            created: "2026-01-01T00:00:00Z", carried: true),
                LineageNode(id: LineageRenderTests.id("e"), name: "child", stage: "finetune", method: "finetune", arch: "resnet18",
                            created: "2026-01-02T00:00:00Z")],
        edges: [LineageEdge(parent: LineageRenderTests.id("d"), child: LineageRenderTests.id("c"), relation: "finetuned-from", carried: true),
                LineageEdge(parent: LineageRenderTests.id("c"), child: LineageRenderTests.id("e"), relation: "finetuned-from")])

    /// Every format marks the carried entry and the edge its record claims, and only those (the
    /// claimed edge was shown as a recorded one).
    func testCarriedRecordsAndTheEdgesTheyClaimAreMarkedInEveryFormat() throws {
        let c = Self.id("c"), d = Self.id("d"), e = Self.id("e")
        XCTAssertEqual(LineageRender.text(Self.carried), """
            cccccccccccc  claimed  finetune/finetune  resnet18  2026-01-01T00:00:00Z  (carried)
            ancestors:
              dddddddddddd  (not in zoo)  [finetuned-from]  (claimed by the file)
            descendants:
              eeeeeeeeeeee  child  finetune/finetune  resnet18  2026-01-02T00:00:00Z  [finetuned-from]

            """)

        let json = try LineageRender.render(Self.carried, format: .json)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let nodes = try XCTUnwrap(object["nodes"] as? [[String: Any]])
        let edges = try XCTUnwrap(object["edges"] as? [[String: Any]])
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: nodes.map { ($0["id"] as! String, $0["carried"] as? Bool) }),
                       [c: true, e: false, d: false], json)
        XCTAssertEqual(edges.map { "\(($0["parent"] as! String).prefix(1))\(($0["child"] as! String).prefix(1)) \($0["carried"] as? Bool ?? false)" },
                       ["dc true", "ce false"], json)

        XCTAssertEqual(LineageRender.mermaid(Self.carried), """
            flowchart TD
              n0["cccccccccccc<br/>claimed<br/>finetune/finetune · resnet18<br/>2026-01-01T00:00:00Z<br/>carried"]
              n1["eeeeeeeeeeee<br/>child<br/>finetune/finetune · resnet18<br/>2026-01-02T00:00:00Z"]
              n2["dddddddddddd<br/>not in zoo"]
              n2 -.->|"finetuned-from (claimed by the file)"| n0
              n0 -->|"finetuned-from"| n1
              classDef root stroke-width:3px
              classDef removed stroke-dasharray:5 5
              class n0 root

            """)

        let dot = LineageRender.dot(Self.carried)
        XCTAssertTrue(dot.contains("  \"\(c)\" [label=\"cccccccccccc\\nclaimed\\nfinetune/finetune · resnet18\\n2026-01-01T00:00:00Z\\ncarried\", style=\"bold\"];\n"), dot)
        XCTAssertTrue(dot.contains("  \"\(d)\" -> \"\(c)\" [label=\"finetuned-from\\n(claimed by the file)\", style=\"dashed\"];\n"), dot)
        XCTAssertTrue(dot.contains("  \"\(c)\" -> \"\(e)\" [label=\"finetuned-from\"];\n"), dot)
    }

    // MARK: - Long chains

    /// A 1,000-deep chain in every format and direction (its speed is measured by `make bench`).
    func testThousandDeepChainRendersInOneColumn() throws {
        let ids = (0..<1000).map { String(format: "%064x", $0) }
        let nodes = ids.enumerated().map { i, id in
            LineageNode(id: id, name: "run-\(i)", stage: i == 0 ? "imported" : "finetune", method: i == 0 ? nil : "sgd",
                        arch: "resnet50", created: String(format: "2026-01-01T00:%02d:%02dZ", i / 60 % 60, i % 60))
        }
        let edges = (1..<1000).map { LineageEdge(parent: ids[$0 - 1], child: ids[$0], relation: "finetuned-from") }
        for root in [ids[999], ids[0]] {
            let g = LineageGraph(root: root, nodes: nodes, edges: edges)
            for format in LineageFormat.allCases {
                let out = try LineageRender.render(g, format: format, direction: .both)
                if format == .text {
                    let lines = out.split(separator: "\n")
                    XCTAssertEqual(lines.count, 1 + 1 + 1 + 999 + (root == ids[0] ? 1 : 1))
                    // A chain stays in one column.
                    XCTAssertTrue(lines.allSatisfy { $0.count < 120 })
                }
            }
        }
    }
}
