import Checkpoint
import Foundation

/// One zoo entry in a lineage graph.
public struct LineageNode: Codable, Equatable, Sendable {
    /// Full content id (64 hex digits).
    public var id: String
    /// Shortest unique prefix the zoo shows for it (12 hex digits unless the caller says otherwise).
    public var shortID: String
    /// Name or first tag, if any.
    public var name: String?
    /// Provenance stage: `imported`, `pretext`, `bissl`, `finetune`, `probe`.
    public var stage: String
    /// Training method (`simclr`, `byol`, `bissl`, ...), if known.
    public var method: String?
    /// Architecture label (`resnet50`, `resnet18-w16-small`), if known.
    public var arch: String?
    /// ISO 8601 UTC creation time.
    public var created: String?
    /// True for a parent removed with `bissl rm --force` that descendants still record.
    public var removed: Bool
    /// For an entry of a remote whose manifest is damaged (unreadable): that manifest's URL
    /// (`s3://BUCKET/PREFIX/entries/<id>.json`); the node's other fields are then unknown.
    public var damaged: String?
    /// True when the entry's record is carried from an imported bissl `.h5` (`Provenance.carriedFrom`):
    /// its stage, method, parents and creation time are that file's claim, not bissl's record.
    public var carried: Bool

    public init(id: String, shortID: String? = nil, name: String? = nil, stage: String, method: String? = nil,
                arch: String? = nil, created: String? = nil, removed: Bool = false, damaged: String? = nil,
                carried: Bool = false) {
        self.id = id
        self.shortID = shortID ?? String(id.prefix(12))
        self.name = name
        self.stage = stage
        self.method = method
        self.arch = arch
        self.created = created
        self.removed = removed
        self.damaged = damaged
        self.carried = carried
    }
}

/// A parent -> child relation (`Provenance.Parent` seen from the child).
public struct LineageEdge: Codable, Equatable, Sendable {
    public var parent: String
    public var child: String
    /// `imported-from`, `pretrained-from`, `aligned-from`, `finetuned-from`, `probed-from`.
    public var relation: String
    /// Free-form detail ("classifier re-initialised 1000 -> 10").
    public var note: String?
    /// True when the child's record is carried from an imported bissl `.h5` (`Provenance.carriedFrom`):
    /// the relation is that file's claim (`show`: "parents (claimed by the file)"), not bissl's record.
    public var carried: Bool

    public init(parent: String, child: String, relation: String, note: String? = nil, carried: Bool = false) {
        self.parent = parent
        self.child = child
        self.relation = relation
        self.note = note
        self.carried = carried
    }
}

/// Which side of an entry `bissl lineage` shows.
public enum LineageDirection: String, Codable, CaseIterable, Sendable {
    /// Ancestors (parents, their parents, ...).
    case up
    /// Descendants.
    case down
    /// Both.
    case both
}

/// Output formats of `bissl lineage --format`.
public enum LineageFormat: String, Codable, CaseIterable, Sendable {
    case text, json, dot, mermaid
}

/// The lineage of one entry (`root`): nodes and edges, possibly a DAG (an entry may have several
/// parents, and two branches may share an ancestor).
public struct LineageGraph: Codable, Equatable, Sendable {
    /// Id of the entry the lineage is about.
    public var root: String
    public var nodes: [LineageNode]
    public var edges: [LineageEdge]

    public init(root: String, nodes: [LineageNode], edges: [LineageEdge]) {
        self.root = root
        self.nodes = nodes
        self.edges = edges
    }

    /// The sub-graph `direction` shows: the root plus every node reachable from it through parent
    /// edges (`up`), child edges (`down`) or either (`both`), and the edges between kept nodes, in the
    /// original order. Nodes an edge names but `nodes` lacks get a placeholder (`stage` "unknown").
    public func restricted(to direction: LineageDirection) -> LineageGraph {
        let index = LineageIndex(self)
        var keep: Set<String> = [root]
        if direction != .down { keep.formUnion(index.reachable(from: root, up: true)) }
        if direction != .up { keep.formUnion(index.reachable(from: root, up: false)) }
        let kept = index.orderedIDs.filter(keep.contains).map { index.node($0) }
        return LineageGraph(root: root, nodes: kept,
                            edges: edges.filter { keep.contains($0.parent) && keep.contains($0.child) })
    }
}

