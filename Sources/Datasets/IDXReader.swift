import Foundation

/// MNIST-family IDX files (http://yann.lecun.com/exdb/mnist/ "FILE FORMATS"): a big-endian header
/// `00 00 TYPE NDIM` then NDIM unsigned 32-bit big-endian sizes, then the data in C order. Only
/// unsigned-byte data (TYPE 0x08) is read: images N,H,W (gray) or N,H,W,C (C 1 or 3), labels N.
///
/// Files are found in the folder by name: images contain `images` and `idx3` (or `idx4`), labels
/// contain `labels` and `idx1`; part `train` takes names containing `train`, part `test` names
/// containing `t10k` or `test` (so `train-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte`,
/// `emnist-letters-test-images-idx3-ubyte.gz` all match). A file may be gzipped (detected by its
/// magic bytes, not its name); when both `X` and `X.gz` exist, `X` is read. Class names come from
/// an optional `classes.txt` in the folder (one per line, in label order), else `0`, `1`, ... up
/// to the largest label.
enum IDXReader {
    static func open(_ uri: DatasetURI) throws -> InMemorySource {
        let dir = try requireFolder(uri.path, scheme: "idx")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        let imagesName = try pick(names, kind: "images", dims: ["idx3", "idx4"], part: uri.part, dir: dir.path)
        let labelsName = try pick(names, kind: "labels", dims: ["idx1"], part: uri.part, dir: dir.path)
        let imagesRaw = try readFile(dir.appendingPathComponent(imagesName))
        let labelsRaw = try readFile(dir.appendingPathComponent(labelsName))
        var records = Fingerprinter()
        records.add(name: imagesName, bytes: imagesRaw)
        records.add(name: labelsName, bytes: labelsRaw)

        // Shapes are checked from the headers, before the data is inflated or copied.
        let images = try parse(try inflated(imagesRaw, name: imagesName) { dims in
            guard dims.count == 3 || (dims.count == 4 && [1, 3].contains(dims[3])) else {
                throw DatasetError.unsupported("\(imagesName): images must be N,H,W or N,H,W,C with C 1 or 3, found \(dims)")
            }
            try InMemorySource.checkImageSize(height: dims[1], width: dims[2], file: imagesName)
        }, name: imagesName)
        let labels = try parse(try inflated(labelsRaw, name: labelsName) { dims in
            guard dims.count == 1 else {
                throw DatasetError.unsupported("\(labelsName): labels must be one-dimensional, found \(dims)")
            }
        }, name: labelsName)
        guard images.dims[0] == labels.dims[0] else {
            throw DatasetError.invalid("idx:\(dir.path): \(imagesName) holds \(images.dims[0]) images but \(labelsName) holds \(labels.dims[0]) labels")
        }
        let labelValues = labels.data.map { Int32($0) }
        let classNames = try ClassNames.load(dir: dir, labels: labelValues, file: labelsName)
        try InMemorySource.checkLabels(labelValues, classCount: classNames.count, file: labelsName)
        return InMemorySource(pixels: images.data, labels: labelValues, height: images.dims[1], width: images.dims[2],
                              channels: images.dims.count == 4 ? images.dims[3] : 1, classNames: classNames,
                              fileName: imagesName, records: records)
    }

    /// The one file of `kind` for `part`, preferring an uncompressed copy over its `.gz`.
    static func pick(_ names: [String], kind: String, dims: [String], part: DatasetURI.Part, dir: String) throws -> String {
        let matches = names.filter { name in
            let n = name.lowercased()
            guard n.contains(kind), dims.contains(where: { n.contains($0) }) else { return false }
            switch part {
            case .train: return n.contains("train")
            case .test: return n.contains("t10k") || n.contains("test")
            }
        }.sorted()
        if matches.count == 1 { return matches[0] }
        if matches.count == 2 && matches[1] == matches[0] + ".gz" { return matches[0] }
        if matches.isEmpty {
            throw DatasetError.missing("idx:\(dir): no \(part.rawValue) \(kind) file (like \(part == .train ? "train" : "t10k")-\(kind)-\(dims[0])-ubyte[.gz]) in the folder")
        }
        throw DatasetError.invalid("idx:\(dir): several \(part.rawValue) \(kind) files match: \(matches.joined(separator: ", "))")
    }

    struct Array8 { var dims: [Int]; var data: [UInt8] }

    /// The most data bytes an IDX file may declare (4 GiB: EMNIST By_Class, the largest of the
    /// family, holds 0.6 GB of images).
    static let maxDataBytes = 1 << 32

