import Checkpoint
import Foundation

/// What changed from checkpoint A to checkpoint B: tensors, per-stage summary, provenance,
/// hyperparameters and architecture. Build one with `CheckpointDiff(a, b)`; print it with
/// `DiffTextRenderer` or encode it as JSON with `DiffJSONRenderer` (the report is `Encodable`).
///
/// Tensors are matched by component and key. Values are compared in Float64 (`TensorDelta`). Tensors
/// are split into three sections (`DiffSection`): weights, BN running statistics and counters;
/// only the weights section decides `summary.weightsChanged` (a `num_batches_tracked` or
/// `running_var` difference never counts as a weight change).
public struct CheckpointDiff: Codable, Sendable {
    /// Which tensors the per-tensor lists hold.
    public enum TensorListing: String, Codable, CaseIterable, Sendable {
        /// Added, removed and changed tensors (default).
        case changed
        /// Every tensor, unchanged ones included.
        case all
    }

    /// Status of one tensor or stage.
    public enum Status: String, Codable, Sendable {
        case added, removed, changed, unchanged
        /// Stages only: present on both sides but not comparable tensor by tensor (a tensor changed
        /// shape, or the stage gained or lost tensors); a classifier re-initialised for 10 classes
        /// instead of 1000 is `replaced`.
        case replaced
    }

    /// One tensor present in A, B or both.
    public struct TensorEntry: Codable, Sendable {
        /// Name in the flat exported state dict (`layer1.0.conv1.weight`, `projector.0.weight`).
        public var name: String
        public var component: String
        /// Key within the component.
        public var key: String
        public var section: DiffSection
        /// Stage for the per-stage summary (`stem`, `layer1` ... `layer4`, or a head component).
        public var stage: String
        public var status: Status
        /// dtype and shape in A and B (nil on the side where the tensor is absent).
        public var dtypeA: DType?
        public var dtypeB: DType?
        public var shapeA: [Int]?
        public var shapeB: [Int]?
        /// Value comparison, present when both sides exist with the same shape.
        public var delta: TensorDelta?
        /// For one-element tensors (counters such as `num_batches_tracked`): the values in A and B.
        public var valueA: Double?
        public var valueB: Double?

        /// True when both sides exist with different shapes.
        public var shapeChanged: Bool { shapeA != nil && shapeB != nil && shapeA != shapeB }
        /// True when both sides exist with different dtypes.
        public var dtypeChanged: Bool { dtypeA != nil && dtypeB != nil && dtypeA != dtypeB }

        private enum CodingKeys: String, CodingKey {
            case name, component, key, section, stage, status, dtypeA, dtypeB, shapeA, shapeB, delta
            case valueA, valueB, shapeChanged, dtypeChanged
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            component = try c.decode(String.self, forKey: .component)
            key = try c.decode(String.self, forKey: .key)
            section = try c.decode(DiffSection.self, forKey: .section)
            stage = try c.decode(String.self, forKey: .stage)
            status = try c.decode(Status.self, forKey: .status)
            dtypeA = try c.decodeIfPresent(DType.self, forKey: .dtypeA)
            dtypeB = try c.decodeIfPresent(DType.self, forKey: .dtypeB)
            shapeA = try c.decodeIfPresent([Int].self, forKey: .shapeA)
            shapeB = try c.decodeIfPresent([Int].self, forKey: .shapeB)
            delta = try c.decodeIfPresent(TensorDelta.self, forKey: .delta)
            valueA = try c.decodeIfPresent(Double.self, forKey: .valueA)
            valueB = try c.decodeIfPresent(Double.self, forKey: .valueB)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(component, forKey: .component)
            try c.encode(key, forKey: .key)
            try c.encode(section, forKey: .section)
            try c.encode(stage, forKey: .stage)
            try c.encode(status, forKey: .status)
            try c.encodeIfPresent(dtypeA, forKey: .dtypeA)
            try c.encodeIfPresent(dtypeB, forKey: .dtypeB)
            try c.encodeIfPresent(shapeA, forKey: .shapeA)
            try c.encodeIfPresent(shapeB, forKey: .shapeB)
            try c.encodeIfPresent(delta, forKey: .delta)
            try c.encodeIfPresent(valueA, forKey: .valueA)
            try c.encodeIfPresent(valueB, forKey: .valueB)
            try c.encode(shapeChanged, forKey: .shapeChanged)
            try c.encode(dtypeChanged, forKey: .dtypeChanged)
        }

