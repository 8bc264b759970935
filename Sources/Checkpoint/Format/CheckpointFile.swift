import Collections
import Foundation
import HDF5

/// Reads and writes checkpoint format v1, the HDF5 layout specified in schemas/checkpoint-v1.md.
///
/// Every error is a `CheckpointError` with one line naming the file: `.notACheckpoint` (not HDF5, or
/// HDF5 without `format = "bissl-checkpoint"`), `.unsupported` (a newer major format version),
/// `.corrupt` (a required object missing or malformed), `.io` (cannot read or write the file).
public enum CheckpointFile {
    /// Value of the root attribute `format`.
    public static let formatName = "bissl-checkpoint"
    /// The format version this code writes; it reads every `1.x`.
    public static let formatVersion = (major: 1, minor: 0)

    /// The 8-byte HDF5 file signature `\x89HDF\r\n\x1a\n`.
    static let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    // MARK: - write

    /// Writes `checkpoint` to `url` atomically (temporary name, flush, rename; see `AtomicFile`),
    /// with its content id (`ContentID.compute`) as the root attribute `content_id`. Each tensor of
    /// `checkpoint.sharedAliases(in:)` of the whole flat state dict is stored once: the alias name is
    /// an HDF5 hard link to the first name's dataset (schemas/checkpoint-v1.md, "Aliases").
    /// - Throws: `CheckpointError.io` when the file cannot be written; nothing is left behind then.
    public static func write(_ checkpoint: Checkpoint, to url: URL) throws {
        let contentID = ContentID.compute(checkpoint)
        let json = try provenanceJSON(checkpoint.provenance)
        try AtomicFile.write(to: url) { tmp in
            for (component, stateDict) in checkpoint.components {
                if component.utf8.contains(0) { throw CheckpointError.invalid("cannot write \(url.path): a component name contains a NUL character") }
                if let key = stateDict.keys.first(where: { $0.utf8.contains(0) }) {
                    throw CheckpointError.invalid("cannot write \(url.path): key \(key.debugDescription) in \(component) contains a NUL character")
                }
            }
            do {
                let file = try HDF5.File.create(tmp.path)
                try fill(file, checkpoint, contentID: contentID, provenanceJSON: json)
                try file.flush()
                try file.close()
            } catch let error as HDF5Error {
                let message = error.message.replacingOccurrences(of: tmp.path, with: url.path)
                throw CheckpointError.io("cannot write \(url.path): \(message)")
            }
        }
    }

    private static func fill(_ file: HDF5.File, _ checkpoint: Checkpoint, contentID: String, provenanceJSON: String) throws {
        try file.setAttribute("format", formatName)
        try file.setAttribute("format_version", "\(formatVersion.major).\(formatVersion.minor)")
        try file.setAttribute("content_id", contentID)
        try file.setAttribute("writer", "\(checkpoint.provenance.tool.name) \(checkpoint.provenance.tool.version)")

        try file.createStringDataset("components", values: Array(checkpoint.components.keys))
        let tensors = try file.createGroup("tensors")
        let keys = try file.createGroup("keys")
        // Aliases: the first name's dataset is written, every alias is a hard link to it.
        let shared = checkpoint.sharedAliases(in: checkpoint.flatStateDict())
        var stored: [String: (path: String, tensor: Tensor)] = [:]   // flat name -> its dataset
        for (component, stateDict) in checkpoint.components {
            let name = LinkName.escape(component)
            let prefix = Checkpoint.unprefixedComponents.contains(component) ? "" : component + "."
            try keys.createStringDataset(name, values: Array(stateDict.keys))
            let group = try tensors.createGroup(name)
            for (key, tensor) in stateDict {
                let link = LinkName.escape(key)
                // Linked only when the stored tensor is this one (flat names of two components may coincide).
                if let target = shared[prefix + key], let first = stored[target], first.tensor == tensor {
                    try group.createHardLink(link, to: first.path)
                } else {
                    try writeTensor(tensor, named: link, in: group)
                    if stored[prefix + key] == nil { stored[prefix + key] = ("/tensors/\(name)/\(link)", tensor) }
                }
            }
        }
        if let architecture = checkpoint.architecture {
            try writeArchitecture(architecture, in: file)
        }
        try file.createStringDataset("provenance", value: provenanceJSON)
        if !checkpoint.provenance.metricHistory.isEmpty {
            let history = try file.createGroup("metric_history")
            for (metric, values) in checkpoint.provenance.metricHistory.sorted(by: { $0.key < $1.key }) {
                let ds = try history.createDataset(LinkName.escape(metric), type: .float64, shape: [values.count])
                try values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { try ds.write($0) }
            }
        }
    }

