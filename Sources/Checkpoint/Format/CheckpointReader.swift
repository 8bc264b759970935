import Collections
import Foundation
import HDF5

/// Facts about an open file (size, device, inode, modification and change times) that tell an
/// unchanged file without reading it; see `HDF5.FileStatus`.
public typealias FileStatus = HDF5.FileStatus

/// An open checkpoint file (format v1, schemas/checkpoint-v1.md) after one pass over its metadata:
/// component and key lists, each tensor's dtype and shape, the architecture record, provenance with
/// its metric histories and the stored content id. Tensor bytes are read only when asked for
/// (`tensor(_:_:)`, `checkpoint(only:)`), each straight into its final buffer: one `pread` per
/// contiguous dataset (`HDF5.Dataset.directExtent`), spread over the machine's cores, `H5Dread` for
/// anything else. So `show --tensors`, `export --component backbone` or `diff` of a few stages read
/// only the bytes they need.
///
/// The reader does not check the content id; `CheckpointFile.read(verifyContentID:)` and the zoo
/// (`Zoo.checkpoint`) decide when the bytes must be hashed. Every size taken from the file is checked
/// before use (`directExtent` against the file's size).
///
/// Errors are `CheckpointError`s with one line naming the file, as `CheckpointFile.read` documents.
public final class CheckpointReader: @unchecked Sendable {
    // @unchecked: every stored property is immutable after init; HDF5 calls are serialised by the
    // library's own lock (Debian's thread-safe build) and `DirectExtent.read` touches no HDF5 state.

    /// dtype and shape of one stored tensor; `byteCount` is `shape.product * dtype.size`.
    public struct TensorInfo: Equatable, Sendable {
        public var dtype: DType
        public var shape: [Int]
        public var byteCount: Int
    }

    public let url: URL
    /// The root attribute `content_id` (nil when the file has none).
    public let storedContentID: String?
    /// `fstat` facts of the file as opened (nil when HDF5 reads it through a driver without a descriptor).
    public let status: FileStatus?
    public let architecture: Architecture?
    public let provenance: Provenance
    /// The `/provenance` document as stored (the tensor index holds a copy, `tensorIndexProblem`).
    let provenanceJSON: String
    /// Later name -> first name of hard-linked datasets, flat state-dict naming (see `CheckpointFile.read`).
    public let aliases: [String: String]
    /// Component -> key -> tensor info, in stored order (`/components`, `/keys/<c>`).
    public let components: OrderedDictionary<String, OrderedDictionary<String, TensorInfo>>

    private let file: HDF5.File
    private let name: String
    /// Component -> key -> index into `datasets` (hard-linked names share one index).
    private let slots: [String: [String: Int]]
    private let datasets: [(dataset: HDF5.Dataset, info: TensorInfo)]
    /// The metric history datasets, by metric name.
    private let histories: [String: HDF5.Dataset]

