import Checkpoint
import Foundation
import GRDB

/// The ancestry and/or descent of one entry, as the catalog's lineage edges record it (each edge comes
/// from a child's provenance `parents`).
public struct ZooLineage: Codable, Equatable, Sendable {
    public enum Direction: String, Codable, Sendable, CaseIterable {
        /// Ancestors (parents, their parents, ...).
        case up
        /// Descendants.
        case down
        case both
    }

    public struct Node: Codable, Equatable, Sendable {
        public enum Status: String, Codable, Sendable {
            /// A listed entry.
            case listed
            /// Removed with `rm --force`; its tombstone keeps stage, method, arch, labels.
            case removed
            /// Named as a parent but never held by this zoo (e.g. an entry imported from another zoo).
            case unknown
        }
        public var id: String
        public var status: Status
        public var name: String?
        public var tags: [String]
        public var stage: String?
        public var method: String?
        public var arch: String?
        public var dataset: String?
        public var headlineMetric: String?
        public var headlineValue: Double?
        public var created: String?
        /// For removed entries, when.
        public var removedAt: String?
        /// The record (listed or in its tombstone) is carried from an imported bissl `.h5`
        /// (`Provenance.carriedFrom` not empty): its stage, parents, data and metrics are that file's claim.
        public var carried: Bool = false
    }

    /// `child` was made from `parent`; `relation` and `note` come from the child's provenance.
    public struct Edge: Codable, Equatable, Sendable {
        public var child: String
        public var parent: String
        public var relation: String
        public var note: String?
        /// The child's record is carried from an imported bissl `.h5`: the relation is that file's claim.
        public var carried: Bool = false
    }

    public var root: String
    public var direction: Direction
    /// The root first, then the others in order of distance from it (ties by id).
    public var nodes: [Node]
    /// Edges between nodes, ordered by child then the parent's position in the child's provenance.
    public var edges: [Edge]
}

extension Zoo {
    /// Lineage of the entry REF names: the transitive closure of lineage edges upward (ancestors),
    /// downward (descendants) or both, with every node described (listed, removed or unknown).
    /// Computed breadth-first over the indexed `edges` table with a visited set, so lineage cycles
    /// (possible with hand-made provenance) terminate.
    public func lineage(_ ref: String, direction: ZooLineage.Direction = .both) throws -> ZooLineage {
        try catalog.read { db in
            let root = try Self.resolve(ref, db, zoo: layout.root.path)
            // Breadth-first over the indexed edges with a visited set: provenance comes from imported
            // files, so cycles (A -> B -> A, self-parents) must end the walk, not loop it.
            var distance: [String: Int] = [root: 0]
            func walk(_ sql: String) throws {
                let statement = try db.cachedStatement(sql: sql)
                var frontier = [root]
                var seen: Set<String> = [root]
                var d = 0
                while !frontier.isEmpty {
                    d += 1
                    var next: [String] = []
                    for id in frontier {
                        for neighbour in try String.fetchAll(statement, arguments: [id]) where seen.insert(neighbour).inserted {
                            next.append(neighbour)
                            if distance[neighbour].map({ d < $0 }) ?? true { distance[neighbour] = d }
                        }
                    }
                    frontier = next
                }
            }
            if direction != .down { try walk("SELECT parent FROM edges WHERE child = ? ORDER BY position") }
            if direction != .up { try walk("SELECT child FROM edges WHERE parent = ?") }
            let ordered = distance.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key)
            let members = Set(ordered)
            let listed = Dictionary(try Catalog.records(ListFilter(ids: ordered), withProvenance: false, db).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            var nodes: [ZooLineage.Node] = []
            var edges: [ZooLineage.Edge] = []
            for id in ordered {
                if let r = listed[id] {
                    let s = r.summary
                    let carried = s.carried
                    nodes.append(.init(id: id, status: .listed, name: r.name, tags: r.tags, stage: s.stage, method: s.method, arch: s.arch,
                                       dataset: s.dataset, headlineMetric: s.headlineMetric, headlineValue: s.headlineValue,
                                       created: s.created, removedAt: nil, carried: carried))
                    // Up: edges toward parents of ancestors; down: every child edge is found from the child side too.
                    for parent in s.parents where members.contains(parent.id) {
                        edges.append(.init(child: id, parent: parent.id, relation: parent.relation, note: parent.note, carried: carried))
                    }
                } else if let t = try Catalog.tombstone(id, db) {
                    let headline = EntrySummary.headlineMetric(t.provenance.metrics)
                    let carried = !(t.provenance.carriedFrom ?? []).isEmpty
                    nodes.append(.init(id: id, status: .removed, name: nil, tags: t.labels, stage: t.stage, method: t.method, arch: t.arch,
                                       dataset: EntrySummary.headlineDataset(t.provenance.datasets)?.uri,
                                       headlineMetric: headline?.name, headlineValue: headline?.value,
                                       created: t.provenance.endedAt ?? t.provenance.startedAt, removedAt: t.removedAt, carried: carried))
                    for parent in t.provenance.parents where members.contains(parent.id) {
                        edges.append(.init(child: id, parent: parent.id, relation: parent.relation, note: parent.note, carried: carried))
                    }
                } else {
                    nodes.append(.init(id: id, status: .unknown, name: nil, tags: [], stage: nil, method: nil, arch: nil, dataset: nil,
                                       headlineMetric: nil, headlineValue: nil, created: nil, removedAt: nil))
                }
            }
            return ZooLineage(root: root, direction: direction, nodes: nodes, edges: edges)
        }
    }
}

extension ZooLineage {
    /// The graph `LineageRender` draws: listed and removed entries as nodes (label: the name, else the
    /// first tag), ids only an edge names (parents unknown to this zoo) left as edge ends only.
    public var graph: LineageGraph {
        let nodes = self.nodes.compactMap { n -> LineageNode? in
            guard n.status != .unknown, let stage = n.stage else { return nil }
            return LineageNode(id: n.id, name: n.name ?? n.tags.first, stage: stage, method: n.method, arch: n.arch,
                               created: n.created, removed: n.status == .removed, carried: n.carried)
        }
        return LineageGraph(root: root, nodes: nodes,
                            edges: edges.map { LineageEdge(parent: $0.parent, child: $0.child, relation: $0.relation, note: $0.note,
                                                           carried: $0.carried) })
    }
}