/// Adjacency of a `LineageGraph`, built once per render.
struct LineageIndex {
    var nodesByID: [String: LineageNode] = [:]
    /// Root first, then nodes in graph order, then ids only edges name.
    var orderedIDs: [String] = []
    var parentEdges: [String: [LineageEdge]] = [:]
    var childEdges: [String: [LineageEdge]] = [:]

    init(_ graph: LineageGraph) {
        var seen: Set<String> = []
        func note(_ id: String) { if seen.insert(id).inserted { orderedIDs.append(id) } }
        note(graph.root)
        for n in graph.nodes {
            if nodesByID[n.id] == nil { nodesByID[n.id] = n }
            note(n.id)
        }
        for e in graph.edges {
            parentEdges[e.child, default: []].append(e)
            childEdges[e.parent, default: []].append(e)
            note(e.parent)
            note(e.child)
        }
    }

    /// The node for `id`, or a placeholder for an id known only from an edge.
    func node(_ id: String) -> LineageNode {
        nodesByID[id] ?? LineageNode(id: id, stage: "unknown")
    }

    /// Ids reachable from `start` (excluded) through parent edges (`up`) or child edges.
    func reachable(from start: String, up: Bool) -> Set<String> {
        var found: Set<String> = []
        var stack = [start]
        while let id = stack.popLast() {
            for e in (up ? parentEdges[id] : childEdges[id]) ?? [] {
                let next = up ? e.parent : e.child
                if next != start, found.insert(next).inserted { stack.append(next) }
            }
        }
        return found
    }

    /// Edges leading to the next level in a direction, ordered by the neighbour's creation time, then id.
    func steps(_ id: String, up: Bool) -> [LineageEdge] {
        let list = (up ? parentEdges[id] : childEdges[id]) ?? []
        return list.sorted { x, y in
            let a = node(up ? x.parent : x.child), b = node(up ? y.parent : y.child)
            if (a.created ?? "") != (b.created ?? "") { return (a.created ?? "") < (b.created ?? "") }
            return a.id < b.id
        }
    }
}

/// Renders a `LineageGraph` as a text tree, JSON, Graphviz dot or a Mermaid flowchart.
public enum LineageRender {
    /// `graph` restricted to `direction` in `format`; every output ends with a newline.
    /// - Throws: `ZooError.invalid` only if JSON encoding fails.
    public static func render(_ graph: LineageGraph, format: LineageFormat,
                              direction: LineageDirection = .both) throws -> String {
        switch format {
        case .text: return text(graph, direction: direction)
        case .json: return try json(graph.restricted(to: direction), direction: direction)
        case .dot: return dot(graph.restricted(to: direction))
        case .mermaid: return mermaid(graph.restricted(to: direction))
        }
    }

    // MARK: - Text

    /// A tree in the manner of `tree`: the root entry, then `ancestors:` (each entry followed by its
    /// parents) and/or `descendants:` (each entry followed by its children), indented by two spaces.
    ///
    /// An entry with exactly one next entry continues in the same column, so a chain of any length
    /// stays flat, as `git log --graph` draws linear history; where an entry has several, each branch
    /// starts with `├── ` or `└── ` and is indented. Every line after the root ends with
    /// `[relation: note]` (the relation of the child to the parent on that edge), followed by
    /// `(claimed by the file)` when the child's record is carried from an imported `.h5`. Control characters
    /// of names, relations and notes are written as escapes (`String.escapingControlCharacters`). An entry reached a
    /// second time (shared ancestor of two branches, or a cycle) is printed once more with
    /// `(repeat, see above)` and not expanded again.
    ///
    /// Entry lines: short id, name, `stage/method`, architecture, created; absent fields are left out,
    /// `(removed)` marks a removed parent, `(carried)` an entry whose record is an imported file's claim,
    /// `(not in zoo)` an id only an edge names, `(damaged manifest URL)` a remote entry whose manifest
    /// cannot be read.
    public static func text(_ graph: LineageGraph, direction: LineageDirection = .both) -> String {
        let index = LineageIndex(graph)
        var out = label(index.node(graph.root), known: index.nodesByID[graph.root] != nil) + "\n"
        for up in [true, false] where direction == .both || (direction == .up) == up {
            out += up ? "ancestors:\n" : "descendants:\n"
            let first = index.steps(graph.root, up: up)
            if first.isEmpty {
                out += "  (none)\n"
                continue
            }
            tree(index, root: graph.root, up: up, into: &out)
        }
        return out
    }

