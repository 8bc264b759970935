import Collections
import Foundation
import HDF5

/// Reading a bissl `.h5` that bissl did not write itself (`import`, `convert`, `inspect`): the file
/// is opened by libhdf5 in the HDF5 reader process (`Sandbox`), which sends back the checkpoint it
/// read; a crash or limit there is one `CheckpointError.corrupt` line naming the file.
///
/// Zoo objects were written by bissl and are verified against their content id, so the zoo reads
/// them in process with `CheckpointFile.read`.
public enum UntrustedCheckpointFile {
    /// A checkpoint read from an outside file, with the content id the file claims.
    public struct Contents: Sendable {
        public var checkpoint: Checkpoint
        /// The root `content_id` attribute, nil when absent.
        public var storedContentID: String?
    }

    /// Reads `url` in the HDF5 reader process when `Sandbox.helper` is set, else in process.
    /// - Throws: `CheckpointError` as `CheckpointFile.read` does; `.corrupt` when the reader process
    ///   crashes or hits a limit.
    public static func read(_ url: URL) throws -> Contents {
        guard Sandbox.helper != nil else { return try readInProcess(url) }
        guard FileManager.default.isReadableFile(atPath: url.path) else {
            throw CheckpointError.io("cannot read \(url.path): no such readable file")
        }
        let message: SandboxMessage
        do {
            message = try Sandbox.run(["checkpoint", url.path], fileName: url.lastPathComponent)
        } catch let error as SandboxError {
            throw CheckpointError.corrupt(error.message)
        }
        return try decode(message, fileName: url.lastPathComponent)
    }

    /// The reader process's side: reads `path` after applying the sandbox limits and returns the
    /// message to write to standard output (the contents, or the error as a record).
    public static func childMessage(path: String) -> SandboxMessage {
        do {
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            try Sandbox.enterChild(fileSize: size)
            return try encode(try readInProcess(URL(fileURLWithPath: path)))
        } catch let error as CheckpointError {
            return errorMessage(error)
        } catch {
            return errorMessage(.corrupt(String(describing: error)))
        }
    }

    static func readInProcess(_ url: URL) throws -> Contents {
        let checkpoint = try CheckpointFile.read(url)
        return Contents(checkpoint: checkpoint, storedContentID: try? CheckpointFile.storedContentID(url))
    }

    // MARK: - Message

    private struct Header: Codable {
        struct Failure: Codable { var kind: String; var message: String }
        struct Component: Codable { var name: String; var keys: [String]; var tensors: [Int] }
        struct TensorRecord: Codable, Equatable { var dtype: DType; var shape: [Int] }
        var error: Failure?
        var storedContentID: String?
        var components: [Component] = []
        /// One per blob, in blob order; a tensor shared by several names is sent once.
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
            components = try c.decodeIfPresent([Component].self, forKey: .components) ?? []
            tensors = try c.decodeIfPresent([TensorRecord].self, forKey: .tensors) ?? []
            aliases = try c.decodeIfPresent([String: String].self, forKey: .aliases) ?? [:]
            architecture = try c.decodeIfPresent(Architecture.self, forKey: .architecture)
            provenance = try c.decodeIfPresent(Provenance.self, forKey: .provenance)
            metricHistory = try c.decodeIfPresent([String: [Double]].self, forKey: .metricHistory) ?? [:]
        }
    }

    private static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return encoder
    }

    private static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return decoder
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
        return SandboxMessage(header: (try? encoder().encode(header)) ?? Data(), blobs: [])
    }

    static func encode(_ contents: Contents) throws -> SandboxMessage {
        var header = Header()
        header.storedContentID = contents.storedContentID
        var blobs: [Data] = []
        // A name the file hard-links to an earlier dataset (`aliases`, flat names) is sent as a
        // reference to that tensor, so the parent shares it as the in-process read does.
        let aliases = contents.checkpoint.aliases
        var indexOfFlat: [String: Int] = [:]
        for (name, tensors) in contents.checkpoint.components {
            let prefix = Checkpoint.unprefixedComponents.contains(name) ? "" : name + "."
            var component = Header.Component(name: name, keys: [], tensors: [])
            for (key, tensor) in tensors {
                let record = Header.TensorRecord(dtype: tensor.dtype, shape: tensor.shape)
                let index: Int
                if let target = aliases[prefix + key], let known = indexOfFlat[target], header.tensors[known] == record,
                   blobs[known] == tensor.data {
                    index = known
                } else {
                    index = blobs.count
                    blobs.append(tensor.data)
                    header.tensors.append(record)
                }
                indexOfFlat[prefix + key] = index
                component.keys.append(key)
                component.tensors.append(index)
            }
            header.components.append(component)
        }
        header.aliases = contents.checkpoint.aliases
        header.architecture = contents.checkpoint.architecture
        header.provenance = contents.checkpoint.provenance
        header.metricHistory = contents.checkpoint.provenance.metricHistory
        do {
            return SandboxMessage(header: try encoder().encode(header), blobs: blobs)
        } catch {
            throw CheckpointError.invalid("cannot encode the checkpoint read: \(error)")
        }
    }

    static func decode(_ message: SandboxMessage, fileName: String) throws -> Contents {
        func malformed(_ what: String) -> CheckpointError {
            .corrupt("\(fileName): the HDF5 reader process sent a malformed result (\(what))")
        }
        guard let header = try? decoder().decode(Header.self, from: message.header) else { throw malformed("header") }
        if let failure = header.error {
            guard let error = makeError(kind: failure.kind, message: failure.message) else { throw malformed("error kind \(failure.kind)") }
            throw error
        }
        guard header.tensors.count == message.blobs.count, var provenance = header.provenance else { throw malformed("tensor count") }
        var tensors: [Tensor] = []
        tensors.reserveCapacity(header.tensors.count)
        for (record, blob) in zip(header.tensors, message.blobs) {
            do {
                tensors.append(try Tensor(dtype: record.dtype, shape: record.shape, data: Data(blob)))
            } catch {
                throw malformed("tensor of shape \(record.shape)")
            }
        }
        var components = OrderedDictionary<String, StateDict>()
        for component in header.components {
            guard components[component.name] == nil, component.keys.count == component.tensors.count else { throw malformed("components") }
            var stateDict = StateDict(minimumCapacity: component.keys.count)
            for (key, index) in zip(component.keys, component.tensors) {
                guard tensors.indices.contains(index), stateDict[key] == nil else { throw malformed("tensor index") }
                stateDict[key] = tensors[index]
            }
            components[component.name] = stateDict
        }
        provenance.metricHistory = header.metricHistory
        let checkpoint = Checkpoint(components: components, architecture: header.architecture, provenance: provenance,
                                    aliases: header.aliases)
        return Contents(checkpoint: checkpoint, storedContentID: header.storedContentID)
    }
}