    /// Opens `url` and reads its metadata (no tensor bytes).
    /// - Parameter zooObject: the file is (or is about to become) a zoo object: its tensor index,
    ///   if it has one, must say what its HDF5 metadata says (`tensorIndexProblem()`), since the zoo
    ///   reads a trusted object through its index alone (schemas/checkpoint-v1.md, "Tensor index").
    /// - Throws: `CheckpointError` (`.notACheckpoint`, `.unsupported`, `.corrupt`, `.io`);
    ///   `.corrupt` naming what disagrees for a `zooObject` whose index disagrees.
    public init(_ url: URL, zooObject: Bool = false) throws {
        self.url = url
        let name = url.lastPathComponent
        self.name = name
        let file = try CheckpointFile.open(url)
        self.file = file
        do {
            status = file.status()
            storedContentID = file.hasAttribute("content_id") ? try file.stringAttribute("content_id") : nil
            func require(_ path: String, _ kind: HDF5.Group.ChildKind) throws {
                guard file.kind(of: path) == kind else {
                    throw CheckpointError.corrupt("\(name): missing /\(path); not a complete bissl checkpoint")
                }
            }
            try require("components", .dataset)
            try require("tensors", .group)
            try require("keys", .group)
            try require("provenance", .dataset)

            let componentNames = try file.openDataset("components").readStrings()
            guard Set(componentNames).count == componentNames.count else {
                throw CheckpointError.corrupt("\(name): /components lists a component twice")
            }
            let tensorsGroup = try file.openGroup("tensors")
            let keysGroup = try file.openGroup("keys")
            var components = OrderedDictionary<String, OrderedDictionary<String, TensorInfo>>()
            var slots: [String: [String: Int]] = [:]
            var datasets: [(dataset: HDF5.Dataset, info: TensorInfo)] = []
            var aliases: [String: String] = [:]
            var byAddress: [UInt64: (flat: String, slot: Int)] = [:]   // datasets seen before
            for component in componentNames {
                let prefix = Checkpoint.unprefixedComponents.contains(component) ? "" : component + "."
                let link = LinkName.escape(component)
                try require("keys/\(link)", .dataset)
                try require("tensors/\(link)", .group)
                let keys = try keysGroup.openDataset(link).readStrings()
                let group = try tensorsGroup.openGroup(link)
                let children = try group.childCount()
                guard children == keys.count else {
                    throw CheckpointError.corrupt("\(name): /tensors/\(link) holds \(children) datasets but /keys/\(link) lists \(keys.count) keys")
                }
                var infos = OrderedDictionary<String, TensorInfo>(minimumCapacity: keys.count)
                var componentSlots: [String: Int] = [:]
                for key in keys {
                    guard infos[key] == nil else { throw CheckpointError.corrupt("\(name): /keys/\(link) lists \(key) twice") }
                    let datasetName = LinkName.escape(key)
                    guard group.kind(of: datasetName) == .dataset else {
                        throw CheckpointError.corrupt("\(name): missing tensor /tensors/\(link)/\(datasetName) listed in /keys/\(link)")
                    }
                    // A name that is a hard link to a dataset seen before is an alias of the first name.
                    let address = try group.objectAddress(of: datasetName)
                    if let first = byAddress[address] {
                        infos[key] = datasets[first.slot].info
                        componentSlots[key] = first.slot
                        if first.flat != prefix + key { aliases[prefix + key] = first.flat }
                        continue
                    }
                    let dataset = try group.openDataset(datasetName)
                    let info = try Self.info(dataset, fileName: name)
                    byAddress[address] = (prefix + key, datasets.count)
                    componentSlots[key] = datasets.count
                    datasets.append((dataset, info))
                    infos[key] = info
                }
                components[component] = infos
                slots[component] = componentSlots
            }
            self.components = components
            self.slots = slots
            self.datasets = datasets
            self.aliases = aliases
            architecture = file.kind(of: "architecture") == .group ? try Self.readArchitecture(file.openGroup("architecture"), fileName: name) : nil
            let stored = try Self.readProvenance(file, fileName: name)
            provenanceJSON = stored.json
            provenance = stored.provenance
            histories = stored.histories
        } catch let error as HDF5Error {
            throw Self.corrupt(error, url: url)
        }
        if zooObject, let problem = try tensorIndexProblem() { throw CheckpointError.corrupt(problem) }
    }

    /// One tensor's bytes, read now.
    /// - Throws: `CheckpointError.invalid` for an unknown component or key, `.corrupt` when the
    ///   bytes cannot be read (truncated file).
    public func tensor(_ component: String, _ key: String) throws -> Tensor {
        guard let slot = slots[component]?[key] else {
            throw CheckpointError.invalid("\(name) has no tensor \(key) in component \(component)")
        }
        return try read([slot])[slot]!
    }

    /// The checkpoint with the tensors of `only` (every component when nil; unknown names are
    /// ignored), the architecture record (its heads dropped when the backbone alone is asked for, as
    /// `Checkpoint.selecting(.backbone)` does), provenance and the aliases among the kept names.
    /// - Throws: `CheckpointError.corrupt` when tensor bytes cannot be read.
    public func checkpoint(only: Set<String>? = nil) throws -> Checkpoint {
        let kept = components.keys.filter { only?.contains($0) ?? true }
        let tensors = try read(Set(kept.flatMap { slots[$0]!.values }).sorted())
        var result = OrderedDictionary<String, StateDict>()
        for component in kept {
            let componentSlots = slots[component]!
            var dict = StateDict(minimumCapacity: componentSlots.count)
            for key in components[component]!.keys { dict[key] = tensors[componentSlots[key]!]! }
            result[component] = dict
        }
        let checkpoint = Checkpoint(components: result, architecture: architecture, provenance: provenance, aliases: aliases)
        return only.map { checkpoint.keeping($0) } ?? checkpoint
    }