    /// HDF5 element type per dtype (schemas/checkpoint-v1.md, "Tensors"); bf16 and bool also get `dtype`.
    static func elementType(for dtype: DType) -> ElementType {
        switch dtype {
        case .float64: return .float64
        case .float32: return .float32
        case .float16: return .float16
        case .bfloat16: return .uint16
        case .int64: return .int64
        case .int32: return .int32
        case .int16: return .int16
        case .int8: return .int8
        case .uint8, .bool: return .uint8
        }
    }

    private static func writeTensor(_ tensor: Tensor, named name: String, in group: HDF5.Group) throws {
        let ds = try group.createDataset(name, type: elementType(for: tensor.dtype), shape: tensor.shape)
        try ds.write(tensor.data)
        if tensor.dtype == .bfloat16 || tensor.dtype == .bool {
            try ds.setAttribute("dtype", tensor.dtype.rawValue)
        }
    }

    private static func writeArchitecture(_ arch: Architecture, in file: HDF5.File) throws {
        let group = try file.createGroup("architecture")
        try group.setAttribute("family", arch.family)
        try group.setAttribute("depth", Int64(arch.depth))
        try group.setAttribute("block", arch.block)
        try group.setAttribute("layers", arch.layers.map(Int64.init))
        try group.setAttribute("width", Int64(arch.width))
        try group.setAttribute("stem", arch.stem)
        let heads = try group.createGroup("heads")
        for (name, head) in arch.heads.sorted(by: { $0.key < $1.key }) {
            let h = try heads.createGroup(LinkName.escape(name))
            try h.setAttribute("kind", head.kind)
            try h.setAttribute("dims", head.dims.map(Int64.init))
        }
    }

