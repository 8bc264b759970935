import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `bissl lineage REF`: where an entry came from and what was made from it.
struct Lineage: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show an entry's ancestors and/or descendants as a text tree, JSON, Graphviz dot or Mermaid.",
        discussion: """
            Edges come from each entry's provenance (relation and note, e.g. "finetuned-from: classifier \
            re-initialised 1000 -> 10"). Parents removed with rm --force are shown as removed; ids no entry of \
            this zoo has are shown as not in the zoo. An entry whose record is carried from an imported bissl \
            .h5 is shown as carried, and the parent edges it claims as claimed by the file (JSON: "carried": \
            true; dot and Mermaid: dashed edges).
            """)

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String
    @Flag(help: "Which side to show (default: both).")
    var direction: LineageDirection = .both
    @Option(help: "text, json, dot or mermaid.")
    var format: LineageFormat = .text
    @Option(help: ArgumentHelp("Show the lineage on this remote instead (reads manifests, no tensors); the name is needed even when the zoo has one remote.", valueName: "NAME"))
    var remote: String?
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        if let remote {
            let lineage = try RemoteZoo(Remotes.select(remote, zooOptions.layout)).lineage(ref)
            RemoteNotes.warn(lineage.damaged)
            return try printLineage(lineage.graph)
        }
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        let lineage = try zoo.lineage(ref, direction: ZooLineage.Direction(rawValue: direction.rawValue) ?? .both)
        try printLineage(lineage.graph)
    }

    private func printLineage(_ graph: LineageGraph) throws {
        let text = try LineageRender.render(graph, format: format, direction: direction)
        format == .json ? printJSONText(text, terminator: "") : print(text, terminator: "")
    }
}

extension LineageDirection: EnumerableFlag {}
extension LineageFormat: ExpressibleByArgument {}
