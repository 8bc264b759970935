import Foundation

/// A labelled image dataset opened from a `DatasetURI`: uniform access to images (8-bit RGB, HWC)
/// and integer labels whatever the storage, after the optional split file and after any corrupt
/// images dropped by `scan(onCorrupt: .skip)`.
///
/// In-memory formats (`idx`, `cifar`, `h5`) are read and checked whole by `open`; `folder` lists
/// its files at `open` and decodes each image when asked. `image(_:)` is safe to call from several
/// threads at once; `scan` changes the index and must finish before the dataset is shared.
public final class ImageDataset: @unchecked Sendable {
    public let uri: DatasetURI
    private let source: ImageSource
    /// Positions in the reader's natural order, in dataset order (after split and skips).
    public private(set) var sourceIndices: [Int]
    private let splitBytes: Data?
    private var skipped = Set<Int>()

    /// Opens a dataset.
    /// - Throws: `DatasetError` (missing folder or file, corrupt file, label/image count mismatch,
    ///   images of 0 rows or columns, empty class folder, bad split file or split index out of
    ///   range), one line each.
    public init(_ uri: DatasetURI) throws {
        self.uri = uri
        switch uri.scheme {
        case .idx: source = try Self.requireRowsAndColumns(IDXReader.open(uri), uri)
        case .cifar: source = try Self.requireRowsAndColumns(CIFARReader.open(uri), uri)
        case .folder: source = try FolderSource(uri)   // ImageDecoder refuses an image without pixels
        case .h5: source = try Self.requireRowsAndColumns(H5Reader.open(uri), uri)
        }
        if let splitFile = uri.splitFile {
            let url = URL(fileURLWithPath: splitFile)
            let bytes = try readFile(url, what: "split file")
            splitBytes = bytes
            sourceIndices = try Self.parseSplit(bytes, file: splitFile, count: source.count)
        } else {
            splitBytes = nil
            sourceIndices = Array(0..<source.count)
        }
    }

    /// Refuses images without rows or columns (an IDX or HDF5 header may declare 0x0 or 0xW): no
    /// crop, resize or network takes them, and every command reads the dataset through here first.
    private static func requireRowsAndColumns(_ source: InMemorySource, _ uri: DatasetURI) throws -> InMemorySource {
        guard source.height > 0, source.width > 0 else {
            throw DatasetError.invalid("\(uri): its images are \(source.height)x\(source.width); an image needs at least one row and one column")
        }
        return source
    }

    /// Opens `SCHEME:PATH[#options]` (see `DatasetURI`).
    public convenience init(parsing text: String) throws {
        try self.init(try DatasetURI(parsing: text))
    }

    /// Number of images.
    public var count: Int { sourceIndices.count }
    /// Class names in label order (label k is `classNames[k]`).
    public var classNames: [String] { source.classNames }
    /// Label of image `i` (0-based, `0 <= i < count`), in `0..<classNames.count`.
    public func label(_ i: Int) -> Int { source.label(sourceIndices[i]) }
    /// Decodes image `i`. Throws `DatasetError.corrupt` / `.unsupported` naming the file.
    public func image(_ i: Int) throws -> RGBImage { try source.image(sourceIndices[i]) }
    /// Where image `i` comes from, for messages: a file path, or `FILE[index]`.
    public func name(_ i: Int) -> String { source.name(sourceIndices[i]) }
    /// All labels in dataset order.
    public var labels: [Int] { sourceIndices.map(source.label) }

    /// The SHA-256 fingerprint (lowercase hex) of the bytes the dataset is made of; see
    /// `Fingerprinter` for exactly which bytes. Reads every file again for `folder:` datasets.
    public func fingerprint() throws -> String {
        let kept = (0..<source.count).filter { !skipped.contains($0) }
        var f = try source.fingerprint(kept: kept)
        if let splitBytes { f.add(name: "#split", bytes: splitBytes) }
        return f.finalize()
    }

    /// What to do with an image that cannot be decoded.
    public enum CorruptPolicy: Sendable { case skip, fail }