    /// Depth-first, pre-order, with an explicit stack (no recursion limit on deep chains).
    private static func tree(_ index: LineageIndex, root: String, up: Bool, into out: inout String) {
        struct Item {
            var edge: LineageEdge
            var linePrefix: String
            var childPrefix: String
        }
        var expanded: Set<String> = [root]
        var stack: [Item] = []
        func push(_ edges: [LineageEdge], prefix: String) {
            if edges.count == 1 {
                stack.append(Item(edge: edges[0], linePrefix: prefix, childPrefix: prefix))
                return
            }
            for (i, e) in edges.enumerated().reversed() {
                let last = i == edges.count - 1
                stack.append(Item(edge: e, linePrefix: prefix + (last ? "└── " : "├── "),
                                  childPrefix: prefix + (last ? "    " : "│   ")))
            }
        }
        push(index.steps(root, up: up), prefix: "  ")
        while let item = stack.popLast() {
            let id = up ? item.edge.parent : item.edge.child
            var line = item.linePrefix + label(index.node(id), known: index.nodesByID[id] != nil)
            line += "  [" + (item.edge.relation + (item.edge.note.map { ": " + $0 } ?? "")).escapingControlCharacters + "]"
            if item.edge.carried { line += "  (claimed by the file)" }
            let first = expanded.insert(id).inserted
            if !first { line += "  (repeat, see above)" }
            out += line + "\n"
            if first { push(index.steps(id, up: up), prefix: item.childPrefix) }
        }
    }

    /// `3f2a1c9e0b12  ft-cifar10  finetune/sgd  resnet50  2026-11-29T10:00:00Z`; control characters
    /// (a line feed or ESC in a name from a pulled manifest) written as escapes, as in error lines.
    static func label(_ n: LineageNode, known: Bool) -> String {
        var parts = [n.shortID]
        if let name = n.name, !name.isEmpty { parts.append(name) }
        if known && n.damaged == nil {
            parts.append(n.method.map { n.stage + "/" + $0 } ?? n.stage)
            if let arch = n.arch { parts.append(arch) }
            if let created = n.created { parts.append(created) }
        }
        if n.removed { parts.append("(removed)") }
        if n.carried && known && n.damaged == nil { parts.append("(carried)") }
        if let damaged = n.damaged { parts.append("(damaged manifest \(damaged))") } else if !known { parts.append("(not in zoo)") }
        return parts.map(\.escapingControlCharacters).joined(separator: "  ")
    }

    // MARK: - JSON

    /// `{"root": ..., "direction": ..., "nodes": [...], "edges": [...]}`, keys sorted, pretty-printed;
    /// node and edge fields as `LineageNode` and `LineageEdge` name them, absent optionals left out;
    /// `carried` (always present, as `removed`) is true on a node whose record and on an edge whose
    /// child's record is carried from an imported bissl `.h5`: that file's claim.
    public static func json(_ graph: LineageGraph, direction: LineageDirection) throws -> String {
        struct Document: Encodable {
            var root: String
            var direction: LineageDirection
            var nodes: [LineageNode]
            var edges: [LineageEdge]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            let data = try encoder.encode(Document(root: graph.root, direction: direction, nodes: graph.nodes,
                                                   edges: graph.edges))
            return String(decoding: data, as: UTF8.self) + "\n"
        } catch {
            throw ZooError.invalid("cannot encode the lineage as JSON: \(error)")
        }
    }

    // MARK: - Graphviz

    /// A `digraph` (DOT language, https://graphviz.org/doc/info/lang.html): one box per entry with
    /// its id as the node id and a multi-line label, edges parent -> child labelled with the relation
    /// (and note), ancestors on top. The root is bold, removed entries dashed, unknown ones dotted;
    /// an entry whose record is carried from an imported `.h5` has the label line `carried`, and an
    /// edge that record claims is dashed with `(claimed by the file)` under its relation.
    /// Strings are double-quoted with `\` and `"` escaped and line breaks written as `\n`.
    public static func dot(_ graph: LineageGraph) -> String {
        let index = LineageIndex(graph)
        var out = "digraph lineage {\n"
        out += "  rankdir=TB;\n"
        out += "  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n"
        out += "  edge [fontname=\"Helvetica\", fontsize=9];\n"
        for id in index.orderedIDs {
            let n = index.node(id)
            let known = index.nodesByID[id] != nil
            var attributes = ["label=" + dotString(labelLines(n, known: known).joined(separator: "\n"))]
            var styles: [String] = []
            if id == graph.root { styles.append("bold") }
            if n.removed { styles.append("dashed") }
            if !known { styles.append("dotted") }
            if !styles.isEmpty { attributes.append("style=" + dotString(styles.joined(separator: ","))) }
            out += "  \(dotString(id)) [\(attributes.joined(separator: ", "))];\n"
        }
        for e in graph.edges {
            out += "  \(dotString(e.parent)) -> \(dotString(e.child)) [label=\(dotString(edgeLabel(e, separator: "\n")))"
            out += e.carried ? ", style=\"dashed\"];\n" : "];\n"
        }
        return out + "}\n"
    }