    /// Reads the datasets of `slots`: every contiguous dataset with `pread` on all cores
    /// (`DirectExtent.readAll`), then the rest through `H5Dread` on this thread.
    private func read(_ slots: [Int]) throws -> [Int: Tensor] {
        do {
            var direct: [(slot: Int, extent: DirectExtent)] = []
            var other: [Int] = []
            for slot in slots {
                if datasets[slot].info.byteCount > 0, let extent = try datasets[slot].dataset.directExtent() {
                    direct.append((slot, extent))
                } else {
                    other.append(slot)
                }
            }
            var tensors: [Int: Tensor] = [:]
            for (entry, data) in zip(direct, try DirectExtent.readAll(direct.map(\.extent))) {
                tensors[entry.slot] = try tensor(entry.slot, data)
            }
            for slot in other {
                tensors[slot] = try tensor(slot, datasets[slot].info.byteCount > 0 ? try datasets[slot].dataset.readData() : Data())
            }
            return tensors
        } catch let error as HDF5Error {
            throw Self.corrupt(error, url: url)
        }
    }

    private func tensor(_ slot: Int, _ data: Data) throws -> Tensor {
        try Tensor(dtype: datasets[slot].info.dtype, shape: datasets[slot].info.shape, data: data)
    }

    /// The stored tensors in the order of `slots` (hard-linked names share one), with the HDF5
    /// objects they are read from; for the HDF5 reader process's message (`UntrustedCheckpointFile`).
    var storedTensors: [(dataset: HDF5.Dataset, info: TensorInfo)] { datasets }

    /// Component -> key -> index into `storedTensors`.
    var tensorSlots: [String: [String: Int]] { slots }

    // MARK: - tensor index

    /// Nil when the file has no tensor index (schemas/checkpoint-v1.md, "Tensor index") or its index
    /// says exactly what the HDF5 metadata says (content id, architecture, provenance, every name's
    /// dtype, shape and file offset, every metric history's place); otherwise one line saying what
    /// disagrees. A reader opened for a zoo object (`init(_:zooObject:)`) refuses a file with a
    /// problem: a trusted object is later read through its index alone (`TensorIndex`).
    /// - Throws: `CheckpointError.corrupt` when the HDF5 metadata itself cannot be read.
    func tensorIndexProblem() throws -> String? {
        guard let descriptor = file.descriptor, let size = status?.size else { return nil }
        let stored: TensorIndex
        do {
            guard let index = try TensorIndex.read(descriptor: descriptor, fileSize: size, fileName: name) else { return nil }
            stored = index
        } catch let error as CheckpointError {
            return error.description
        }
        let implied: TensorIndex
        do {
            implied = try impliedIndex(contentID: storedContentID ?? "")
        } catch let error as HDF5Error {
            throw Self.corrupt(error, url: url)
        }
        guard stored != implied else { return nil }
        let what: String
        if stored.contentID != implied.contentID {
            what = "content id"
        } else if stored.architecture != implied.architecture {
            what = "architecture record"
        } else if stored.provenanceJSON != implied.provenanceJSON {
            what = "provenance"
        } else if stored.components != implied.components || stored.tensors.count != implied.tensors.count {
            what = "component or key lists"
        } else if let i = implied.tensors.indices.first(where: { stored.tensors[$0] != implied.tensors[$0] }) {
            what = "tensor \(implied.tensors[i].key) of \(implied.tensors[i].component)"
        } else {
            what = "metric histories"
        }
        return "\(name): its tensor index disagrees with its HDF5 metadata (\(what)): the file was changed by another tool after bissl wrote it"
    }

    /// The tensor index this file's HDF5 metadata implies: offsets of contiguous datasets
    /// (`directExtent`), and an impossible offset (`UInt64.max`) for a dataset stored any other way,
    /// which no valid index holds.
    private func impliedIndex(contentID: String) throws -> TensorIndex {
        var offsets: [UInt64] = []
        for (dataset, info) in datasets {
            offsets.append(try info.byteCount == 0 ? 0 : dataset.directExtent().map { UInt64($0.offset) } ?? .max)
        }
        var tensors: [TensorIndex.Entry] = []
        for (component, infos) in components {
            for (key, info) in infos {
                tensors.append(TensorIndex.Entry(component: component, key: key, dtype: info.dtype, shape: info.shape,
                                                 offset: offsets[slots[component]![key]!], byteCount: info.byteCount))
            }
        }
        var histories: [TensorIndex.History] = []
        for (metric, ds) in self.histories.sorted(by: { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }) {
            let offset = try ds.count == 0 ? 0 : ds.directExtent().map { UInt64($0.offset) } ?? .max
            histories.append(TensorIndex.History(metric: metric, offset: offset, count: ds.count))
        }
        return TensorIndex(contentID: contentID, architecture: architecture, provenanceJSON: provenanceJSON,
                           components: Array(components.keys), tensors: tensors, histories: histories)
    }