        init(name: String, component: String, key: String, section: DiffSection, stage: String, status: Status,
             a: Tensor?, b: Tensor?, delta: TensorDelta?) {
            self.name = name
            self.component = component
            self.key = key
            self.section = section
            self.stage = stage
            self.status = status
            dtypeA = a?.dtype
            dtypeB = b?.dtype
            shapeA = a?.shape
            shapeB = b?.shape
            self.delta = delta
            if let a, a.count == 1 { valueA = a.doubles()[0] }
            if let b, b.count == 1 { valueB = b.doubles()[0] }
        }
    }

    /// Counts of one section over all its tensors, and the tensors listed (per `TensorListing`).
    public struct Section: Codable, Sendable {
        public var section: DiffSection
        /// Tensors in A or B.
        public var total: Int
        public var added: Int
        public var removed: Int
        public var changed: Int
        public var unchanged: Int
        /// Listed tensors: added, removed and shape-changed first (in key order), then changed
        /// tensors by relative change, largest first (undefined relative change, i.e. a change of an
        /// all-zero tensor, sorts before every finite one; ties by L2), then unchanged in key order.
        /// Counters are not ranked: changed counters stay in key order.
        public var tensors: [TensorEntry]
    }

    /// One stage of the network (`stem`, `layer1`..`layer4`) or one head.
    public struct StageSummary: Codable, Sendable {
        public var stage: String
        public var status: Status
        /// Weight tensors in the stage (union of A and B) and how many differ.
        public var weightTensors: Int
        public var changedWeights: Int
        /// `sqrt(sum ||b - a||^2) / sqrt(sum ||a||^2)` over the stage's weight tensors present on both
        /// sides with equal shapes (all of them unless the stage is `replaced`); nil when undefined.
        public var relativeChange: Double?
        /// `sqrt(sum ||b - a||^2)` over the same tensors; nil when there is none.
        public var l2: Double?
        /// BN statistics tensors in the stage and how many differ.
        public var bnStatistics: Int
        public var changedBNStatistics: Int
        /// Counter tensors in the stage and how many differ.
        public var counters: Int
        public var changedCounters: Int
        /// For `replaced` stages: what changed shape or appeared/disappeared (`fc.weight [1000, 2048] -> [10, 2048]`).
        public var notes: [String]
    }

    /// One-line answers.
    public struct Summary: Codable, Sendable {
        /// True when no tensor differs and provenance, hyperparameters and architecture are equal.
        public var identical: Bool
        /// Any weight tensor added, removed or changed (BN statistics and counters excluded).
        public var weightsChanged: Bool
        public var bnStatisticsChanged: Bool
        public var countersChanged: Bool
        /// Relative change over all weight tensors comparable on both sides; nil when undefined, and
        /// nil when the architectures differ (a few same-shape tensors say nothing about the rest).
        public var relativeChange: Double?
        /// `resnet18 -> resnet50` when both sides name an architecture and the labels differ: the
        /// weights are then not comparable.
        public var architecturesDiffer: String? = nil
    }

