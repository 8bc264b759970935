import Collections
import Foundation
import HDF5

/// Reading a bissl `.h5` that bissl did not write itself (`import`, `convert`, `inspect`): libhdf5
/// opens the file only in the HDF5 reader process (`Sandbox`), which walks and checks its metadata
/// and sends back the checkpoint's structure. For each contiguous, unfiltered tensor dataset (all of
/// them in files bissl writes) it sends where the bytes lie (file offset; the length follows from
/// dtype and shape), and this process maps the file it opened itself before the reader opened it
/// (`MappedFile`, private copy-on-write) and gives each such tensor a zero-copy view of its bytes:
/// nothing is copied or allocated for them, and a caller that never touches a tensor's values never
/// reads them from the file. Every extent is checked against that file's size, and all of them
/// together may not claim more bytes than the file holds. Only the bytes of other layouts (chunked,
/// compressed, big-endian) cross the pipe. This process never calls libhdf5 on the file. A crash or
/// limit in the reader is one `CheckpointError.corrupt` line naming the file.
///
/// Zoo objects were written by bissl and are verified against their content id, so the zoo reads
/// them in process with `CheckpointFile.read`.
public enum UntrustedCheckpointFile {
    /// A checkpoint read from an outside file, with the content id the file claims.
    public struct Contents: Sendable {
        public var checkpoint: Checkpoint
        /// The root `content_id` attribute, nil when absent.
        public var storedContentID: String?
        /// SHA-256 of the file's bytes, hashed through the descriptor the checkpoint was read from
        /// (`read(_:hashing: true)`; nil otherwise): the digest of the content read, even when another
        /// file is put at the path meanwhile.
        public var sha256: String?
    }

    /// Starts the HDF5 reader process for `url` ahead of `read(_:reader:)`, while the file is
    /// still being written (a download); nil when `Sandbox.helper` is not set.
    /// - Throws: `CheckpointError.corrupt` when the reader process cannot start.
    public static func startReader(_ url: URL) throws -> Sandbox.Started? {
        guard Sandbox.helper != nil else { return nil }
        do {
            return try Sandbox.start(["checkpoint", url.path], fileName: url.lastPathComponent)
        } catch let error as SandboxError {
            throw CheckpointError.corrupt(error.message)
        }
    }

