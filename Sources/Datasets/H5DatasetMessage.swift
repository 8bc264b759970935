import Foundation
import HDF5

/// An `h5:` dataset as the HDF5 reader process (`Sandbox`) hands it back: a JSON header (sizes,
/// class names, or an error) and two blobs, the pixels (N x H x W x C uint8) and the labels
/// (N int32 little-endian). The parent checks every size against the blobs before using them.
public enum H5DatasetMessage {
    private struct Header: Codable {
        struct Failure: Codable { var kind: String; var message: String }
        var error: Failure?
        var count = 0
        var height = 0
        var width = 0
        var channels = 0
        var classNames: [String] = []
    }

    /// The reader process's side: applies the sandbox limits, reads the `part` (`train`/`test`) of
    /// the HDF5 dataset file at `path`, and returns the message to write to standard output.
    public static func childMessage(path: String, part: String) -> SandboxMessage {
        do {
            guard let part = DatasetURI.Part(rawValue: part) else { throw DatasetError.badURI("unknown part \(part)") }
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            try Sandbox.enterChild(fileSize: size)
            return encode(try H5Reader.read(DatasetURI(scheme: .h5, path: path, part: part)))
        } catch let error as DatasetError {
            return failure(error)
        } catch {
            return failure(.corrupt("h5:\(path): \(error)"))
        }
    }

    private static func failure(_ error: DatasetError) -> SandboxMessage {
        let kind: String
        switch error {
        case .badURI: kind = "badURI"
        case .missing: kind = "missing"
        case .corrupt: kind = "corrupt"
        case .unsupported: kind = "unsupported"
        case .invalid: kind = "invalid"
        }
        var header = Header()
        header.error = .init(kind: kind, message: error.description)
        return SandboxMessage(header: (try? JSONEncoder().encode(header)) ?? Data(), blobs: [])
    }

    static func encode(_ content: H5Reader.Content) -> SandboxMessage {
        let header = Header(count: content.labels.count, height: content.height, width: content.width,
                            channels: content.channels, classNames: content.classNames)
        let labels = content.labels.map(\.littleEndian).withUnsafeBufferPointer { Data(buffer: $0) }
        return SandboxMessage(header: (try? JSONEncoder().encode(header)) ?? Data(), blobs: [Data(content.pixels), labels])
    }

    static func decode(_ message: SandboxMessage, file: String) throws -> H5Reader.Content {
        let malformed = DatasetError.corrupt("\(file): the HDF5 reader process sent a malformed result")
        guard let header = try? JSONDecoder().decode(Header.self, from: message.header) else { throw malformed }
        if let failure = header.error {
            switch failure.kind {
            case "badURI": throw DatasetError.badURI(failure.message)
            case "missing": throw DatasetError.missing(failure.message)
            case "corrupt": throw DatasetError.corrupt(failure.message)
            case "unsupported": throw DatasetError.unsupported(failure.message)
            case "invalid": throw DatasetError.invalid(failure.message)
            default: throw malformed
            }
        }
        guard let pixelCount = [header.count, header.height, header.width, header.channels].checkedProduct else { throw malformed }
        guard message.blobs.count == 2, [1, 3].contains(header.channels), message.blobs[0].count == pixelCount,
              header.count <= message.blobs[1].count / 4, message.blobs[1].count == 4 * header.count else { throw malformed }
        let labels = message.blobs[1].withUnsafeBytes { raw in
            (0..<header.count).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        }
        return H5Reader.Content(pixels: [UInt8](message.blobs[0]), labels: labels, height: header.height, width: header.width,
                                channels: header.channels, classNames: header.classNames)
    }
}