    static func corrupt(_ error: HDF5Error, url: URL) -> CheckpointError {
        if error.leavesTheFile { return .unsafe("\(url.lastPathComponent): \(error.message.replacingOccurrences(of: url.path, with: url.lastPathComponent))") }
        return .corrupt("\(url.lastPathComponent): \(error.message.replacingOccurrences(of: url.path, with: url.lastPathComponent))")
    }

    // MARK: - metadata

    /// dtype (from the HDF5 type and the `dtype` marker attribute) and shape of a tensor dataset.
    private static func info(_ ds: HDF5.Dataset, fileName: String) throws -> TensorInfo {
        let marker = ds.hasAttribute("dtype") ? try ds.stringAttribute("dtype") : nil
        let dtype: DType
        switch (ds.elementType, marker) {
        case (.float64?, nil): dtype = .float64
        case (.float32?, nil): dtype = .float32
        case (.float16?, nil): dtype = .float16
        case (.int64?, nil): dtype = .int64
        case (.int32?, nil): dtype = .int32
        case (.int16?, nil): dtype = .int16
        case (.int8?, nil): dtype = .int8
        case (.uint8?, nil): dtype = .uint8
        case (.uint8?, "bool"?): dtype = .bool
        case (.uint16?, "bfloat16"?): dtype = .bfloat16
        default:
            let stored = ds.elementType?.rawValue ?? (ds.isString ? "string" : "an unsupported HDF5 type")
            throw CheckpointError.unsupported(
                "\(fileName): tensor \(ds.path) is \(stored)\(marker.map { " with dtype \"\($0)\"" } ?? ""), not a tensor dtype of format v1")
        }
        guard let bytes = dtype.byteCount(shape: ds.shape) else {
            throw CheckpointError.corrupt("\(fileName): tensor \(ds.path) has an impossible shape \(ds.shape)")
        }
        return TensorInfo(dtype: dtype, shape: ds.shape, byteCount: bytes)
    }

    private static func readProvenance(_ file: HDF5.File, fileName: String) throws
        -> (json: String, provenance: Provenance, histories: [String: HDF5.Dataset]) {
        let json = try file.openDataset("provenance").readString()
        var provenance = try decodeProvenance(json, fileName: fileName)
        guard file.kind(of: "metric_history") == .group else { return (json, provenance, [:]) }
        let history = try file.openGroup("metric_history")
        var datasets: [String: HDF5.Dataset] = [:]
        for link in try history.childNames() {
            guard let metric = LinkName.unescape(link) else {
                throw CheckpointError.corrupt("\(fileName): /metric_history/\(link) is not a valid escaped name")
            }
            let ds = try history.openDataset(link)
            guard ds.elementType == .float64, ds.shape.count == 1 else {
                throw CheckpointError.corrupt("\(fileName): /metric_history/\(link) is not a 1-D float64 dataset")
            }
            let data = try ds.readData()
            provenance.metricHistory[metric] = data.withUnsafeBytes { raw in
                (0..<ds.count).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
            }
            datasets[metric] = ds
        }
        return (json, provenance, datasets)
    }

    private static func readArchitecture(_ group: HDF5.Group, fileName: String) throws -> Architecture {
        var heads: [String: Architecture.Head] = [:]
        if group.kind(of: "heads") == .group {
            let headsGroup = try group.openGroup("heads")
            for link in try headsGroup.childNames() {
                guard let head = LinkName.unescape(link) else {
                    throw CheckpointError.corrupt("\(fileName): /architecture/heads/\(link) is not a valid escaped name")
                }
                let h = try headsGroup.openGroup(link)
                heads[head] = Architecture.Head(
                    kind: try h.stringAttribute("kind"), dims: try h.intArrayAttribute("dims").map { Int($0) })
            }
        }
        return Architecture(
            family: try group.stringAttribute("family"),
            depth: Int(try group.intAttribute("depth")),
            block: try group.stringAttribute("block"),
            layers: try group.intArrayAttribute("layers").map { Int($0) },
            width: Int(try group.intAttribute("width")),
            stem: try group.stringAttribute("stem"),
            heads: heads)
    }

    static func decodeProvenance(_ json: String, fileName: String) throws -> Provenance {
        do {
            return try Provenance.decode(json: json)
        } catch let DecodingError.keyNotFound(key, context) {
            let path = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            throw CheckpointError.corrupt("\(fileName): /provenance lacks required field \(path)")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw CheckpointError.corrupt(path.isEmpty ? "\(fileName): /provenance is not a JSON object"
                                                       : "\(fileName): /provenance field \(path) has the wrong type")
        } catch {
            throw CheckpointError.corrupt("\(fileName): /provenance is not valid JSON")
        }
    }
}
