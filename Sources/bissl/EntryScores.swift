import Checkpoint
import Engine
import Foundation
import Training
import Datasets
import Zoo

/// The logits of an entry's backbone + classifier on labelled data, as `bissl eval` and `bissl compare`
/// compute them: eval mode (BN running statistics), the downstream test transform at the entry's
/// fine-tuning image size (or `imageSize` when given, else the data's own).
struct EntryScores {
    var id: String
    var name: String?
    var imageSize: Int
    /// `[N, C]` logits, the N labels, C class names (the data's, then `classK` up to C).
    var logits: Matrix
    var labels: [Int]
    var classNames: [String]

    /// - Throws: `CLIError` for an entry without a classifier or a class count that differs from the data's.
    init(zoo: Zoo, ref: String, dataset: ImageDataset, imageSize: Int?) throws {
        id = try zoo.resolve(ref)
        let checkpoint = try zoo.checkpoint(id)
        try Self.refuseLowerAlignment(checkpoint.provenance, id: id)
        name = try zoo.record(id).name
        let network = try Network(checkpoint: checkpoint)
        guard let classifier = network.heads["classifier"] else {
            throw CLIError("entry \(id.prefix(12)) has no classifier component; fine-tune it first (bissl finetune) or use bissl probe")
        }
        // The size the entry was fine-tuned at, when its provenance says so.
        self.imageSize = try DownstreamData.imageSize(imageSize ?? DownstreamData.recordedImageSize(checkpoint.provenance), data: dataset)
        let classes = classifier.record.outputs
        guard dataset.classNames.count == classes else {
            throw CLIError("--data has \(dataset.classNames.count) classes but the classifier of \(id.prefix(12)) has \(classes) outputs: evaluate it on its own task, or fine-tune it to this one (bissl finetune)")
        }
        let features = try FrozenFeatures.extract(backbone: network.backbone, dataset: dataset, imageSize: self.imageSize)
        logits = classifier.forward(features.features, mode: .eval)
        labels = features.labels
        var names = dataset.classNames
        while names.count < classes { names.append("class\(names.count)") }
        classNames = names
    }

    /// Per image: the prediction (first largest logit) is the label.
    var correct: [Bool] { zip(ClassificationMetrics.predictions(logits), labels).map { $0 == $1 } }

    /// Refuses the lower entry of an alignment: it stores θ_P, and its classifier is φ_D, trained on
    /// θ_D's features, so the two do not make a model (the upper entry of `align --keep-upper` does).
    /// - Throws: `CLIError` saying what to do instead.
    static func refuseLowerAlignment(_ provenance: Provenance, id: String) throws {
        guard provenance.stage == "bissl", provenance.hyperparameters["lowerEntry"] == nil else { return }
        throw CLIError("entry \(id.prefix(12)) is a BiSSL alignment: its backbone is θ_P and its classifier φ_D belongs to θ_D, so they do not make a model together; fine-tune it (bissl finetune \(id.prefix(12)) --data URI) and evaluate that, evaluate its upper model (align --keep-upper), or measure its features with bissl probe \(id.prefix(12)) --data URI")
    }
}