    /// Labels of the two sides (entry ids or names), as the caller gave them.
    public var labelA: String
    public var labelB: String
    public var listing: TensorListing
    public var summary: Summary
    /// Sections in the order weights, BN statistics, counters.
    public var sections: [Section]
    /// Backbone stages in network order, then heads in order of appearance.
    public var stages: [StageSummary]
    /// Provenance keys that differ (hyperparameters are reported separately; the command line by
    /// name, `DiffView.parse`).
    public var provenance: [KeyChange]
    /// Volatile keys left out by `hidingVolatile()` (0 when none were).
    public var hiddenVolatile = 0
    /// True after `withoutProvenance()`.
    public var provenanceOmitted = false
    /// Hyperparameter keys that differ (dotted below the top-level hyperparameter name).
    public var hyperparameters: [KeyChange]
    /// Architecture keys that differ (`depth`, `heads.classifier.dims`, ...).
    public var architecture: [KeyChange]

    /// Compares `a` with `b`.
    /// - Parameters:
    ///   - labelA, labelB: names printed for the two sides.
    ///   - listing: which tensors the per-tensor lists hold.
    /// - Throws: `ZooError.invalid` when provenance cannot be turned into JSON (a non-finite
    ///   metric or hyperparameter).
    public init(_ a: Checkpoint, _ b: Checkpoint, labelA: String = "A", labelB: String = "B",
                listing: TensorListing = .changed) throws {
        self.labelA = labelA
        self.labelB = labelB
        self.listing = listing

        let entries = Self.compareTensors(a, b)
        var sections: [Section] = []
        for section in DiffSection.allCases {
            let all = entries.filter { $0.section == section }
            func count(_ s: Status) -> Int { all.reduce(0) { $0 + ($1.status == s ? 1 : 0) } }
            let listed = listing == .all ? all : all.filter { $0.status != .unchanged }
            sections.append(Section(section: section, total: all.count, added: count(.added),
                                    removed: count(.removed), changed: count(.changed),
                                    unchanged: count(.unchanged),
                                    tensors: Self.sortedForListing(listed, ranked: section != .counters)))
        }
        self.sections = sections
        self.stages = Self.summarizeStages(entries)

        provenance = KeyedDiff.diff(try Self.flatProvenance(a.provenance), try Self.flatProvenance(b.provenance),
                                    unordered: Self.unorderedProvenanceLists)
        hyperparameters = KeyedDiff.diff(KeyedDiff.flatten(.object(a.provenance.hyperparameters)),
                                         KeyedDiff.flatten(.object(b.provenance.hyperparameters)))
        architecture = KeyedDiff.diff(try a.architecture.map { try KeyedDiff.flatten($0) } ?? [],
                                      try b.architecture.map { try KeyedDiff.flatten($0) } ?? [])

        func differs(_ s: DiffSection) -> Bool {
            sections.first { $0.section == s }.map { $0.total != $0.unchanged } ?? false
        }
        let comparable = entries.filter { $0.section == .weights && $0.delta != nil }
        var archChange: String?
        if let archA = a.architecture?.label, let archB = b.architecture?.label, archA != archB {
            archChange = "\(archA) -> \(archB)"
            stages = stages.map { var s = $0; s.relativeChange = nil; return s }
        }
        summary = Summary(
            identical: entries.allSatisfy { $0.status == .unchanged } && provenance.isEmpty
                && hyperparameters.isEmpty && architecture.isEmpty,
            weightsChanged: differs(.weights),
            bnStatisticsChanged: differs(.bnStatistics),
            countersChanged: differs(.counters),
            relativeChange: archChange == nil ? Self.relative(comparable) : nil,
            architecturesDiffer: archChange)
    }

    /// The section for `section`.
    public func section(_ section: DiffSection) -> Section {
        sections.first { $0.section == section }!
    }

    /// The summary of `stage`, if any tensor belongs to it.
    public func stage(_ name: String) -> StageSummary? {
        stages.first { $0.stage == name }
    }

    // MARK: - Tensor comparison

