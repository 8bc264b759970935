import Checkpoint
import Foundation
import Zoo

/// An entry and its ancestors as the zoo records them: what a model card may state.
public struct CardLineage: Equatable, Sendable {
    /// One entry of the chain.
    public struct Stage: Equatable, Sendable {
        /// Full content id.
        public var id: String
        /// Name and tags in the zoo (empty for a removed entry or one the zoo never held).
        public var labels: [String]
        /// `listed`, `removed` (only its tombstone remains) or `unknown` (the zoo never held it).
        public var status: String
        /// Its provenance; nil when `unknown`.
        public var provenance: Provenance?
        /// The architecture label the catalog records (`resnet50`), when known.
        public var arch: String?
        /// Component names (`backbone`, `classifier`, ...); empty unless listed.
        public var components: [String] = []
    }

    /// Ancestors first (parents before children, each once), the entry itself last.
    public var stages: [Stage]

    /// The entry the card describes.
    public var entry: Stage { stages[stages.count - 1] }

    public init(stages: [Stage]) {
        precondition(!stages.isEmpty, "a lineage holds at least the entry")
        self.stages = stages
    }

    /// Gathers `id` and every ancestor its provenance names, depth first, parents before children.
    /// A parent the zoo removed contributes its tombstone's provenance; one it never held is listed
    /// as `unknown` with nothing else. At most `limit` stages are read (a longer chain is refused).
    /// - Throws: `PublishError.invalid` when `id` is not listed or the chain exceeds `limit`.
    public static func gather(_ zoo: Zoo, id: String, limit: Int = 1000) throws -> CardLineage {
        var stages: [Stage] = []
        var visited = Set<String>()
        func visit(_ id: String) throws {
            guard visited.insert(id).inserted else { return }
            guard visited.count <= limit else {
                throw PublishError.invalid("the lineage of this entry has more than \(limit) ancestors")
            }
            let stage: Stage
            if let record = try? zoo.record(id) {
                stage = Stage(id: id, labels: (record.name.map { [$0] } ?? []) + record.tags, status: "listed",
                              provenance: record.provenance, arch: record.summary.arch,
                              components: record.summary.components)
            } else if let tomb = try zoo.tombstone(id) {
                stage = Stage(id: id, labels: [], status: "removed", provenance: tomb.provenance, arch: tomb.arch)
            } else {
                stage = Stage(id: id, labels: [], status: "unknown", provenance: nil, arch: nil)
            }
            for parent in stage.provenance?.parents ?? [] { try visit(parent.id) }
            stages.append(stage)
        }
        _ = try zoo.record(id)
        try visit(id)
        return CardLineage(stages: stages)
    }
}