    /// A DOT double-quoted string: `\` -> `\\`, `"` -> `\"`, line feed -> `\n`, other control
    /// characters dropped.
    static func dotString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default:
                if scalar.properties.generalCategory == .control { continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    // MARK: - Mermaid

    /// A Mermaid flowchart (https://mermaid.js.org/syntax/flowchart.html), top-down, parents above:
    /// nodes `n0`, `n1`, ... (the root is `n0`) with quoted labels whose lines are joined by `<br/>`,
    /// edges `parent -->|"relation"| child`; an edge the child's carried record claims (imported `.h5`)
    /// is dotted, `parent -.->|"relation (claimed by the file)"| child`, and that entry's label has the
    /// line `carried`. Label text is entity-escaped (`#quot;`, `#amp;`, `#lt;`,
    /// `#gt;`, `#35;` for `#`, `#124;` for `|`) so no name can break the syntax. The root gets class
    /// `root`, removed entries class `removed`.
    public static func mermaid(_ graph: LineageGraph) -> String {
        let index = LineageIndex(graph)
        var key: [String: String] = [:]
        var out = "flowchart TD\n"
        for (i, id) in index.orderedIDs.enumerated() {
            key[id] = "n\(i)"
            let lines = labelLines(index.node(id), known: index.nodesByID[id] != nil).map(mermaidText)
            out += "  n\(i)[\"\(lines.joined(separator: "<br/>"))\"]\n"
        }
        for e in graph.edges {
            out += "  \(key[e.parent]!) \(e.carried ? "-.->" : "-->")|\"\(mermaidText(edgeLabel(e, separator: " ")))\"| \(key[e.child]!)\n"
        }
        out += "  classDef root stroke-width:3px\n"
        out += "  classDef removed stroke-dasharray:5 5\n"
        out += "  class \(key[graph.root]!) root\n"
        let removed = index.orderedIDs.filter { index.node($0).removed }.map { key[$0]! }
        if !removed.isEmpty { out += "  class \(removed.joined(separator: ",")) removed\n" }
        return out
    }

    /// Mermaid entity codes for the characters that end or alter a quoted label or an edge label's
    /// `|...|` delimiters; control characters become spaces.
    static func mermaidText(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "#": out += "#35;"
            case "\"": out += "#quot;"
            case "&": out += "#amp;"
            case "<": out += "#lt;"
            case ">": out += "#gt;"
            case "|": out += "#124;"
            default:
                if scalar.properties.generalCategory == .control { out += " "; continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    // MARK: - Shared label parts

    /// Label lines for graph formats: short id, name, `stage/method · arch`, created, status
    /// (`removed`, `carried`).
    static func labelLines(_ n: LineageNode, known: Bool) -> [String] {
        var lines = [n.shortID]
        if let name = n.name, !name.isEmpty { lines.append(name) }
        if let damaged = n.damaged {
            lines += ["damaged manifest", damaged]
        } else if known {
            lines.append(([n.method.map { n.stage + "/" + $0 } ?? n.stage] + (n.arch.map { [$0] } ?? []))
                .joined(separator: " · "))
            if let created = n.created { lines.append(created) }
        } else {
            lines.append("not in zoo")
        }
        if n.removed { lines.append("removed") }
        if n.carried && known && n.damaged == nil { lines.append("carried") }
        return lines
    }

    /// `finetuned-from` plus the note on the next line (`separator`), if any, and `(claimed by the
    /// file)` on the next for an edge a carried record claims.
    static func edgeLabel(_ e: LineageEdge, separator: String) -> String {
        e.relation + (e.note.map { separator + $0 } ?? "") + (e.carried ? separator + "(claimed by the file)" : "")
    }
}
