import Collections

/// Which components layout resolution keeps.
public enum ComponentSelection: String, CaseIterable, Codable, Sendable {
    /// Only the backbone (every other tensor is dropped and listed in `droppedKeys`).
    case backbone
    /// The backbone and every head found next to it (classifier, projector, predictor, others).
    case all
}

/// User overrides for layout resolution (`bissl convert/import --select KEYPATH --strip-prefix P
/// --component backbone|all`).
public struct LayoutOptions: Equatable, Sendable {
    /// A candidate's selector (`model_ema`, `state_dict.module.encoder_q`, `teacher`): the dotted key
    /// path of a nested dict, optionally continued by the key prefix of the backbone inside it. A
    /// selector that is a leading part of several candidates' selectors picks the one complete
    /// candidate among them.
    public var select: String?
    /// The wrapper prefix the user states (`module.`): whole dot-separated key segments (`module` is
    /// read as `module.`, so `mod` never matches `module.`); every tensor key of the chosen dict must
    /// start with it and the backbone must be found under it; refused otherwise.
    public var stripPrefix: String?
    public var components: ComponentSelection

    public init(select: String? = nil, stripPrefix: String? = nil, components: ComponentSelection = .all) {
        self.select = select
        self.stripPrefix = stripPrefix
        self.components = components
    }
}

/// One place in a source document where a ResNet backbone may live: a dict of tensors at `keyPath`
/// and the key `prefix` its backbone keys carry there. Listed by `bissl inspect`.
public struct Candidate: Equatable, Sendable, Encodable {
    /// Dotted key path of the dict (`state_dict`, `model_ema`, `0` for a list element); "" for the root.
    public var keyPath: String
    /// Prefix of the backbone keys in that dict (`module.`, `encoder.`); "" when the keys are bare.
    /// Empty also for a tensor dict where no backbone key was found (then `architecture` is nil).
    public var prefix: String
    /// Tensors in the dict.
    public var tensorCount: Int
    /// Best-effort architecture of the keys under `prefix` (see `ArchitectureInference.guess`).
    public var architecture: Architecture?
    /// Canonical backbone keys present with the canonical shape and dtype.
    public var matched: Int
    /// Canonical backbone keys of `architecture` (318 for ResNet-50).
    public var total: Int
    /// True when every required canonical key is present with its shape and no unexpected backbone
    /// key is (missing `num_batches_tracked` allowed).
    public var complete: Bool
    /// First differences from the canonical set (empty when complete), as `KeyDifference.summary`.
    public var differences: String
    /// Set when the dict has backbone keys under `prefix` but they fit no ResNet (then
    /// `architecture` is nil): why, as `ArchitectureInference.misfit` says it.
    public var misfit: String? = nil

    /// `matched / total`, 0 when nothing matched.
    public var score: Double { total == 0 ? 0 : Double(matched) / Double(total) }

    /// What `--select` takes to pick this candidate: key path and prefix joined by `.`.
    public var selector: String {
        let p = prefix.hasSuffix(".") ? String(prefix.dropLast()) : prefix
        return [keyPath, p].filter { !$0.isEmpty }.joined(separator: ".")
    }

    private enum CodingKeys: String, CodingKey {
        case selector, keyPath, prefix, tensorCount, architecture, matched, total, score, complete, differences, misfit
    }

    /// JSON for `bissl inspect --json`: the stored fields plus `selector` and `score`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(selector, forKey: .selector)
        try c.encode(keyPath, forKey: .keyPath)
        try c.encode(prefix, forKey: .prefix)
        try c.encode(tensorCount, forKey: .tensorCount)
        try c.encodeIfPresent(architecture, forKey: .architecture)
        try c.encode(matched, forKey: .matched)
        try c.encode(total, forKey: .total)
        try c.encode(score, forKey: .score)
        try c.encode(complete, forKey: .complete)
        try c.encode(differences, forKey: .differences)
        try c.encodeIfPresent(misfit, forKey: .misfit)
    }

    /// `'state_dict.encoder' 318/318 resnet50-w1-small (complete)`, for messages and `inspect`.
    public var line: String {
        let name = selector.isEmpty ? "<root>" : selector
        guard let arch = architecture else {
            if let misfit { return "'\(name)' \(tensorCount) tensors, ResNet backbone keys that fit no ResNet: \(misfit)" }
            return "'\(name)' \(tensorCount) tensors, no ResNet backbone keys"
        }
        let score = String(format: "%.2f", self.score)
        return "'\(name)' \(matched)/\(total) \(arch.label) (score \(score)\(complete ? ", complete" : ""))"
    }
}

/// What layout resolution found and did, ready for `Provenance.Source` and `bissl inspect`.
public struct Resolution: Sendable {
    /// `backbone` first (torchvision keys), then `classifier` (`fc.weight`, `fc.bias`), `projector`,
    /// `predictor` (their own `nn.Sequential` keys) and any other head kept under its source name.
    public var components: OrderedDictionary<String, StateDict>
    /// Inferred from the tensors and validated against `ArchitectureInference.canonicalKeys`.
    public var architecture: Architecture
    /// Key path of the chosen dict ("" for the root).
    public var keyPath: String
    /// The chosen candidate's selector (`teacher.backbone`).
    public var selector: String
    /// The branch the tensors came from when a path segment names one (`teacher`, `student`,
    /// `model_ema`, `encoder_q`, `online_network`, ...).
    public var branch: String?
    /// Prefix removed from the backbone keys (`module.`, `encoder.`), nil when none.
    public var strippedPrefix: String?
    /// Human-readable rules applied, in order (stable text, recorded in provenance).
    public var rules: [String]
    /// Source key paths not kept: whole sub-trees (`optimizer`, `model_ema`, `epoch`) and single
    /// keys of the chosen dict (`state_dict.module.queue`).
    public var droppedKeys: [String]
    /// Keys (component-prefixed as in `Checkpoint.flatStateDict`) filled because the source lacked them.
    public var filledKeys: [String]
    /// Kept name -> first kept name sharing its storage, offset, shape and stride.
    public var aliases: [String: String]
    /// Distinct device tags of the kept tensors' storages, in first-seen order.
    public var locations: [String]
    /// Non-fatal findings (degenerate BN statistics, heads kept without an architecture record).
    public var warnings: [String]
    /// Every candidate found, best first.
    public var candidates: [Candidate]

    /// The imported checkpoint: these components, architecture and aliases, provenance stage
    /// `imported` with `source(...)` and the document's and the resolution's warnings.
    public func checkpoint(fileName: String, sha256: String, document: SourceDocument, commandLine: [String] = []) -> Checkpoint {
        Checkpoint(components: components, architecture: architecture,
                   provenance: Provenance(stage: "imported", source: source(fileName: fileName, sha256: sha256, document: document),
                                          warnings: document.warnings + warnings, commandLine: commandLine),
                   aliases: aliases)
    }

    /// The provenance record of an import from this resolution.
    public func source(fileName: String, sha256: String, document: SourceDocument) -> Provenance.Source {
        Provenance.Source(fileName: fileName, sha256: sha256, format: document.format.rawValue,
                          container: document.container, rules: rules, keyPath: keyPath,
                          strippedPrefix: strippedPrefix, droppedKeys: droppedKeys, filledKeys: filledKeys,
                          aliases: aliases, locations: locations, metadata: document.metadata)
    }
}
