import ArgumentParser
import BisslCore
import Checkpoint
import Foundation
import Publish
import Training
import Zoo

/// `bissl card REF [-o README.md]`: the model card of a zoo entry (Markdown with Hugging Face YAML
/// front matter), stating only what the zoo recorded for the entry and its ancestors.
struct Card: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model card (Markdown, Hugging Face YAML front matter) from an entry's recorded lineage.",
        discussion: """
            The front matter has library_name, tags, datasets, base_model (the parent entries' content ids), \
            pipeline_tag, and metrics/model-index for recorded accuracies with the data they were measured on \
            (license only when a source file states one). The body lists the lineage with content ids, every \
            dataset fingerprint, hyperparameter, seed, metric and warning of each stage, and the command \
            line that made it, and how images are prepared (the evaluation transform of the bissl stage that \
            made it, or that an imported entry records none, with what a hub folder's config.json then \
            assumes). Nothing the provenance lacks is stated; a record carried from an imported bissl .h5 \
            (the entry's or an ancestor's) is marked as that file's claim and gives the front matter nothing. \
            Without -o the card goes to stdout.
            """)

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Write the card to this file (atomically).", valueName: "FILE"))
    var output: String?

    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        if let output {
            try CommandLineHabits.requireOutputFolder(output)
            try ZooOutput.refuseZooObjectsPath(output, objects: zoo.layout.objects)
        }
        let id = try zoo.resolve(ref)
        let lineage = try CardLineage.gather(zoo, id: id)
        let text = ModelCard.render(lineage, preprocessing: .init(lineage: lineage))
        guard let output else { return print(text, terminator: "") }
        try AtomicFile.write(Data(text.utf8), to: URL(fileURLWithPath: output))
        ZooOutput.printLine("wrote \(output.quotedPathIfNeeded) (model card of entry \(id.prefix(12)))")
    }
}

extension HubFolder.Preprocessing {
    /// The image size of the nearest stage of `lineage` that records one (fine-tuning, alignment,
    /// pretraining: `DownstreamData.recordedImageSize`), for the card and the hub folder. A record
    /// carried from an imported `.h5` (`Provenance.carriedFrom`) is that file's claim and records none.
    init(lineage: CardLineage) {
        self.init(imageSize: lineage.stages.reversed().lazy.compactMap { stage in
            stage.provenance.flatMap { $0.carriedFrom == nil ? DownstreamData.recordedImageSize($0) : nil }
        }.first)
    }
}