    /// The longest header: magic, then up to 255 sizes.
    static let maxHeaderBytes = 4 + 4 * 255

    /// `raw` as it is, or inflated when it is gzip: the header is inflated first, then the stream
    /// only up to the size that header declares (a file holding more is refused without inflating
    /// the rest), and only if deflate could expand the compressed bytes that far at all.
    /// - Parameter check: called with the header's dimensions before anything else is inflated;
    ///   throws to refuse them.
    static func inflated(_ raw: Data, name: String, check: ([Int]) throws -> Void = { _ in }) throws -> Data {
        let gzip = Gzip.isGzip(raw)
        let (dims, total, headerSize) = try header(gzip ? Gzip.prefix(raw, count: maxHeaderBytes, name: name) : raw, name: name)
        try check(dims)
        guard gzip else { return raw }
        let expected = headerSize + total
        guard expected / Gzip.maxRatio <= raw.count else {
            throw DatasetError.corrupt(
                "\(name): IDX header says \(dims) (\(total) bytes) but \(raw.count) bytes of gzip data cannot hold that much")
        }
        return try Gzip.decompress(raw, name: name, maxBytes: expected)
    }

    /// Dimensions, element count and header length from the start of an uncompressed IDX file.
    /// - Throws: `DatasetError.corrupt` for a bad magic number or sizes past `maxDataBytes`,
    ///   `.unsupported` for element types other than unsigned byte.
    static func header(_ data: Data, name: String) throws -> (dims: [Int], total: Int, headerSize: Int) {
        let bytes = [UInt8](data.prefix(maxHeaderBytes))
        guard bytes.count >= 4, bytes[0] == 0, bytes[1] == 0 else {
            throw DatasetError.corrupt("\(name): not an IDX file (bad magic number)")
        }
        guard bytes[2] == 0x08 else {
            throw DatasetError.unsupported("\(name): IDX element type 0x\(String(bytes[2], radix: 16)) is not unsigned byte (0x08)")
        }
        let ndim = Int(bytes[3])
        guard ndim >= 1, bytes.count >= 4 + 4 * ndim else { throw DatasetError.corrupt("\(name): IDX header is cut short") }
        var dims: [Int] = []
        var total = 1
        for d in 0..<ndim {
            let o = 4 + 4 * d
            let v = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
            dims.append(v)
            let (t, overflow) = total.multipliedReportingOverflow(by: v)
            guard !overflow, t <= maxDataBytes else {
                throw DatasetError.corrupt("\(name): IDX sizes \(dims) declare more than \(maxDataBytes) bytes")
            }
            total = t
        }
        return (dims, total, 4 + 4 * ndim)
    }

    /// Parses an uncompressed IDX file of unsigned bytes.
    /// - Throws: as `header`, and `DatasetError.corrupt` for a size that does not match the header.
    static func parse(_ data: Data, name: String) throws -> Array8 {
        let (dims, total, header) = try self.header(data, name: name)
        guard data.count - header == total else {
            throw DatasetError.corrupt("\(name): IDX header says \(dims) (\(total) bytes) but the file holds \(data.count - header) data bytes")
        }
        return Array8(dims: dims, data: [UInt8](data.dropFirst(header)))
    }
}

/// Class names for datasets whose files carry only numbers.
enum ClassNames {
    /// The most classes a dataset without a class-name list may have (labels `0..<65536`); larger
    /// labels are refused before any name is made.
    static let maxNumbered = 65_536

    /// `classes.txt` in `dir` (one name per line, blank lines at the end ignored) if it exists,
    /// else `numbered(labels)`.
    static func load(dir: URL, labels: [Int32], file: String) throws -> [String] {
        let url = dir.appendingPathComponent("classes.txt")
        if FileManager.default.fileExists(atPath: url.path) {
            return try lines(url)
        }
        return try numbered(labels: labels, file: file)
    }

    /// `"0"`...`"largest label"`.
    /// - Throws: `DatasetError.corrupt` when a label is negative or at least `maxNumbered`.
    static func numbered(labels: [Int32], file: String) throws -> [String] {
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= maxNumbered }) {
            throw DatasetError.corrupt(
                "\(file): label \(labels[bad]) of item \(bad) is outside 0..<\(maxNumbered) (the most classes without a class-name list)")
        }
        return (0...max(Int(labels.max() ?? 0), 0)).map(String.init)
    }

    /// Non-empty trimmed lines of a text file.
    static func lines(_ url: URL) throws -> [String] {
        let data = try readFile(url)
        guard let text = String(data: data, encoding: .utf8) else {
            throw DatasetError.corrupt("\(url.path) is not UTF-8 text")
        }
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