    /// The provenance JSON document (sorted keys, non-finite numbers as strings).
    static func provenanceJSON(_ provenance: Provenance) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        do {
            return String(decoding: try encoder.encode(provenance), as: UTF8.self)
        } catch {
            throw CheckpointError.invalid("cannot encode provenance as JSON: \(error)")
        }
    }

    // MARK: - read

    /// True when the file starts with the 8-byte HDF5 signature (also accepted at offsets 512, 1024,
    /// 2048, ... as HDF5 allows after a user block). False for missing or unreadable files.
    public static func isHDF5(_ url: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        var offset: UInt64 = 0
        while offset <= 1 << 20 {
            guard (try? handle.seek(toOffset: offset)) != nil, let bytes = try? handle.read(upToCount: 8), bytes.count == 8 else {
                return false
            }
            if Array(bytes) == signature { return true }
            offset = offset == 0 ? 512 : offset * 2
        }
        return false
    }

    /// Reads a checkpoint: every component's tensors in stored order (bytes read straight into each
    /// tensor's buffer), the architecture record and provenance with its metric histories. Names that
    /// are hard links to one dataset (same object address, `H5Oget_info`) get the same `Tensor`, read
    /// once, and `aliases` maps each later name (in `/components`, `/keys/<c>` order; flat state-dict
    /// naming) to the first; provenance is not consulted for this.
    /// - Parameter verifyContentID: also recompute the content id and compare it with the stored one.
    /// - Throws: `CheckpointError` (see the type's documentation), one line naming the file.
    public static func read(_ url: URL, verifyContentID: Bool = false) throws -> Checkpoint {
        let file = try open(url)
        let name = url.lastPathComponent
        do {
            let checkpoint = try readContents(file, name: name)
            if verifyContentID {
                let stored = try file.stringAttribute("content_id")
                let actual = ContentID.compute(checkpoint)
                guard stored == actual else {
                    throw CheckpointError.corrupt("\(name): content id mismatch: stored \(stored), computed \(actual)")
                }
            }
            return checkpoint
        } catch let error as HDF5Error {
            throw CheckpointError.corrupt("\(name): \(error.message.replacingOccurrences(of: url.path, with: name))")
        }
    }

    /// The content id stored in the root attribute `content_id`, without reading any tensor.
    /// - Throws: `CheckpointError` as `read` does.
    public static func storedContentID(_ url: URL) throws -> String {
        let file = try open(url)
        do {
            return try file.stringAttribute("content_id")
        } catch let error as HDF5Error {
            throw CheckpointError.corrupt("\(url.lastPathComponent): \(error.message.replacingOccurrences(of: url.path, with: url.lastPathComponent))")
        }
    }

    /// Opens `url` and checks the `format` and `format_version` attributes.
    private static func open(_ url: URL) throws -> HDF5.File {
        let name = url.lastPathComponent
        guard FileManager.default.isReadableFile(atPath: url.path) else {
            throw CheckpointError.io("cannot read \(url.path): no such readable file")
        }
        guard isHDF5(url) else {
            throw CheckpointError.notACheckpoint("\(name) is not an HDF5 file (no HDF5 signature), so not a bissl checkpoint")
        }
        let file: HDF5.File
        do {
            file = try HDF5.File.open(url.path)
        } catch let error as HDF5Error {
            throw CheckpointError.corrupt("\(name): damaged HDF5 file: \(error.message.replacingOccurrences(of: url.path, with: name))")
        }
        guard file.hasAttribute("format"), (try? file.stringAttribute("format")) == formatName else {
            throw CheckpointError.notACheckpoint("\(name) is an HDF5 file but not a bissl checkpoint (no root attribute format = \"\(formatName)\")")
        }
        let version = (try? file.stringAttribute("format_version")) ?? ""
        let parts = version.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let major = parts[0], parts[1] != nil, major >= 1 else {
            throw CheckpointError.corrupt("\(name): invalid format_version \"\(version)\" (expected MAJOR.MINOR)")
        }
        guard major <= formatVersion.major else {
            throw CheckpointError.unsupported(
                "\(name) uses bissl checkpoint format \(version); this bissl (\(bisslVersion)) reads format \(formatVersion.major).x: upgrade bissl")
        }
        return file
    }

    private static func readContents(_ file: HDF5.File, name: String) throws -> Checkpoint {
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
        var components = OrderedDictionary<String, StateDict>()
        var aliases: [String: String] = [:]
        var byAddress: [UInt64: (flat: String, tensor: Tensor)] = [:]   // datasets already read
        for component in componentNames {
            let prefix = Checkpoint.unprefixedComponents.contains(component) ? "" : component + "."
            let link = LinkName.escape(component)
            try require("keys/\(link)", .dataset)
            try require("tensors/\(link)", .group)
            let keys = try keysGroup.openDataset(link).readStrings()
            let group = try tensorsGroup.openGroup(link)
            guard try group.childCount() == keys.count else {
                throw CheckpointError.corrupt(
                    "\(name): /tensors/\(link) holds \(try group.childCount()) datasets but /keys/\(link) lists \(keys.count) keys")
            }
            var stateDict = StateDict(minimumCapacity: keys.count)
            for key in keys {
                guard stateDict[key] == nil else { throw CheckpointError.corrupt("\(name): /keys/\(link) lists \(key) twice") }
                let datasetName = LinkName.escape(key)
                guard group.kind(of: datasetName) == .dataset else {
                    throw CheckpointError.corrupt("\(name): missing tensor /tensors/\(link)/\(datasetName) listed in /keys/\(link)")
                }
                // A name that is a hard link to a dataset read before is an alias of the first name.
                let address = try group.objectAddress(of: datasetName)
                if let first = byAddress[address] {
                    stateDict[key] = first.tensor
                    if first.flat != prefix + key { aliases[prefix + key] = first.flat }
                    continue
                }
                let tensor = try readTensor(try group.openDataset(datasetName), fileName: name)
                byAddress[address] = (prefix + key, tensor)
                stateDict[key] = tensor
            }
            components[component] = stateDict
        }

        let architecture = file.kind(of: "architecture") == .group ? try readArchitecture(file.openGroup("architecture"), fileName: name) : nil
        var provenance = try decodeProvenance(try file.openDataset("provenance").readString(), fileName: name)
        if file.kind(of: "metric_history") == .group {
            let history = try file.openGroup("metric_history")
            for link in try history.childNames() {
                guard let metric = LinkName.unescape(link) else {
                    throw CheckpointError.corrupt("\(name): /metric_history/\(link) is not a valid escaped name")
                }
                let ds = try history.openDataset(link)
                guard ds.elementType == .float64, ds.shape.count == 1 else {
                    throw CheckpointError.corrupt("\(name): /metric_history/\(link) is not a 1-D float64 dataset")
                }
                let data = try ds.readData()
                provenance.metricHistory[metric] = data.withUnsafeBytes { raw in
                    (0..<ds.count).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
                }
            }
        }
        return Checkpoint(components: components, architecture: architecture, provenance: provenance, aliases: aliases)
    }

    private static func readTensor(_ ds: HDF5.Dataset, fileName: String) throws -> Tensor {
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
        return try Tensor(dtype: dtype, shape: ds.shape, data: try ds.readData())
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

    private static func decodeProvenance(_ json: String, fileName: String) throws -> Provenance {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        do {
            return try decoder.decode(Provenance.self, from: Data(json.utf8))
        } catch let DecodingError.keyNotFound(key, context) {
            let path = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            throw CheckpointError.corrupt("\(fileName): /provenance lacks required field \(path)")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw CheckpointError.corrupt("\(fileName): /provenance field \(path) has the wrong type")
        } catch {
            throw CheckpointError.corrupt("\(fileName): /provenance is not valid JSON")
        }
    }
}
