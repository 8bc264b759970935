import Checkpoint
import Collections
import Engine
import Foundation

/// The network a fine-tuning run starts from (docs/bissl.md, "Default settings": the backbone plus a fresh
/// `Linear(F, C)`), and what its lineage says about the classifier.
public struct FineTuneStart {
    /// Backbone + `classifier` (projector / predictor heads dropped).
    public let network: Network
    /// The parent relation's note, e.g. "backbone from 3fa2c1..., classifier re-initialised 1000 -> 10".
    public let note: String
    /// A warning for the user and the provenance, when the entry's classifier was replaced.
    public let warning: String?
    /// What happened to the classifier: `kept`, `reinitialised`, `new` (the entry had none), `random-init`.
    public let classifier: String

    /// Starts from a zoo entry's network.
    /// - Parameters:
    ///   - entry: the entry's network (modified: its non-classifier heads are removed and the
    ///     classifier may be replaced).
    ///   - entryId: the entry's id (full; the note shows the first 12 digits).
    ///   - classes: number of classes of the downstream data.
    ///   - unreadHeads: heads of the entry that were not loaded into `entry` (`Network(checkpoint:heads:)`),
    ///     named as dropped like the ones removed here.
    ///   - seed: seed of a new classifier: PyTorch's `nn.Linear` default init from `SeededRNG(seed)`.
    ///   - entryStage: the entry's provenance stage. A `bissl` entry's classifier is φ_D, trained on
    ///     the upper backbone θ_D, not on this backbone θ_P: it is replaced by a new `Linear(F, C)`, as
    ///     the method fine-tunes θ_P with a new head (docs/bissl.md, "The alternation loop").
    /// - Note: the entry's classifier is kept when its output count equals `classes` (and its input
    ///   the feature size); otherwise it is re-initialised, and note and warning say
    ///   "classifier re-initialised A -> B".
    public init(entry: Network, entryId: String, entryStage: String? = nil, classes: Int, seed: UInt64, unreadHeads: [String] = []) {
        let short = String(entryId.prefix(12))
        let F = entry.featureCount
        var dropped: [String] = unreadHeads
        for name in entry.heads.keys where name != "classifier" { dropped.append(name) }
        for name in dropped { entry.removeHead(name) }
        let droppedText = dropped.isEmpty ? "" : "; \(dropped.joined(separator: ", ")) dropped"
        if entryStage == "bissl", entry.heads["classifier"] != nil {
            entry.setHead("classifier", Self.freshClassifier(features: F, classes: classes, seed: seed))
            classifier = "new"
            note = "backbone θ_P from \(short), new classifier Linear(\(F), \(classes)) (the entry's φ_D belongs to θ_D)\(droppedText)"
            warning = nil
        } else if let existing = entry.heads["classifier"], existing.record.kind == "linear",
           existing.record.dims == [F, classes] {
            classifier = "kept"
            note = "backbone and classifier (\(F) -> \(classes)) from \(short)\(droppedText)"
            warning = nil
        } else if let existing = entry.heads["classifier"] {
            let old = existing.record.kind == "linear" ? "\(existing.record.outputs)" : "\(existing.record.kind) \(existing.record.dims)"
            entry.setHead("classifier", Self.freshClassifier(features: F, classes: classes, seed: seed))
            classifier = "reinitialised"
            note = "backbone from \(short), classifier re-initialised \(old) -> \(classes)\(droppedText)"
            warning = "the classifier of \(short) has \(old) outputs, the data \(classes) classes: classifier re-initialised \(old) -> \(classes)"
        } else {
            entry.setHead("classifier", Self.freshClassifier(features: F, classes: classes, seed: seed))
            classifier = "new"
            note = "backbone from \(short), new classifier Linear(\(F), \(classes))\(droppedText)"
            warning = nil
        }
        network = entry
    }

    /// Starts from a randomly initialised backbone (the "from scratch" baseline): torchvision init
    /// from `SeededRNG(seed)` (Kaiming fan-out convs, last BN of each block zero) and a new
    /// classifier from `SeededRNG(seed + 1)`.
    /// - Throws: `TrainingError.invalid` for an unsupported architecture.
    public init(randomArchitecture: Architecture, classes: Int, seed: UInt64) throws {
        var bare = randomArchitecture
        bare.heads = [:]
        let net = try Network(architecture: bare, seed: seed)
        net.setHead("classifier", Self.freshClassifier(features: net.featureCount, classes: classes, seed: seed &+ 1))
        network = net
        classifier = "random-init"
        note = "random initialisation (seed \(seed)), new classifier Linear(\(net.featureCount), \(classes))"
        warning = nil
    }

    /// `nn.Linear(F, C)` with PyTorch's default init, keys `fc.weight` / `fc.bias`.
    public static func freshClassifier(features: Int, classes: Int, seed: UInt64) -> Network.Head {
        let head = LinearHead(features: features, classes: classes, prefix: "fc.")
        head.initialize(seed: seed)
        return .linear(head)
    }

    /// Parses `resnet18`, `resnet50`, ... with a width and stem into an architecture record.
    /// - Throws: `TrainingError.invalid` for an unknown depth, a width below 1 or an unknown stem.
    public static func architecture(arch: String, width: Int?, stem: String?) throws -> Architecture {
        let name = try ArchitectureName.resolve(arch, width: width, stem: stem)
        let depth = name.depth, width = name.width ?? 64, stem = name.stem ?? "small"
        guard width >= 1 else { throw TrainingError.invalid("--width must be at least 1, got \(width)") }
        guard width <= 1024 else { throw TrainingError.invalid("--width must be at most 1024, got \(width)") }
        guard stem == "small" || stem == "imagenet" else {
            throw TrainingError.invalid("--stem must be imagenet or small, not '\(stem)'")
        }
        return try ResNet(depth: depth, width: width, stem: stem).architecture
    }
}