    /// Reads `url` in the HDF5 reader process when `Sandbox.helper` is set, else in process.
    /// - Parameters:
    ///   - reader: the reader process `startReader(url)` started for this file (one is started
    ///     here when nil).
    ///   - zooObject: the file is about to become a zoo object (a download, `pull`): its tensor
    ///     index, if any, must agree with its HDF5 metadata, as `CheckpointReader(_:zooObject:)` checks.
    /// - Throws: `CheckpointError` as `CheckpointFile.read` does; `.io` when `url` is not a readable
    ///   regular file; `.corrupt` when the reader process crashes or hits a limit, sends extents
    ///   outside the file, or the file changes (another file put at the path, or written) while it
    ///   is read, and for a `zooObject` whose tensor index disagrees with its metadata.
    ///   - hashing: also hash the file's bytes through the same descriptor (`Contents.sha256`), before
    ///     the check that the file did not change while it was read.
    public static func read(_ url: URL, reader: Sandbox.Started? = nil, zooObject: Bool = false, hashing: Bool = false) throws -> Contents {
        guard Sandbox.helper != nil || reader != nil else { return try readInProcess(url, zooObject: zooObject, hashing: hashing) }
        let name = url.lastPathComponent
        // Opened before the reader process opens the path: the bytes are taken from this file,
        // whatever the path names later. O_NONBLOCK: opening a FIFO must not wait for a writer.
        let descriptor = open(url.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { throw CheckpointError.io("cannot read \(url.path): no such readable file") }
        defer { close(descriptor) }
        var s = stat()
        guard fstat(descriptor, &s) == 0, s.st_mode & S_IFMT == S_IFREG, let status = FileStatus(descriptor: descriptor) else {
            throw CheckpointError.io("cannot read \(url.path): not a regular file")
        }
        let message: SandboxMessage
        do {
            message = try (reader ?? Sandbox.start(["checkpoint", url.path], fileName: name)).finish(fileSize: Int(status.size))
        } catch let error as SandboxError {
            throw CheckpointError.corrupt(error.message)
        }
        var (contents, seen) = try decode(message, descriptor: descriptor, fileSize: status.size, fileName: name, zooObject: zooObject)
        if hashing { contents.sha256 = try FileSHA256.digest(descriptor: descriptor, path: url.path).sha256 }
        guard seen == status, FileStatus(descriptor: descriptor) == status else {
            throw CheckpointError.corrupt("\(name) changed while it was read (replaced or written meanwhile); read it again")
        }
        return contents
    }

    /// The reader process's side: reads the metadata of `path` after applying the sandbox limits and
    /// returns the message to write to standard output (the structure, or the error as a record).
    public static func childMessage(path: String) -> SandboxMessage {
        let url = URL(fileURLWithPath: path)
        do {
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            try Sandbox.enterChild(fileSize: size)
            return try encode(try CheckpointReader(url))
        } catch let error as CheckpointError {
            return errorMessage(error)
        } catch let error as HDF5Error {
            return errorMessage(CheckpointReader.corrupt(error, url: url))
        } catch {
            return errorMessage(.corrupt("\(url.lastPathComponent): \(error)"))
        }
    }

    /// libhdf5 in this process reads the path; with `hashing`, the descriptor opened before it is hashed
    /// and must still be the file at the path, unchanged, afterwards.
    static func readInProcess(_ url: URL, zooObject: Bool, hashing: Bool = false) throws -> Contents {
        guard hashing else {
            let reader = try CheckpointReader(url, zooObject: zooObject)
            return Contents(checkpoint: try reader.checkpoint(), storedContentID: reader.storedContentID)
        }
        let descriptor = open(url.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { throw CheckpointError.io("cannot read \(url.path): no such readable file") }
        defer { close(descriptor) }
        guard let status = FileStatus(descriptor: descriptor) else { throw CheckpointError.io("cannot read \(url.path): not a regular file") }
        let reader = try CheckpointReader(url, zooObject: zooObject)
        var contents = Contents(checkpoint: try reader.checkpoint(), storedContentID: reader.storedContentID)
        contents.sha256 = try FileSHA256.digest(descriptor: descriptor, path: url.path).sha256
        guard FileStatus(descriptor: descriptor) == status, FileStatus(path: url.path) == status else {
            throw CheckpointError.corrupt("\(url.lastPathComponent) changed while it was read (replaced or written meanwhile); read it again")
        }
        return contents
    }

    // MARK: - Message

    private struct Header: Codable {
        struct Failure: Codable { var kind: String; var message: String }
        struct Component: Codable { var name: String; var keys: [String]; var tensors: [Int] }
        /// A stored tensor: its bytes lie at `offset` of the file (`shape.product * dtype.size` of
        /// them), or, without an offset, are the next blob.
        struct TensorRecord: Codable, Equatable { var dtype: DType; var shape: [Int]; var offset: UInt64? }
        var error: Failure?
        var storedContentID: String?
        /// What disagrees between the tensor index and the HDF5 metadata (`CheckpointReader.tensorIndexProblem()`).
        var tensorIndexProblem: String?
        /// `fstat` facts of the file the reader process read.
        var file: FileStatus?
        var components: [Component] = []
        /// One per stored dataset; names hard-linked to one dataset share its record.
        var tensors: [TensorRecord] = []
        var aliases: [String: String] = [:]
        var architecture: Architecture?
        var provenance: Provenance?
        var metricHistory: [String: [Double]] = [:]

        init() {}

        /// Absent keys take their defaults: an error record carries `error` alone.
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            error = try c.decodeIfPresent(Failure.self, forKey: .error)
            storedContentID = try c.decodeIfPresent(String.self, forKey: .storedContentID)
            tensorIndexProblem = try c.decodeIfPresent(String.self, forKey: .tensorIndexProblem)
            file = try c.decodeIfPresent(FileStatus.self, forKey: .file)
            components = try c.decodeIfPresent([Component].self, forKey: .components) ?? []
            tensors = try c.decodeIfPresent([TensorRecord].self, forKey: .tensors) ?? []
            aliases = try c.decodeIfPresent([String: String].self, forKey: .aliases) ?? [:]
            architecture = try c.decodeIfPresent(Architecture.self, forKey: .architecture)
            provenance = try c.decodeIfPresent(Provenance.self, forKey: .provenance)
            metricHistory = try c.decodeIfPresent([String: [Double]].self, forKey: .metricHistory) ?? [:]
        }
    }


    private static func makeError(kind: String, message: String) -> CheckpointError? {
        switch kind {
        case "notACheckpoint": return .notACheckpoint(message)
        case "corrupt": return .corrupt(message)
        case "unsafe": return .unsafe(message)
        case "ambiguous": return .ambiguous(message)
        case "invalid": return .invalid(message)
        case "unsupported": return .unsupported(message)
        case "io": return .io(message)
        default: return nil
        }
    }

    private static func errorMessage(_ error: CheckpointError) -> SandboxMessage {
        let kind: String
        switch error {
        case .notACheckpoint: kind = "notACheckpoint"
        case .corrupt: kind = "corrupt"
        case .unsafe: kind = "unsafe"
        case .ambiguous: kind = "ambiguous"
        case .invalid: kind = "invalid"
        case .unsupported: kind = "unsupported"
        case .io: kind = "io"
        }
        var header = Header()
        header.error = .init(kind: kind, message: error.description)
        return SandboxMessage(header: (try? JSONEncoder.bissl().encode(header)) ?? Data(), blobs: [])
    }

    /// The message for `reader`'s file: offsets of contiguous datasets, bytes (read through HDF5) of
    /// the others.
    /// - Throws: `HDF5Error` when a dataset cannot be read; `CheckpointError.invalid` when the header
    ///   cannot be encoded.
    static func encode(_ reader: CheckpointReader) throws -> SandboxMessage {
        var header = Header()
        header.storedContentID = reader.storedContentID
        header.tensorIndexProblem = try reader.tensorIndexProblem()
        header.file = reader.status
        var blobs: [Data] = []
        for (dataset, info) in reader.storedTensors {
            var record = Header.TensorRecord(dtype: info.dtype, shape: info.shape, offset: nil)
            if info.byteCount > 0, let extent = try dataset.directExtent() {
                record.offset = UInt64(extent.offset)
            } else {
                blobs.append(info.byteCount > 0 ? try dataset.readData() : Data())
            }
            header.tensors.append(record)
        }
        let slots = reader.tensorSlots
        for (name, infos) in reader.components {
            header.components.append(.init(name: name, keys: Array(infos.keys), tensors: infos.keys.map { slots[name]![$0]! }))
        }
        header.aliases = reader.aliases
        header.architecture = reader.architecture
        header.provenance = reader.provenance
        header.metricHistory = reader.provenance.metricHistory
        do {
            return SandboxMessage(header: try JSONEncoder.bissl().encode(header), blobs: blobs)
        } catch {
            throw CheckpointError.invalid("cannot encode the checkpoint read: \(error)")
        }
    }

    /// The checkpoint a message describes, its tensors views of the file open at `descriptor`
    /// (`fileSize` bytes, mapped) or taken from the blobs; also the file facts the reader process
    /// reported.
    /// Nothing in the message is trusted: every extent lies inside the file, the extents together
    /// claim at most `fileSize` bytes (honest files never share bytes between datasets), each blob
    /// has its tensor's size, every index is in range.
    /// - Throws: `CheckpointError` the reader process reported, `.corrupt` for a malformed message
    ///   or, for a `zooObject`, a tensor index that disagrees with the metadata; `.io` when the file
    ///   cannot be mapped.
    static func decode(_ message: SandboxMessage, descriptor: Int32, fileSize: Int64, fileName: String,
                       zooObject: Bool = false) throws -> (contents: Contents, file: FileStatus?) {
        func malformed(_ what: String) -> CheckpointError {
            .corrupt("\(fileName): the HDF5 reader process sent a malformed result (\(what))")
        }
        guard let header = try? JSONDecoder.bissl().decode(Header.self, from: message.header) else { throw malformed("header") }
        if let failure = header.error {
            guard let error = makeError(kind: failure.kind, message: failure.message) else { throw malformed("error kind \(failure.kind)") }
            throw error
        }
        if zooObject, let problem = header.tensorIndexProblem { throw CheckpointError.corrupt(problem) }
        guard var provenance = header.provenance else { throw malformed("no provenance") }
        var extents: [(index: Int, offset: Int, count: Int)] = []
        var claimed: Int64 = 0
        var blobs = message.blobs.makeIterator()
        var tensors = [Tensor?](repeating: nil, count: header.tensors.count)
        for (index, record) in header.tensors.enumerated() {
            guard let bytes = record.dtype.byteCount(shape: record.shape) else { throw malformed("tensor of shape \(record.shape)") }
            if let offset = record.offset {
                let (sum, overflow) = claimed.addingReportingOverflow(Int64(bytes))
                guard !overflow, sum <= fileSize else { throw malformed("tensors claim more bytes than the file holds") }
                claimed = sum
                let (end, past) = offset.addingReportingOverflow(UInt64(bytes))
                guard bytes > 0, !past, end <= UInt64(fileSize) else { throw malformed("tensor bytes outside the file") }
                extents.append((index, Int(offset), bytes))
            } else {
                guard let blob = blobs.next(), let tensor = try? Tensor(dtype: record.dtype, shape: record.shape, data: Data(blob)) else {
                    throw malformed("tensor of shape \(record.shape)")
                }
                tensors[index] = tensor
            }
        }
        guard blobs.next() == nil else { throw malformed("tensor count") }
        if !extents.isEmpty {
            let file = try MappedFile(descriptor: descriptor, size: Int(fileSize), name: fileName)
            for extent in extents {
                let record = header.tensors[extent.index]
                tensors[extent.index] = try Tensor(dtype: record.dtype, shape: record.shape, data: file.data(extent.offset, extent.offset + extent.count))
            }
        }
        var components = OrderedDictionary<String, StateDict>()
        for component in header.components {
            guard components[component.name] == nil, component.keys.count == component.tensors.count else { throw malformed("components") }
            var stateDict = StateDict(minimumCapacity: component.keys.count)
            for (key, index) in zip(component.keys, component.tensors) {
                guard tensors.indices.contains(index), let tensor = tensors[index], stateDict[key] == nil else { throw malformed("tensor index") }
                stateDict[key] = tensor
            }
            components[component.name] = stateDict
        }
        provenance.metricHistory = header.metricHistory
        let checkpoint = Checkpoint(components: components, architecture: header.architecture, provenance: provenance,
                                    aliases: header.aliases)
        return (Contents(checkpoint: checkpoint, storedContentID: header.storedContentID), header.file)
    }
}
