import Checkpoint
import Foundation

/// One catalog row of `entries`, everything derived from an object file: its provenance, architecture,
/// tensors and byte size. `Zoo.reindex` recomputes exactly this from the objects.
public struct EntrySummary: Codable, Equatable, Sendable {
    /// Full content id (64 hex).
    public var id: String
    public var stage: String
    public var method: String?
    /// `Architecture.label` (`resnet50`, `resnet18-w8-small`), nil when the architecture is unknown.
    public var arch: String?
    /// URI of the dataset that characterises the entry (see `headlineDataset`).
    public var dataset: String?
    /// Metric shown by `list` (see `headlineMetric`) and its value (nil for NaN).
    public var headlineMetric: String?
    public var headlineValue: Double?
    /// ISO 8601 UTC: provenance `endedAt`, else `startedAt`, else the object file's modification time.
    public var created: String
    /// Object file size in bytes.
    public var size: Int64
    public var tensorCount: Int
    /// Component names in stored order.
    public var components: [String]
    /// Source file name of an import.
    public var sourceFile: String?
    /// The record is carried from an imported bissl `.h5` (`Provenance.carriedFrom` not empty): its
    /// metrics are that file's claim, not bissl's measurement (`list` marks them).
    public var carried: Bool
    /// Parents as recorded in provenance (`relation`, `note`), in order.
    public var parents: [Provenance.Parent]
    public var metrics: [String: Double]
    /// The provenance JSON document, sorted keys.
    public var provenanceJSON: String
    /// What `show` prints beyond the row: architecture record, per-component tensor summary, metric
    /// history lengths, health warnings. Nil for rows written before schema version 2 (then `show`
    /// reads the object) and for listings (`Catalog.records(withProvenance: false)`).
    public var details: EntryDetails?

    /// Derives the row of a checkpoint whose object file has `size` bytes and modification time `modified`.
    /// - Parameter details: `EntryDetails(checkpoint)` when the caller has computed it already.
    public init(id: String, checkpoint: Checkpoint, size: Int64, modified: Date, details: EntryDetails? = nil) {
        let p = checkpoint.provenance
        self.id = id
        stage = p.stage
        method = p.method
        arch = checkpoint.architecture?.label
        dataset = Self.headlineDataset(p.datasets)?.uri
        let headline = Self.headlineMetric(p.metrics)
        headlineMetric = headline?.name
        headlineValue = headline.flatMap { $0.value.isNaN ? nil : $0.value }
        created = p.endedAt ?? p.startedAt ?? ISO8601DateFormatter().string(from: modified)
        self.size = size
        tensorCount = checkpoint.components.values.reduce(0) { $0 + $1.count }
        components = Array(checkpoint.components.keys)
        sourceFile = p.source?.fileName
        carried = !(p.carriedFrom ?? []).isEmpty
        parents = p.parents
        metrics = p.metrics
        provenanceJSON = Self.json(p)
        self.details = details ?? EntryDetails(checkpoint)
    }

    /// A summary with every field given (catalog rows).
    init(id: String, stage: String, method: String?, arch: String?, dataset: String?, headlineMetric: String?, headlineValue: Double?,
         created: String, size: Int64, tensorCount: Int, components: [String], sourceFile: String?, parents: [Provenance.Parent],
         metrics: [String: Double], provenanceJSON: String, details: EntryDetails? = nil, carried: Bool = false) {
        self.id = id
        self.stage = stage
        self.method = method
        self.arch = arch
        self.dataset = dataset
        self.headlineMetric = headlineMetric
        self.headlineValue = headlineValue
        self.created = created
        self.size = size
        self.tensorCount = tensorCount
        self.components = components
        self.sourceFile = sourceFile
        self.parents = parents
        self.metrics = metrics
        self.provenanceJSON = provenanceJSON
        self.details = details
        self.carried = carried
    }

    /// `carried` is not encoded (a remote's manifest, schemas/remote.md, holds the fields it always held):
    /// a decoded summary derives it from its provenance document.
    private enum CodingKeys: String, CodingKey {
        case id, stage, method, arch, dataset, headlineMetric, headlineValue, created, size, tensorCount, components, sourceFile
        case parents, metrics, provenanceJSON, details
    }

