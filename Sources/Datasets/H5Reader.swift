import Foundation
import HDF5

/// HDF5 image datasets (the layout `tools/make_digits.py` writes, and h5py can write in a few lines):
/// - `images`: uint8, shape (N, H, W, C) with C 1 or 3, or (N, H, W) for gray;
/// - `labels`: any integer type, shape (N), values in `0..<classes`;
/// - `classes` (optional): 1-D string array of class names in label order; without it the classes
///   are `0`...`max label` (at most `ClassNames.maxNumbered`).
/// These sit at the root, or, for files holding both parts, in groups `train` and `test` (the URI
/// part picks the group; with datasets at the root only part `train` exists).
enum H5Reader {
    /// What a read hands back: pixels N x H x W x C and one label per image.
    struct Content {
        var pixels: [UInt8]
        var labels: [Int32]
        var height: Int
        var width: Int
        var channels: Int
        var classNames: [String]
    }

    /// Opens `uri`: libhdf5 reads the file in the HDF5 reader process when `Sandbox.helper` is set
    /// (a dataset file is an outside file), else in process; the fingerprint is taken here from the
    /// file's bytes.
    static func open(_ uri: DatasetURI) throws -> InMemorySource {
        let url = URL(fileURLWithPath: uri.path)
        let raw = try readFile(url, what: "HDF5 file")
        var records = Fingerprinter()
        records.add(name: url.lastPathComponent, bytes: raw)
        let content: Content
        if Sandbox.helper != nil {
            let message: SandboxMessage
            do {
                message = try Sandbox.run(["dataset", uri.path, uri.part.rawValue], fileName: "h5:\(uri.path)", fileSize: raw.count)
            } catch let error as SandboxError {
                throw DatasetError.corrupt(error.message)
            }
            content = try H5DatasetMessage.decode(message, file: "h5:\(uri.path)")
        } else {
            content = try read(uri)
        }
        try InMemorySource.checkImageSize(height: content.height, width: content.width, file: "h5:\(uri.path) images")
        try InMemorySource.checkLabels(content.labels, classCount: content.classNames.count, file: "h5:\(uri.path) labels")
        return InMemorySource(pixels: content.pixels, labels: content.labels, height: content.height, width: content.width,
                              channels: content.channels, classNames: content.classNames, fileName: url.lastPathComponent,
                              records: records)
    }

    /// Reads `uri` with libhdf5 in this process.
    static func read(_ uri: DatasetURI) throws -> Content {
        let file: File
        do { file = try File.open(uri.path) } catch let error as HDF5Error where error.leavesTheFile {
            throw DatasetError.corrupt("h5:\(uri.path): \(error.message)")
        } catch {
            throw DatasetError.corrupt("h5:\(uri.path) is not a readable HDF5 file")
        }
        let group: Group
        let prefix: String
        if file.kind(of: "images") == .dataset {
            guard uri.part == .train else {
                throw DatasetError.invalid("h5:\(uri.path) has no test part (its images are at the root, no train/test groups)")
            }
            group = file
            prefix = ""
        } else if file.kind(of: uri.part.rawValue) == .group {
            group = try wrap(uri) { try file.openGroup(uri.part.rawValue) }
            prefix = uri.part.rawValue + "/"
        } else {
            throw DatasetError.invalid("h5:\(uri.path) has no 'images' dataset (nor a '\(uri.part.rawValue)' group holding one)")
        }
        for name in ["images", "labels"] where group.kind(of: name) != .dataset {
            throw DatasetError.invalid("h5:\(uri.path) has no '\(prefix)\(name)' dataset")
        }
        let images = try wrap(uri) { try group.openDataset("images") }
        let labels = try wrap(uri) { try group.openDataset("labels") }
        guard images.elementType == .uint8 else {
            throw DatasetError.unsupported("h5:\(uri.path): '\(prefix)images' must be uint8, found \(images.elementType?.rawValue ?? "a non-numeric type")")
        }
        let s = images.shape
        guard s.count == 3 || (s.count == 4 && [1, 3].contains(s[3])) else {
            throw DatasetError.unsupported("h5:\(uri.path): '\(prefix)images' must be (N,H,W) or (N,H,W,C) with C 1 or 3, found \(s)")
        }
        guard let labelType = labels.elementType, labelType.rawValue.contains("int") else {
            throw DatasetError.unsupported("h5:\(uri.path): '\(prefix)labels' must hold integers, found \(labels.elementType?.rawValue ?? "a non-numeric type")")
        }
        guard labels.shape.count == 1 else {
            throw DatasetError.unsupported("h5:\(uri.path): '\(prefix)labels' must be one-dimensional, found \(labels.shape)")
        }
        guard labels.shape[0] == s[0] else {
            throw DatasetError.invalid("h5:\(uri.path) holds \(s[0]) images but \(labels.shape[0]) labels")
        }
        let pixels = [UInt8](try wrap(uri) { try images.readData() })
        let labelValues = try integers(try wrap(uri) { try labels.readData() }, type: labelType, file: uri.path)
        var classNames: [String]
        if group.kind(of: "classes") == .dataset {
            classNames = try wrap(uri) { try group.openDataset("classes").readStrings() }
        } else {
            classNames = try ClassNames.numbered(labels: labelValues, file: "h5:\(uri.path) '\(prefix)labels'")
        }
        try InMemorySource.checkLabels(labelValues, classCount: classNames.count, file: "h5:\(uri.path) '\(prefix)labels'")
        return Content(pixels: pixels, labels: labelValues, height: s[1], width: s[2], channels: s.count == 4 ? s[3] : 1,
                       classNames: classNames)
    }

    /// Little-endian integers of `type` as Int32 (labels beyond Int32 are reported as out of range).
    private static func integers(_ data: Data, type: ElementType, file: String) throws -> [Int32] {
        let n = data.count / type.size
        return try data.withUnsafeBytes { p -> [Int32] in
            try (0..<n).map { i -> Int32 in
                let o = i * type.size
                let v: Int64
                switch type {
                case .int8: v = Int64(p.load(fromByteOffset: o, as: Int8.self))
                case .uint8: v = Int64(p.load(fromByteOffset: o, as: UInt8.self))
                case .int16: v = Int64(Int16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int16.self)))
                case .uint16: v = Int64(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
                case .int32: v = Int64(Int32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int32.self)))
                case .uint32: v = Int64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
                case .int64: v = Int64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int64.self))
                case .uint64: v = Int64(clamping: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)))
                default: v = -1
                }
                guard v >= 0, v <= Int64(Int32.max) else {
                    throw DatasetError.corrupt("h5:\(file): label \(v) of item \(i) is negative or too large")
                }
                return Int32(v)
            }
        }
    }

    /// Runs an HDF5 call, turning its error into a one-line `DatasetError.corrupt` that starts with
    /// the URI as every other `h5:` error does (`h5:/data/x.h5: dataset '/images' is a virtual dataset ...`).
    private static func wrap<T>(_ uri: DatasetURI, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as DatasetError { throw error } catch {
            let text = (error as? HDF5Error)?.message ?? String(describing: error)
            throw DatasetError.corrupt("h5:\(uri.path): " + (text.split(separator: "\n").first.map(String.init) ?? "HDF5 error"))
        }
    }
}
