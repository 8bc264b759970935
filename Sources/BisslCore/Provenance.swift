import Foundation

/// Where a checkpoint came from and how it was made. The contract is
/// `schemas/provenance.schema.json` (JSON Schema 2020-12); field names below are its property names.
public struct Provenance: Codable, Equatable, Sendable {
    /// `imported`, `pretext`, `bissl`, `finetune` or `probe`.
    public var stage: String
    /// Training method (`simclr`, `byol`, `bissl`, ...) or, for imports, what the source says, if anything.
    public var method: String?
    /// Parent entries with the relation to each.
    public var parents: [Parent]
    /// For imports: the source file and the rules applied to it.
    public var source: Source?
    /// Datasets used, with fingerprints.
    public var datasets: [Dataset]
    /// Every hyperparameter of the run that made this checkpoint.
    public var hyperparameters: [String: JSONValue]
    /// Seeds by stream name (`init`, `data`, ...).
    public var seeds: [String: Int64]
    /// Final metrics (`top1`, `knn_top1`, ...); histories live in datasets of the HDF5 file.
    public var metrics: [String: Double]
    /// Non-fatal findings made while creating this checkpoint.
    public var warnings: [String]
    /// The tool that wrote it.
    public var tool: Tool
    /// Command line that produced it (argv).
    public var commandLine: [String]
    /// ISO 8601 UTC times.
    public var startedAt: String?
    public var endedAt: String?
    /// Set when this record was not made by bissl here but carried over from a bissl `.h5` file
    /// that `bissl import` read: one step per such import, oldest first. Every other field is then
    /// what that file claims (stage, parents, data, metrics, tool, ...), which bissl could not check;
    /// nil for a record bissl made itself.
    public var carriedFrom: [CarriedStep]?
    /// Metric histories (`loss`, `top1`, ...), values in logging order (one per epoch or logged step,
    /// as the run defines). Not part of the JSON document: format v1 stores each history as the
    /// float64 dataset `/metric_history/<name>` (schemas/checkpoint-v1.md), so it may be long.
    public var metricHistory: [String: [Double]] = [:]

    /// JSON keys: every stored property except `metricHistory`, which lives in its own datasets.
    private enum CodingKeys: String, CodingKey {
        case stage, method, parents, source, datasets, hyperparameters, seeds, metrics, warnings, tool
        case commandLine, startedAt, endedAt, carriedFrom
    }

    /// One import of a bissl `.h5` file whose record was carried over (`carriedFrom`).
    public struct CarriedStep: Codable, Equatable, Sendable {
        /// The file's name (last path component).
        public var fileName: String
        /// SHA-256 (lowercase hex) of the file's bytes.
        public var sha256: String
        /// argv of the command that imported it.
        public var commandLine: [String]
        /// When it was imported, ISO 8601 UTC.
        public var importedAt: String
        /// The tool that imported it.
        public var tool: Tool
        public init(fileName: String, sha256: String, commandLine: [String], importedAt: String, tool: Tool = Tool()) {
            self.fileName = fileName
            self.sha256 = sha256
            self.commandLine = commandLine
            self.importedAt = importedAt
            self.tool = tool
        }
    }

    /// The last import that carried this record over, nil when bissl made it itself.
    public var carriedStep: CarriedStep? { carriedFrom?.last }

    public struct Parent: Codable, Equatable, Sendable {
        public var id: String
        /// `imported-from`, `pretrained-from`, `aligned-from`, `finetuned-from`, `probed-from`.
        public var relation: String
        /// Free-form detail, e.g. "classifier re-initialised 1000 -> 10".
        public var note: String?
        public init(id: String, relation: String, note: String? = nil) {
            self.id = id
            self.relation = relation
            self.note = note
        }
    }

    public struct Source: Codable, Equatable, Sendable {
        public var fileName: String
        public var sha256: String
        public var format: String
        public var container: String
        /// Rules applied during layout resolution, in order, human readable and stable.
        public var rules: [String]
        /// Key path of the chosen sub-dict (`state_dict`, `model_ema`, ...); empty for the root.
        public var keyPath: String
        /// Prefix stripped from every key (`module.`), if any.
        public var strippedPrefix: String?
        /// Keys present in the source that the checkpoint does not keep (optimizer state, ...).
        public var droppedKeys: [String]
        /// Keys the checkpoint has that the source lacked, and the value filled (`num_batches_tracked` = 0).
        public var filledKeys: [String]
        /// Name -> name of the tensor it shares storage with.
        public var aliases: [String: String]
        /// Device tags found on storages (`cuda:0`, ...).
        public var locations: [String]
        /// Format metadata (safetensors `__metadata__`, pth `byteorder`).
        public var metadata: [String: String]

        public init(fileName: String, sha256: String, format: String, container: String,
                    rules: [String] = [], keyPath: String = "", strippedPrefix: String? = nil,
                    droppedKeys: [String] = [], filledKeys: [String] = [], aliases: [String: String] = [:],
                    locations: [String] = [], metadata: [String: String] = [:]) {
            self.fileName = fileName
            self.sha256 = sha256
            self.format = format
            self.container = container
            self.rules = rules
            self.keyPath = keyPath
            self.strippedPrefix = strippedPrefix
            self.droppedKeys = droppedKeys
            self.filledKeys = filledKeys
            self.aliases = aliases
            self.locations = locations
            self.metadata = metadata
        }
    }

    public struct Dataset: Codable, Equatable, Sendable {
        /// `pretext`, `downstream-train`, `downstream-val`, `eval`, ...
        public var role: String
        public var uri: String
        /// SHA-256 (hex) of the bytes read.
        public var fingerprint: String
        public init(role: String, uri: String, fingerprint: String) {
            self.role = role
            self.uri = uri
            self.fingerprint = fingerprint
        }
    }

    public struct Tool: Codable, Equatable, Sendable {
        public var name: String
        public var version: String
        public init(name: String = "bissl", version: String = bisslVersion) {
            self.name = name
            self.version = version
        }
    }

    public init(stage: String, method: String? = nil, parents: [Parent] = [], source: Source? = nil,
                datasets: [Dataset] = [], hyperparameters: [String: JSONValue] = [:], seeds: [String: Int64] = [:],
                metrics: [String: Double] = [:], warnings: [String] = [], tool: Tool = Tool(),
                commandLine: [String] = [], startedAt: String? = nil, endedAt: String? = nil) {
        self.stage = stage
        self.method = method
        self.parents = parents
        self.source = source
        self.datasets = datasets
        self.hyperparameters = hyperparameters
        self.seeds = seeds
        self.metrics = metrics
        self.warnings = warnings
        self.tool = tool
        self.commandLine = commandLine
        self.startedAt = startedAt
        self.endedAt = endedAt
    }
}

/// The version of this tool, recorded in provenance.
public let bisslVersion = "0.1.0"

extension Provenance {
    /// Decodes a provenance document as the checkpoint format and the zoo catalog store it
    /// (schemas/provenance.schema.json; the non-finite numbers JSON lacks as the strings "Infinity",
    /// "-Infinity" and "NaN", as the writers encode them).
    /// - Throws: `DecodingError` for text that is not JSON or a field that is missing or mistyped.
    public static func decode(json: String) throws -> Provenance {
        let decoder = JSONDecoder.bissl()
        return try decoder.decode(Provenance.self, from: Data(json.utf8))
    }
}