    /// Every tensor of A (component order, key order), then those only in B, compared.
    static func compareTensors(_ a: Checkpoint, _ b: Checkpoint) -> [TensorEntry] {
        func entry(component: String, key: String, _ ta: Tensor?, _ tb: Tensor?) -> TensorEntry {
            let name = Checkpoint.unprefixedComponents.contains(component) ? key : component + "." + key
            let section = DiffSection.of(key: key, dtype: (ta ?? tb)!.dtype)
            let stage = DiffStage.of(component: component, key: key)
            guard let ta, let tb else {
                return TensorEntry(name: name, component: component, key: key, section: section, stage: stage,
                                   status: ta == nil ? .added : .removed, a: ta, b: tb, delta: nil)
            }
            if ta.shape != tb.shape {
                return TensorEntry(name: name, component: component, key: key, section: section, stage: stage,
                                   status: .changed, a: ta, b: tb, delta: nil)
            }
            let identical = ta.dtype == tb.dtype && ta.data == tb.data
            // Identical tensors still get a delta: its norms feed the per-stage relative change.
            let delta = identical ? TensorDelta(identicalTo: ta) : TensorDelta(ta, tb)
            return TensorEntry(name: name, component: component, key: key, section: section, stage: stage,
                               status: identical ? .unchanged : .changed, a: ta, b: tb, delta: delta)
        }
        var pairs: [(component: String, key: String, a: Tensor?, b: Tensor?)] = []
        for (component, tensorsA) in a.components {
            let tensorsB = b.components[component]
            for (key, ta) in tensorsA { pairs.append((component, key, ta, tensorsB?[key])) }
        }
        for (component, tensorsB) in b.components {
            let tensorsA = a.components[component]
            for (key, tb) in tensorsB where tensorsA?[key] == nil { pairs.append((component, key, nil, tb)) }
        }
        // Tensors compared on every core (each entry depends on its own pair only), kept in pair order.
        return concurrentMap(pairs.count) { i in entry(component: pairs[i].component, key: pairs[i].key, pairs[i].a, pairs[i].b) }
    }

    /// Listing order documented on `Section.tensors`; stable within each group.
    static func sortedForListing(_ entries: [TensorEntry], ranked: Bool) -> [TensorEntry] {
        let structural = entries.filter { $0.status == .added || $0.status == .removed || $0.shapeChanged }
        if !ranked {
            return structural + entries.filter { $0.status == .changed && !$0.shapeChanged }
                + entries.filter { $0.status == .unchanged }
        }
        let changed = entries.enumerated()
            .filter { $0.element.status == .changed && !$0.element.shapeChanged }
            .sorted { x, y in
                let rx = sortKey(x.element), ry = sortKey(y.element)
                if rx.0 != ry.0 { return rx.0 > ry.0 }
                if rx.1 != ry.1 { return rx.1 > ry.1 }
                return x.offset < y.offset
            }
            .map(\.element)
        let unchanged = entries.filter { $0.status == .unchanged }
        return structural + changed + unchanged
    }

    /// (relative change, L2) with undefined relative as +infinity and NaN as the largest of all.
    private static func sortKey(_ e: TensorEntry) -> (Double, Double) {
        guard let d = e.delta else { return (.infinity, .infinity) }
        let r = d.relative ?? .infinity
        return (r.isNaN ? .infinity : r, d.l2.isNaN ? .infinity : d.l2)
    }

    /// `sqrt(sum l2^2) / sqrt(sum normA^2)` over entries with a delta; nil when there is none or the
    /// ratio is undefined (all-zero reference with a non-zero change).
    static func relative(_ entries: [TensorEntry]) -> Double? {
        var changeSquared = 0.0, normSquared = 0.0, compared = 0
        for e in entries {
            if let d = e.delta { changeSquared += d.l2 * d.l2; normSquared += d.normA * d.normA; compared += 1 }
        }
        if compared == 0 { return nil }
        if normSquared > 0 || normSquared.isNaN { return (changeSquared / normSquared).squareRoot() }
        return changeSquared == 0 ? 0 : nil
    }

    // MARK: - Stages

