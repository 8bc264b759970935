import Foundation

/// What each reader provides: images in the reader's natural order with integer labels.
protocol ImageSource: AnyObject, Sendable {
    var count: Int { get }
    var classNames: [String] { get }
    /// Label of image `i` in `0..<classNames.count`.
    func label(_ i: Int) -> Int
    /// Decodes image `i`. Throws `DatasetError.corrupt` / `.unsupported` naming the file.
    func image(_ i: Int) throws -> RGBImage
    /// A name for image `i` in messages (file path, or `FILE[i]`).
    func name(_ i: Int) -> String
    /// The fingerprint state after the records of the files holding the images whose indices are
    /// `kept` (see `Fingerprinter`).
    func fingerprint(kept: [Int]) throws -> Fingerprinter
}

/// Images already decoded into one contiguous array (IDX, CIFAR, HDF5): N x H x W x C uint8,
/// C = 1 (gray, replicated on access) or 3 (RGB).
final class InMemorySource: ImageSource, @unchecked Sendable {
    let count: Int
    let classNames: [String]
    let height: Int
    let width: Int
    let channels: Int
    private let pixels: [UInt8]
    private let labels: [Int32]
    private let fileName: String
    /// Fingerprint state after the records of the files read at load time.
    private let records: Fingerprinter

    init(pixels: [UInt8], labels: [Int32], height: Int, width: Int, channels: Int, classNames: [String],
         fileName: String, records: Fingerprinter) {
        precondition(pixels.count == labels.count * height * width * channels)
        self.count = labels.count
        self.pixels = pixels
        self.labels = labels
        self.height = height
        self.width = width
        self.channels = channels
        self.classNames = classNames
        self.fileName = fileName
        self.records = records
    }

    func label(_ i: Int) -> Int { Int(labels[i]) }

    func image(_ i: Int) throws -> RGBImage {
        let size = height * width * channels
        return pixels.withUnsafeBufferPointer { p in
            RGBImage(height: height, width: width,
                     interleaved: UnsafeBufferPointer(rebasing: p[(i * size)..<((i + 1) * size)]), channels: channels)
        }
    }

    func name(_ i: Int) -> String { "\(fileName)[\(i)]" }

    func fingerprint(kept: [Int]) throws -> Fingerprinter { records }

    /// Checks that one image of `height` x `width` is at most `ImageDecoder.maxPixels` pixels, the
    /// limit of every reader: an image is expanded to RGB when it is read, 3 bytes per pixel.
    /// - Throws: `DatasetError.corrupt` naming `file`.
    static func checkImageSize(height: Int, width: Int, file: String) throws {
        guard let pixels = [height, width].checkedProduct, pixels <= ImageDecoder.maxPixels else {
            throw DatasetError.corrupt("\(file): images of \(height)x\(width) pixels are larger than \(ImageDecoder.maxPixels) pixels")
        }
    }

    /// Checks every label is in `0..<classCount`.
    static func checkLabels(_ labels: [Int32], classCount: Int, file: String) throws {
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classCount }) {
            throw DatasetError.corrupt("\(file): label \(labels[bad]) of item \(bad) is outside 0..<\(classCount)")
        }
    }
}

/// Reads a whole file, mapping "no such file" and permission errors to one-line `DatasetError`s.
/// A missing file is `cannot read PATH: no such file` whatever its kind (README "Command-line
/// habits"); `what` names the kind expected where a folder is found instead.
func readFile(_ url: URL, what: String = "file") throws -> Data {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
        // The one wording for a missing file across bissl: `cannot read PATH: no such file`.
        throw DatasetError.missing("cannot read \(url.path.quotedPathIfNeeded): no such file")
    }
    if isDir.boolValue { throw DatasetError.missing("\(url.path.quotedPathIfNeeded) is a folder, expected a \(what)") }
    if let refusal = RegularFile.refusal(url.path) { throw DatasetError.invalid(refusal) }
    do {
        return try Data(contentsOf: url, options: .mappedIfSafe)
    } catch {
        throw DatasetError.missing("cannot read \(url.path.quotedPathIfNeeded): \((error as NSError).localizedDescription)")
    }
}

/// Checks that `path` is an existing folder.
func requireFolder(_ path: String, scheme: String) throws -> URL {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
        throw DatasetError.missing("\(scheme): cannot read \(path): no such folder")
    }
    guard isDir.boolValue else { throw DatasetError.missing("\(scheme): \(path) is a file, expected a folder") }
    return URL(fileURLWithPath: path, isDirectory: true)
}
