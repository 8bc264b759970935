import ArgumentParser
import Checkpoint
import Foundation
import Training
import Zoo

/// `bissl tag REF NAME`.
struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give an entry a tag (a label unique in the zoo, usable as REF).")

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String
    @Argument(help: "The tag: 1-100 characters of A-Z a-z 0-9 . _ + -.")
    var name: String
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let zoo = try zooOptions.open()
        defer { try? zoo.close() }
        let (id, added) = try zoo.tag(ref, name)
        ZooOutput.printLine(added ? "tagged \(id.prefix(12)) as \(name)" : "\(id.prefix(12)) already has \(name); nothing changed")
    }
}

/// `bissl untag NAME`.
struct Untag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove a tag (or an entry's name); the entry stays.")

    @Argument(help: "The tag or name to remove.")
    var name: String
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let zoo = try zooOptions.open()
        defer { try? zoo.close() }
        let (id, kind, kept) = try zoo.untag(name)
        ZooOutput.printLine("removed \(kind.rawValue) \(name) from \(id.prefix(12))")
        if let kept { ZooOutput.printLine("warning: kept \(kept.path): \(kept.reason)") }
    }
}

/// `bissl rm REF [--force]`.
struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove an entry (refused while other entries name it as parent or unfinished runs start from it, unless --force).",
        discussion: """
            With --force, the removed entry's provenance, stage, method, architecture and labels stay in \
            <zoo>/tombstones/<id>.json, so lineage and show of its descendants still say what it was. \
            An entry that a running or interrupted run (bissl runs) starts from (pretrain --from, finetune \
            REF, align REF) is kept too: that run cannot be resumed without it; --force removes it anyway.
            """)

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String
    @Flag(help: "Remove even when other entries descend from it (they keep a tombstone of it) or unfinished runs start from it.")
    var force = false
    @OptionGroup var zooOptions: ZooOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let zoo = try zooOptions.open()
        defer { try? zoo.close() }
        if !force {
            let id = try zoo.resolve(ref)
            let runs = RunSummary.unfinished(startingFrom: id, zooOptions.layout)
            if !runs.isEmpty {
                let shown = runs.prefix(5).map { "\($0.id) (\($0.state))" }.joined(separator: ", ") + (runs.count > 5 ? ", ..." : "")
                throw CLIError(
                    "entry \(id.prefix(12)) is the start of \(runs.count) unfinished run\(runs.count == 1 ? "" : "s") that cannot resume without it: \(shown); finish \(runs.count == 1 ? "it" : "them") with --resume, or bissl rm --force")
            }
        }
        let result = try zoo.remove(ref, force: force)
        if json { return try ZooOutput.printJSON(result) }
        ZooOutput.printLine("removed \(result.id)\(result.labels.isEmpty ? "" : " (\(result.labels.joined(separator: ", ")))")")
        if result.tombstone {
            let n = result.descendants.count
            ZooOutput.printLine("  its \(n) descendant\(n == 1 ? "" : "s") keep\(n == 1 ? "s" : "") its record in tombstones/\(result.id).json")
        }
        for kept in result.keptRefs { ZooOutput.printLine("warning: kept \(kept.path): \(kept.reason)") }
    }
}