    static func summarizeStages(_ entries: [TensorEntry]) -> [StageSummary] {
        var order: [String] = []
        var byStage: [String: [TensorEntry]] = [:]
        for e in entries {
            if byStage[e.stage] == nil { order.append(e.stage) }
            byStage[e.stage, default: []].append(e)
        }
        let ranked = order.enumerated().sorted { x, y in
            let rx = DiffStage.rank(x.element) ?? DiffStage.backboneOrder.count + x.offset
            let ry = DiffStage.rank(y.element) ?? DiffStage.backboneOrder.count + y.offset
            return rx < ry
        }.map(\.element)
        return ranked.map { stage in
            let all = byStage[stage]!
            let weights = all.filter { $0.section == .weights }
            let stats = all.filter { $0.section == .bnStatistics }
            let counters = all.filter { $0.section == .counters }
            let structural = all.filter { $0.status == .added || $0.status == .removed || $0.shapeChanged }
            let status: Status
            if all.allSatisfy({ $0.status == .added }) {
                status = .added
            } else if all.allSatisfy({ $0.status == .removed }) {
                status = .removed
            } else if !structural.isEmpty {
                status = .replaced
            } else if (weights + stats).contains(where: { $0.status != .unchanged }) {
                status = .changed
            } else {
                status = .unchanged
            }
            let notes = status == .replaced ? structural.map(Self.structuralNote) : []
            var l2Squared: Double?
            for e in weights { if let d = e.delta { l2Squared = (l2Squared ?? 0) + d.l2 * d.l2 } }
            func changedCount(_ list: [TensorEntry]) -> Int { list.reduce(0) { $0 + ($1.status == .unchanged ? 0 : 1) } }
            return StageSummary(
                stage: stage, status: status, weightTensors: weights.count, changedWeights: changedCount(weights),
                relativeChange: relative(weights), l2: l2Squared?.squareRoot(), bnStatistics: stats.count,
                changedBNStatistics: changedCount(stats), counters: counters.count,
                changedCounters: changedCount(counters), notes: notes)
        }
    }

    /// `fc.weight [1000, 2048] -> [10, 2048]`, `fc.bias added [10]`, `fc.bias removed [1000]`.
    static func structuralNote(_ e: TensorEntry) -> String {
        switch e.status {
        case .added: return "\(e.name) added \(e.shapeB ?? [])"
        case .removed: return "\(e.name) removed \(e.shapeA ?? [])"
        default: return "\(e.name) \(e.shapeA ?? []) -> \(e.shapeB ?? [])"
        }
    }

    // MARK: - Provenance

    /// Provenance lists that are sets by meaning, compared as such (`KeyedDiff.diff`): the source
    /// keys an import dropped (listed in the source file's dict order), the keys it filled and the
    /// storage device tags (first-seen order). `source.rules`, `parents`, `datasets` and `warnings`
    /// keep their order-aware alignment.
    static let unorderedProvenanceLists: Set<String> = ["source.droppedKeys", "source.filledKeys", "source.locations"]

    /// Provenance flattened without its hyperparameters (reported on their own), plus each metric
    /// history as `metricHistory.<name>.count` and `.last` (the histories are not part of the JSON form).
    static func flatProvenance(_ p: Provenance) throws -> [FlatEntry] {
        var stripped = p
        stripped.hyperparameters = [:]
        stripped.commandLine = []
        var flat = try KeyedDiff.flatten(stripped)
        for (key, value) in DiffView.parse(commandLine: p.commandLine) {
            flat.append(FlatEntry(key: "commandLine.\(key)", value: .string(value)))
        }
        for name in p.metricHistory.keys.sorted() {
            let history = p.metricHistory[name]!
            flat.append(FlatEntry(key: "metricHistory.\(name).count", value: .int(Int64(history.count))))
            if let last = history.last {
                flat.append(FlatEntry(key: "metricHistory.\(name).last", value: .double(last)))
            }
        }
        return flat
    }
}