    /// Decodes every image once and summarises the dataset. With `.skip`, undecodable images are
    /// removed from the dataset (from `count`, the indices, the fingerprint) and listed in the
    /// report; with `.fail`, the first one throws its `DatasetError`.
    public func scan(onCorrupt policy: CorruptPolicy) throws -> DatasetSummary {
        var summary = DatasetSummary(classNames: classNames)
        var keep: [Int] = []
        keep.reserveCapacity(count)
        for i in 0..<count {
            let image: RGBImage
            do {
                image = try self.image(i)
            } catch let error as DatasetError {
                if policy == .fail { throw error }
                summary.skipped.append(DatasetSummary.Skipped(name: name(i), reason: error.description))
                skipped.insert(sourceIndices[i])
                continue
            }
            keep.append(sourceIndices[i])
            summary.add(image: image, label: label(i))
        }
        sourceIndices = keep
        return summary
    }

    /// Parses an index list: one non-negative decimal integer per line (ASCII spaces, tabs and a
    /// carriage return around it ignored), blank lines and `#` comments skipped, each index at most
    /// once; a UTF-8 byte order mark (EF BB BF, as Windows editors save text) at the start of the
    /// file is skipped. One pass over the bytes, no string per line: time and memory grow with the
    /// file's size and the number of indices, which the no-repeat rule bounds by `count`.
    /// - Throws: `DatasetError.invalid` naming the file and line for a line that is not such an
    ///   integer (its text shortened to 40 characters), an index out of `0..<count`, or an index
    ///   given twice; naming the file when it lists no index at all (a split of no image).
    static func parseSplit(_ data: Data, file: String, count: Int) throws -> [Int] {
        var out: [Int] = []
        var seen = [Bool](repeating: false, count: count)
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let bytes = raw.bindMemory(to: UInt8.self)
            func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0B || b == 0x0C }
            let bom = bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF
            var start = bom ? 3 : 0, line = 0
            while start < bytes.count {
                line += 1
                var end = start
                while end < bytes.count && bytes[end] != 0x0A { end += 1 }
                var a = start, b = end
                start = end + 1
                while a < b && isSpace(bytes[a]) { a += 1 }
                while b > a && isSpace(bytes[b - 1]) { b -= 1 }
                if a == b || bytes[a] == 0x23 { continue }
                func text() -> String {
                    let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[a..<min(b, a + 160)]), as: UTF8.self)
                    return text.count > 40 || b - a > 160 ? String(text.prefix(40)) + "..." : text
                }
                // Digits past `count` only make the index larger: it stops growing there (no overflow),
                // and an index of any length is out of range, not "not an integer".
                var index = 0
                for k in a..<b {
                    let digit = bytes[k] &- 0x30
                    guard digit < 10 else {
                        throw DatasetError.invalid("split file \(file) line \(line): '\(text())' is not a non-negative integer index")
                    }
                    if index <= count { index = index * 10 + Int(digit) }
                }
                guard index < count else {
                    throw DatasetError.invalid("split file \(file) line \(line): index \(index > count ? text() : String(index)) is out of range (the dataset has \(count) images, 0..<\(count))")
                }
                guard !seen[index] else {
                    throw DatasetError.invalid("split file \(file) line \(line): index \(index) is listed a second time (a split file lists each image at most once)")
                }
                seen[index] = true
                out.append(index)
            }
        }
        guard !out.isEmpty else {
            throw DatasetError.invalid("split file \(file) lists no image index (it holds \(data.isEmpty ? "nothing" : "only blank lines and # comments")); a split file lists one index per line")
        }
        return out
    }
}

/// Counts and sizes over a whole dataset, from `ImageDataset.scan`.
public struct DatasetSummary: Sendable, Equatable {
    public struct Size: Hashable, Sendable, Comparable {
        public var height: Int
        public var width: Int
        public static func < (a: Size, b: Size) -> Bool { (a.height, a.width) < (b.height, b.width) }
    }
    public struct Skipped: Sendable, Equatable {
        public var name: String
        public var reason: String
    }

    public var classNames: [String]
    /// Images per label, indexed by label.
    public var countsPerClass: [Int]
    /// Number of images of each (height, width).
    public var sizes: [Size: Int] = [:]
    /// Number of images by channel count in the source file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
    public var sourceChannels: [Int: Int] = [:]
    /// Images left out because they could not be decoded (policy `.skip`).
    public var skipped: [Skipped] = []

    init(classNames: [String]) {
        self.classNames = classNames
        countsPerClass = Array(repeating: 0, count: classNames.count)
    }

    mutating func add(image: RGBImage, label: Int) {
        countsPerClass[label] += 1
        sizes[Size(height: image.height, width: image.width), default: 0] += 1
        sourceChannels[image.sourceChannels, default: 0] += 1
    }

    /// Total images counted.
    public var count: Int { countsPerClass.reduce(0, +) }
}
