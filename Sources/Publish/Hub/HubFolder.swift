import Checkpoint
import Datasets
import Foundation

/// A Hugging Face Hub-style model folder, as timm publishes its models:
///
/// - `model.safetensors`: the backbone and classifier as one torchvision/timm ResNet state dict
///   (`conv1.weight`, ..., `fc.bias`), `__metadata__` as `bissl export` writes it (`format: pt`,
///   content id, provenance);
/// - `config.json`: timm's convention (`architecture`, `num_classes`, `num_features`, `global_pool`,
///   `pretrained_cfg` with `input_size`, `interpolation`, `crop_pct`, `crop_mode`, `mean`, `std`,
///   `first_conv`, `classifier`), plus `bissl` with the architecture record, content id and where the
///   preprocessing comes from (`Preprocessing`); only what the entry's provenance records is stated;
/// - `README.md`: the model card (`ModelCard`), which says in words what `config.json` states of the
///   preprocessing and what it assumes (an input size no stage records).
///
/// Reading (`read`) records `config.json` and `README.md` verbatim in the imported entry's provenance
/// (`source.metadata["hub.config.json"]`, `["hub.README.md"]`). An entry imported from a folder bissl
/// wrote, whose tensors still have the content id the folder records, is written back as exactly that
/// folder (`write` reuses the recorded metadata, config and card), so a folder round-trips byte for byte.
public enum HubFolder {
    public static let weightsFile = "model.safetensors"
    public static let configFile = "config.json"
    public static let cardFile = "README.md"
    /// The files `write` puts in its staging folder (what a cleaner of an abandoned one may remove:
    /// `TemporaryFiles.removeAbandoned(for:stagingFiles:)`).
    public static let files: Set<String> = [weightsFile, configFile, cardFile]
    /// Largest `config.json` and `README.md` read.
    static let textLimit = 4 << 20
    /// `source.container` of an entry imported from a hub folder.
    public static let container = "hub folder"

    /// How images are prepared for the network.
    ///
    /// An entry bissl made (provenance stage `pretext`, `bissl`, `finetune` or `probe`, also when carried
    /// in the `bissl.provenance` metadata of a file bissl exported and an import read back) was trained
    /// and evaluated with bissl's fixed transforms, which that stage names (docs/bissl.md,
    /// "Augmentations and pixel scale"; `Augment.downstreamTest`): shorter side to `S * 256 / 224`
    /// (timm's `crop_pct` 0.875), centre crop `S`, bilinear, `ToTensor` and ImageNet mean/std; so
    /// `config.json` states them. An entry imported from elsewhere records no preprocessing, so
    /// `interpolation`, `crop_pct`, `crop_mode`, `mean` and `std` are left out (a reader such as timm's
    /// `resolve_data_config` then applies its own defaults) and `bissl.preprocessing` says so; so does
    /// an entry whose record is carried from an imported bissl `.h5` (`Provenance.carriedFrom`): the
    /// stage it names is that file's claim, not a stage bissl ran.
    public struct Preprocessing: Equatable, Sendable {
        /// Side `S` of the square input; nil when no stage of the lineage records an image size.
        public var imageSize: Int?
        public init(imageSize: Int?) { self.imageSize = imageSize }

        /// Provenance stages whose entries bissl trained or evaluated with its own transforms.
        public static let bisslStages: Set<String> = ["pretext", "bissl", "finetune", "probe"]

        /// The bissl stage `p` records (directly, or through the `bissl.provenance` an imported file
        /// carries, at most `depth` levels down); nil when `p` records none or is a carried record.
        public static func bisslStage(_ p: Provenance, depth: Int = 4) -> String? {
            if p.carriedFrom != nil { return nil }
            if bisslStages.contains(p.stage) { return p.stage }
            guard depth > 0, p.stage == "imported", let json = p.source?.metadata["bissl.provenance"],
                  let carried = try? Provenance.decode(json: json) else { return nil }
            return bisslStage(carried, depth: depth - 1)
        }
    }

