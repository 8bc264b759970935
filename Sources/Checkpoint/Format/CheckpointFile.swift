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
    ///
    /// Tensor bytes go from the checkpoint's buffers (for a converted file, views of the mapped
    /// source) to the file without another copy; the content id is hashed on a second thread while
    /// HDF5 writes, and stored last.
    /// - Parameter contentID: the id when the caller has computed it already (not hashed again).
    /// - Parameter sourceDigest: the source file's SHA-256 still being hashed
    ///   (`Interchange.loadDeferringDigest`; `checkpoint.provenance.source.sha256` is its placeholder):
    ///   waited for after the tensors are written, then written into the provenance.
    /// - Returns: the content id.
    /// - Throws: `CheckpointError.io` when the file cannot be written (or the source file could not
    ///   be hashed); nothing is left behind then.
    @discardableResult
    public static func write(_ checkpoint: Checkpoint, to url: URL, contentID: String? = nil,
                             sourceDigest: SourceDigest? = nil) throws -> String {
        var id = ""
        try AtomicFile.write(to: url) { tmp in
            id = try writeFile(checkpoint, at: tmp, reportedAs: url, contentID: contentID, sourceDigest: sourceDigest)
        }
        return id
    }

    /// Writes `checkpoint` as `write` does, but at `url` itself (which must not exist) and without the
    /// rename: the file is flushed to disk (`fsync`) and left for the caller to publish with one
    /// `rename` and an `fsync` of the destination folder (the zoo's import). On error nothing is left.
    /// - Parameter sourceDigest: as for `write`.
    /// - Returns: the content id, hashed while the file was written, and the file's lock
    ///   (`AtomicFile.writeInPlace`): release it once the file is renamed into place or removed.
    public static func writeStaged(_ checkpoint: Checkpoint, to url: URL, sourceDigest: SourceDigest? = nil) throws
        -> (id: String, lock: TemporaryFileLock) {
        var id = ""
        let lock = try AtomicFile.writeInPlace(to: url) {
            id = try writeFile(checkpoint, at: url, reportedAs: url, contentID: nil, sourceDigest: sourceDigest)
        }
        return (id, lock)
    }

    private static func writeFile(_ checkpoint: Checkpoint, at path: URL, reportedAs url: URL, contentID: String?,
                                  sourceDigest: SourceDigest?) throws -> String {
        for (component, stateDict) in checkpoint.components {
            if component.utf8.contains(0) { throw CheckpointError.invalid("cannot write \(url.path): a component name contains a NUL character") }
            if let key = stateDict.keys.first(where: { $0.utf8.contains(0) }) {
                throw CheckpointError.invalid("cannot write \(url.path): key \(key.debugDescription) in \(component) contains a NUL character")
            }
        }
        let json = try provenanceJSON(checkpoint.provenance)
        // Each tensor's pages of a mapped source are released once it is written and hashed.
        let release = ReleaseAfterUse(checkpoint.components.values.flatMap { $0.values.map(\.data) },
                                      consumers: contentID == nil ? 2 : 1)
        let hashing = contentID == nil ? Background { ContentID.compute(checkpoint, hashed: release.done) } : nil
        // The tensor index goes in the user block; its length does not depend on the offsets, so the
        // block is sized before HDF5 places anything.
        var index = TensorIndex.layout(of: checkpoint, provenanceJSON: json)
        let userBlock = TensorIndex.userBlockSize(holding: index.encoded().count)
        do {
            let file = try HDF5.File.create(path.path, userBlock: userBlock)
            try fill(file, checkpoint, index: &index, written: release.done) {
                // The source's digest, hashed beside decoding and the tensors' writing, is due now.
                guard let sourceDigest else { return json }
                let completed = try provenanceJSON(sourceDigest.completing(checkpoint).provenance)
                guard completed.utf8.count == json.utf8.count else {
                    throw CheckpointError.invalid("cannot write \(url.path): the provenance changed length when the source's SHA-256 replaced its placeholder")
                }
                return completed
            }
            let id = try contentID ?? hashing!.value()
            try file.setAttribute("content_id", id)
            try file.flush()
            try file.close()
            index.contentID = id
            try index.write(into: path, userBlock: userBlock)
            return id
        } catch let error as HDF5Error {
            let message = error.message.replacingOccurrences(of: path.path, with: url.path)
            throw CheckpointError.io("cannot write \(url.path): \(message)")
        } catch CheckpointError.io(let message) {
            throw CheckpointError.io(message.replacingOccurrences(of: path.path, with: url.path))
        }
    }

    /// Everything but the root attribute `content_id`; fills in the offsets of `index` (laid out by
    /// `TensorIndex.layout(of:provenanceJSON:)`, so its entries follow this loop's order) and its
    /// provenance, which `provenanceJSON` gives once the tensors are written. `written` is called
    /// with each tensor's ordinal once it is in the file.
    private static func fill(_ file: HDF5.File, _ checkpoint: Checkpoint, index: inout TensorIndex,
                             written: (Int) -> Void, provenanceJSON: () throws -> String) throws {
        try file.setAttribute("format", formatName)
        try file.setAttribute("format_version", "\(formatVersion.major).\(formatVersion.minor)")
        try file.setAttribute("writer", "\(checkpoint.provenance.tool.name) \(checkpoint.provenance.tool.version)")

        try file.createStringDataset("components", values: Array(checkpoint.components.keys))
        let tensors = try file.createGroup("tensors")
        let keys = try file.createGroup("keys")
        // Aliases: the first name's dataset is written, every alias is a hard link to it.
        let shared = checkpoint.sharedAliases(in: checkpoint.flatStateDict())
        var stored: [String: (path: String, tensor: Tensor, offset: UInt64)] = [:]   // flat name -> its dataset
        var entry = 0
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
                    index.tensors[entry].offset = first.offset
                } else {
                    let offset = try writeTensor(tensor, named: link, in: group)
                    index.tensors[entry].offset = offset
                    if stored[prefix + key] == nil { stored[prefix + key] = ("/tensors/\(name)/\(link)", tensor, offset) }
                }
                written(entry)
                entry += 1
            }
        }
        if let architecture = checkpoint.architecture {
            try writeArchitecture(architecture, in: file)
        }
        index.provenanceJSON = try provenanceJSON()
        try file.createStringDataset("provenance", value: index.provenanceJSON)
        if !index.histories.isEmpty {
            let history = try file.createGroup("metric_history")
            for (i, record) in index.histories.enumerated() {
                let values = checkpoint.provenance.metricHistory[record.metric]!
                let ds = try history.createDataset(LinkName.escape(record.metric), type: .float64, shape: [values.count])
                try values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { try ds.write($0) }
                index.histories[i].offset = try values.isEmpty ? 0 : offset(of: ds)
            }
        }
    }

    /// Where a dataset just written lies in the file (contiguous storage, allocated by the write).
    private static func offset(of ds: HDF5.Dataset) throws -> UInt64 {
        guard let offset = ds.storageOffset else { throw HDF5Error("dataset \(ds.path) has no storage address after it was written") }
        return offset
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

    /// Writes one tensor's dataset; returns its file offset (0 for an empty tensor, which has no storage).
    private static func writeTensor(_ tensor: Tensor, named name: String, in group: HDF5.Group) throws -> UInt64 {
        let ds = try group.createDataset(name, type: elementType(for: tensor.dtype), shape: tensor.shape)
        try ds.write(tensor.data)
        if tensor.dtype == .bfloat16 || tensor.dtype == .bool {
            try ds.setAttribute("dtype", tensor.dtype.rawValue)
        }
        return try tensor.data.isEmpty ? 0 : offset(of: ds)
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
        let encoder = JSONEncoder.bissl(pretty: true)
        do {
            return String(decoding: try encoder.encode(provenance), as: UTF8.self)
        } catch {
            throw CheckpointError.invalid("cannot encode provenance as JSON: \(error)")
        }
    }

    // MARK: - read

    /// True when the file starts with the 8-byte HDF5 signature, or has it at offset 512, 1024, 2048,
    /// ... up to its end, as HDF5 allows after a user block (`FileSniffer.hasHDF5Signature`). False
    /// for missing, unreadable or non-regular files.
    public static func isHDF5(_ url: URL) -> Bool {
        guard let file = try? MappedFile(url) else { return false }
        return FileSniffer.hasHDF5Signature(file.data(0, file.size))
    }

    /// Reads a checkpoint: every component's tensors in stored order (bytes read straight into each
    /// tensor's buffer, `CheckpointReader`), the architecture record and provenance with its metric
    /// histories. Names that are hard links to one dataset (same object address, `H5Oget_info`) get
    /// the same `Tensor`, read once, and `aliases` maps each later name (in `/components`, `/keys/<c>`
    /// order; flat state-dict naming) to the first; provenance is not consulted for this.
    /// - Parameter verifyContentID: also recompute the content id and compare it with the stored one.
    /// - Throws: `CheckpointError` (see the type's documentation), one line naming the file.
    public static func read(_ url: URL, verifyContentID: Bool = false) throws -> Checkpoint {
        let reader = try CheckpointReader(url)
        let checkpoint = try reader.checkpoint()
        if verifyContentID {
            let name = url.lastPathComponent
            guard let stored = reader.storedContentID else {
                throw CheckpointError.corrupt("\(name): no root attribute content_id")
            }
            let actual = ContentID.compute(checkpoint)
            guard stored == actual else {
                throw CheckpointError.corrupt("\(name): content id mismatch: stored \(stored), computed \(actual)")
            }
        }
        return checkpoint
    }

    /// The content id stored in the root attribute `content_id`, without reading any tensor.
    /// - Throws: `CheckpointError` as `read` does.
    public static func storedContentID(_ url: URL) throws -> String {
        let file = try open(url)
        do {
            return try file.stringAttribute("content_id")
        } catch let error as HDF5Error {
            throw CheckpointReader.corrupt(error, url: url)
        }
    }

    /// Opens `url` and checks the `format` and `format_version` attributes.
    static func open(_ url: URL) throws -> HDF5.File {
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
        } catch let error as HDF5Error where error.leavesTheFile {
            throw CheckpointError.unsafe("\(name): \(error.message.replacingOccurrences(of: url.path, with: name))")
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
}