    /// Reads a summary (a remote's manifest); `carried` from its provenance document (decoded only
    /// when the text holds a key `"carriedFrom"`).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        stage = try c.decode(String.self, forKey: .stage)
        method = try c.decodeIfPresent(String.self, forKey: .method)
        arch = try c.decodeIfPresent(String.self, forKey: .arch)
        dataset = try c.decodeIfPresent(String.self, forKey: .dataset)
        headlineMetric = try c.decodeIfPresent(String.self, forKey: .headlineMetric)
        headlineValue = try c.decodeIfPresent(Double.self, forKey: .headlineValue)
        created = try c.decode(String.self, forKey: .created)
        size = try c.decode(Int64.self, forKey: .size)
        tensorCount = try c.decode(Int.self, forKey: .tensorCount)
        components = try c.decode([String].self, forKey: .components)
        sourceFile = try c.decodeIfPresent(String.self, forKey: .sourceFile)
        parents = try c.decode([Provenance.Parent].self, forKey: .parents)
        metrics = try c.decode([String: Double].self, forKey: .metrics)
        provenanceJSON = try c.decode(String.self, forKey: .provenanceJSON)
        details = try c.decodeIfPresent(EntryDetails.self, forKey: .details)
        carried = provenanceJSON.contains("\"carriedFrom\"") && !(Self.decodeProvenance(provenanceJSON)?.carriedFrom ?? []).isEmpty
    }

    /// Metric names in order of preference for the `list` column; other names follow alphabetically.
    /// Names that carry their meaning (`MetricNames`) come first; `top1` and `loss` are what older entries recorded.
    public static let headlinePreference = ["test_top1", "val_top1", "upper_val_top1", "linear_top1", "knn_top1", "top1", "top5",
                                            "accuracy", "pretext_loss", "loss"]

    /// The preferred metric present (`headlinePreference`, else the alphabetically first), nil when none.
    public static func headlineMetric(_ metrics: [String: Double]) -> (name: String, value: Double)? {
        if let name = headlinePreference.first(where: { metrics[$0] != nil }) { return (name, metrics[name]!) }
        return metrics.keys.sorted().first.map { ($0, metrics[$0]!) }
    }

    /// The dataset of the task: first with role `downstream*`, else `eval*`, else the first listed.
    public static func headlineDataset(_ datasets: [Provenance.Dataset]) -> Provenance.Dataset? {
        datasets.first { $0.role.hasPrefix("downstream") } ?? datasets.first { $0.role.hasPrefix("eval") } ?? datasets.first
    }

    static func json(_ p: Provenance) -> String {
        let encoder = JSONEncoder.bissl()
        return (try? encoder.encode(p)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// `provenanceJSON` decoded; nil when the row holds none (listings) or unreadable JSON.
    public var provenance: Provenance? { Self.decodeProvenance(provenanceJSON) }

    static func decodeProvenance(_ json: String) -> Provenance? { try? Provenance.decode(json: json) }
}

/// The part of an entry `show` prints that the `entries` columns do not hold, derived from the
/// object once when it is listed (column `details`, JSON; schemas/catalog.md), so `show` answers
/// from the catalog alone.
public struct EntryDetails: Codable, Equatable, Sendable {
    /// Tensors of one component.
    public struct Component: Codable, Equatable, Sendable {
        public var tensors: Int
        /// Elements of floating-point tensors (weights and BN statistics).
        public var parameters: Int
        /// Bytes of all its tensors.
        public var bytes: Int
        /// dtype name -> number of tensors.
        public var dtypes: [String: Int]
    }

    public var architecture: Architecture?
    /// Per component (order: `EntrySummary.components`).
    public var components: [String: Component]
    /// Metric name -> number of recorded values (`Provenance.metricHistory`).
    public var metricHistory: [String: Int]
    /// `HealthCheck.warnings` of the tensors.
    public var health: [String]

    public init(_ checkpoint: Checkpoint) { self.init(checkpoint, scanned: [:]) }

    /// `init(_:)` with the health scans of some tensors done already (`HealthCheck.warnings(_:scanned:)`).
    init(_ checkpoint: Checkpoint, scanned: [String: ValueScan]) {
        architecture = checkpoint.architecture
        var components: [String: Component] = [:]
        for (name, dict) in checkpoint.components {
            var c = Component(tensors: dict.count, parameters: 0, bytes: 0, dtypes: [:])
            for t in dict.values {
                if t.dtype.isFloatingPoint { c.parameters += t.count }
                c.bytes += t.data.count
                c.dtypes[t.dtype.rawValue, default: 0] += 1
            }
            components[name] = c
        }
        self.components = components
        metricHistory = checkpoint.provenance.metricHistory.mapValues(\.count)
        health = HealthCheck.warnings(checkpoint, scanned: scanned)
    }

    static func json(_ details: EntryDetails) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(details)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func decode(_ json: String?) -> EntryDetails? {
        guard let json else { return nil }
        return try? JSONDecoder().decode(EntryDetails.self, from: Data(json.utf8))
    }
}

/// A listed entry: its summary plus its labels.
public struct EntryRecord: Codable, Equatable, Sendable {
    public var summary: EntrySummary
    /// The entry's name, if it has one.
    public var name: String?
    /// Its tags, sorted.
    public var tags: [String]

    public var id: String { summary.id }
    /// First 12 hex digits of the id, as `list` shows it.
    public var shortID: String { String(summary.id.prefix(12)) }
}

/// What the zoo remembers of a removed entry that descendants still name as parent
/// (`tombstones/<id>.json`, and the catalog table `tombstones`).
public struct Tombstone: Codable, Equatable, Sendable {
    public var id: String
    public var stage: String
    public var method: String?
    public var arch: String?
    /// Name and tags the entry had when it was removed.
    public var labels: [String]
    /// ISO 8601 UTC.
    public var removedAt: String
    /// Its full provenance, as it was stored in the object file.
    public var provenance: Provenance
    /// Which of `labels` was its name (nil: none, or a record written before this field).
    public var name: String? = nil
    /// Why `gc` took the entry out (its object was missing or damaged); nil for `rm`. Importing
    /// the same content again gives back the labels of such an entry (`Zoo.add`). Kept in the file
    /// only, not in the catalog table.
    public var damage: String? = nil
}

extension EntryRecord {
    /// The entry's provenance, decoded from the catalog; nil when the catalog holds none (`list`
    /// without provenance) or it does not decode.
    public var provenance: Provenance? { EntrySummary.decodeProvenance(summary.provenanceJSON) }
}