    /// Writes the folder `dir` for the entry `id` (which must not exist, or be an empty folder): its
    /// backbone and classifier, whose content id the safetensors metadata and `config.json` state,
    /// through a temporary folder beside it renamed into place, so a failure leaves nothing.
    /// - Returns: notes for the user (components left out, a reused recorded folder, an input size
    ///   not recorded).
    /// - Throws: `PublishError.invalid` when `dir` exists and is not an empty folder, the entry has
    ///   no architecture or backbone; `.io` when writing fails.
    @discardableResult
    public static func write(_ checkpoint: Checkpoint, id: String, lineage: CardLineage, preprocessing: Preprocessing,
                             to dir: URL) throws -> [String] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: dir.path, isDirectory: &isDir) {
            guard isDir.boolValue, (try? fm.contentsOfDirectory(atPath: dir.path))?.isEmpty == true else {
                throw PublishError.invalid("\(dir.path) exists and is not an empty folder; pick a new folder")
            }
        }
        guard let architecture = checkpoint.architecture, checkpoint.components["backbone"] != nil else {
            throw PublishError.invalid("entry \(id.prefix(12)) has no architecture record or no backbone: a hub folder holds a ResNet")
        }
        var notes: [String] = []
        // What a timm ResNet holds: the backbone and the classifier (and their architecture record).
        var model = checkpoint
        model.components = checkpoint.components.filter { $0.key == "backbone" || $0.key == "classifier" }
        model.architecture?.heads = architecture.heads.filter { $0.key == "classifier" && model.components["classifier"] != nil }
        let left = checkpoint.components.keys.filter { model.components[$0] == nil }
        if !left.isEmpty { notes.append("not in model.safetensors: \(left.joined(separator: ", ")) (a timm ResNet holds the backbone and classifier)") }
        let flat = model.flatStateDict()
        let modelID = ContentID.compute(model)

        if let recorded = recordedFolder(checkpoint, id: modelID) {
            notes.append("imported from a hub folder bissl wrote (content id verified): its recorded config and card are written as they were")
            try writeFolder(dir) { tmp in
                try SafetensorsFile.write(flat, metadata: recorded.metadata, to: tmp.appendingPathComponent(weightsFile))
                try recorded.config.write(to: tmp.appendingPathComponent(configFile))
                try recorded.card.write(to: tmp.appendingPathComponent(cardFile))
            }
            return notes
        }
        if preprocessing.imageSize == nil {
            notes.append("no stage records an image size: config.json says input_size [3, 224, 224] (torchvision's convention)")
        }
        let stage = Preprocessing.bisslStage(checkpoint.provenance)
        let carried = checkpoint.provenance.carriedStep
        if stage == nil {
            notes.append(carried == nil
                ? "the entry records no preprocessing (imported): config.json leaves out interpolation, crop_pct, crop_mode, mean and std"
                : "the entry's record is carried from \(carried!.fileName) (that file's claim): config.json leaves out interpolation, crop_pct, crop_mode, mean and std")
        }
        let config = try configJSON(model.architecture!, classes: classes(model), id: modelID, preprocessing: preprocessing,
                                    bisslStage: stage, carriedStage: carried == nil ? nil : checkpoint.provenance.stage)
        let card = Data(ModelCard.render(lineage, preprocessing: preprocessing).utf8)
        let metadata = Interchange.safetensorsMetadata(model)
        try writeFolder(dir) { tmp in
            try SafetensorsFile.write(flat, metadata: metadata, to: tmp.appendingPathComponent(weightsFile))
            try config.write(to: tmp.appendingPathComponent(configFile))
            try card.write(to: tmp.appendingPathComponent(cardFile))
        }
        return notes
    }

    /// Classes of the linear classifier; 0 without one (timm's `num_classes=0`: pooled features).
    static func classes(_ checkpoint: Checkpoint) -> Int {
        checkpoint.components["classifier"]?["fc.weight"]?.shape.first ?? 0
    }

    /// `config.json` in timm's convention, keys sorted, two-space indentation, newline at the end.
    /// `bisslStage` is the bissl stage the entry records (`Preprocessing.bisslStage`): with one, bissl's
    /// evaluation transform is stated; without, the preprocessing fields are left out, and
    /// `carriedStage` (the stage a carried record claims) says why.
    static func configJSON(_ a: Architecture, classes: Int, id: String, preprocessing: Preprocessing,
                           bisslStage: String?, carriedStage: String? = nil) throws -> Data {
        let size = preprocessing.imageSize ?? 224
        let features = a.width * 8 * (a.block == "bottleneck" ? 4 : 1)
        let stride = a.stem == "imagenet" ? 32 : 8
        let pool = max(1, (size + stride - 1) / stride)
        var pretrained: [String: JSONValue] = [
            "input_size": .array([.int(3), .int(Int64(size)), .int(Int64(size))]),
            "fixed_input_size": .bool(false),
            "num_classes": .int(Int64(classes)),
            "pool_size": .array([.int(Int64(pool)), .int(Int64(pool))]),
            "first_conv": .string("conv1"),
            "classifier": .string("fc"),
        ]
        let source: String
        if let bisslStage {
            pretrained["interpolation"] = .string("bilinear")
            pretrained["crop_pct"] = .double(0.875)
            pretrained["crop_mode"] = .string("center")
            pretrained["mean"] = .array(ImageTransforms.imagenetMean.map { .double(Double(String($0))!) })
            pretrained["std"] = .array(ImageTransforms.imagenetStd.map { .double(Double(String($0))!) })
            source = "bissl's evaluation transform, which the entry's stage '\(bisslStage)' used: shorter side to input_size * 256 / 224, centre crop, bilinear, ImageNet mean/std"
        } else if let carriedStage {
            source = "not recorded: the entry was imported from a bissl .h5 whose record (stage '\(carriedStage)') is that file's claim, not bissl's, so interpolation, crop_pct, crop_mode, mean and std are left out"
        } else {
            source = "not recorded: the entry was imported and its source states no preprocessing, so interpolation, crop_pct, crop_mode, mean and std are left out"
        }
        let sizeSource = preprocessing.imageSize == nil
            ? "assumed: no stage records an image size, input_size 224 is torchvision's convention" : "recorded by the lineage"
        let archRecord = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(a))
        let config: [String: JSONValue] = [
            "architecture": .string(a.label),
            "num_classes": .int(Int64(classes)),
            "num_features": .int(Int64(features)),
            "global_pool": .string("avg"),
            "pretrained_cfg": .object(pretrained),
            "bissl": .object(["architecture": archRecord, "content_id": .string(id), "preprocessing": .string(source),
                                "input_size": .string(sizeSource)]),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(JSONValue.object(config)) + Data("\n".utf8)
    }

    /// The files an entry imported from a bissl hub folder recorded, when its content id matches the
    /// one the folder's `__metadata__` states (`id`, the content id of the backbone and classifier); nil
    /// otherwise.
    static func recordedFolder(_ checkpoint: Checkpoint, id: String) -> (metadata: [String: String], config: Data, card: Data)? {
        guard checkpoint.provenance.stage == "imported", let source = checkpoint.provenance.source,
              source.container == container, source.metadata["bissl.content_id"] == id,
              let config = source.metadata["hub.config.json"], let card = source.metadata["hub.README.md"]
        else { return nil }
        let metadata = source.metadata.filter { !$0.key.hasPrefix("hub.") }
        return (metadata, Data(config.utf8), Data(card.utf8))
    }

    /// Reads a hub folder as a checkpoint: `model.safetensors` resolved as `bissl import` resolves any
    /// file, `config.json` checked against the architecture found (architecture label when it is one
    /// of ours, `num_classes`), and `config.json` and `README.md` recorded verbatim in provenance.
    /// - Throws: `PublishError.invalid` when a file is missing, too large, not UTF-8, `config.json`
    ///   is not a JSON object or contradicts the weights; the safetensors reader's errors.
    public static func read(_ dir: URL, options: LayoutOptions, commandLine: [String] = CommandLine.arguments) throws -> Checkpoint {
        let weights = dir.appendingPathComponent(weightsFile)
        guard FileManager.default.fileExists(atPath: weights.path) else {
            throw PublishError.invalid("\(dir.path) is a folder without \(weightsFile): not a hub model folder")
        }
        let config = try text(dir.appendingPathComponent(configFile))
        let card = try text(dir.appendingPathComponent(cardFile))
        var checkpoint = try Interchange.load(weights, options: options, commandLine: commandLine)
        guard let object = try? JSONSerialization.jsonObject(with: Data(config.utf8)) as? [String: Any] else {
            throw PublishError.invalid("\(configFile) in \(dir.lastPathComponent) is not a JSON object")
        }
        if let arch = checkpoint.architecture, let stated = object["architecture"] as? String, !Self.names(stated, arch) {
            throw PublishError.invalid("\(configFile) says architecture \(stated), the weights are \(arch.label)")
        }
        if let stated = object["num_classes"] as? Int, stated != classes(checkpoint) {
            throw PublishError.invalid("\(configFile) says num_classes \(stated), the weights have \(classes(checkpoint))")
        }
        checkpoint.provenance.source?.container = container
        checkpoint.provenance.source?.fileName = dir.lastPathComponent + "/" + weightsFile
        checkpoint.provenance.source?.metadata["hub.config.json"] = config
        checkpoint.provenance.source?.metadata["hub.README.md"] = card
        return checkpoint
    }

    /// Whether `config.json`'s `architecture` can name weights found to be `arch`: a name in bissl's
    /// scheme (`ArchitectureName`, as `write` puts there) must be its label; a name without "resnet"
    /// (`vit_base_patch16_224`) names no ResNet; another ResNet variant's name (timm's `resnet50d`,
    /// `wide_resnet50_2`, tagged `resnet50.a1_in1k`) is not one bissl can compare, so it passes.
    static func names(_ stated: String, _ arch: Architecture) -> Bool {
        if (try? ArchitectureName(parsing: stated)) != nil { return stated == arch.label }
        return stated.lowercased().contains("resnet")
    }

    /// A small UTF-8 text file of the folder.
    static func text(_ url: URL) throws -> String {
        if let refusal = RegularFile.refusal(url.path) { throw PublishError.invalid(refusal) }
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        guard let size = (attributes?[.size] as? NSNumber)?.intValue else {
            throw PublishError.invalid("\(url.lastPathComponent) is missing from \(url.deletingLastPathComponent().lastPathComponent)")
        }
        guard size <= textLimit else {
            throw PublishError.invalid("\(url.lastPathComponent) has \(size) bytes (at most \(textLimit) are read)")
        }
        guard let data = FileManager.default.contents(atPath: url.path), let s = String(data: data, encoding: .utf8) else {
            throw PublishError.invalid("\(url.lastPathComponent) is not readable UTF-8 text")
        }
        return s
    }

    /// Fills a temporary folder beside `dir`, then renames it to `dir` (replacing an empty folder).
    static func writeFolder(_ dir: URL, _ fill: (URL) throws -> Void) throws {
        let fm = FileManager.default
        let parent = dir.deletingLastPathComponent()
        let tmp = parent.appendingPathComponent(TemporaryFiles.temporaryName(for: dir.lastPathComponent))
        // Locked while it exists, so no cleaner of abandoned temporaries removes it (TemporaryFileLock).
        let lock: TemporaryFileLock
        do {
            lock = try TemporaryFileLock.createFolder(tmp, for: dir)
        } catch CheckpointError.io(let message) {
            throw PublishError.io(message)
        }
        defer { lock.release() }
        do {
            try fill(tmp)
            if fm.fileExists(atPath: dir.path) { try fm.removeItem(at: dir) }  // checked empty by the caller
            guard rename(tmp.path, dir.path) == 0 else {
                throw PublishError.io("cannot write \(dir.path): \(String(cString: strerror(errno)))")
            }
        } catch {
            try? fm.removeItem(at: tmp)
            if error is OneLineError { throw error }
            throw PublishError.io("cannot write \(dir.path): \(AtomicFile.reason(error))")
        }
    }
}
