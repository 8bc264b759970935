import Foundation

/// A dataset address: `SCHEME:PATH[#OPTION[&OPTION...]]`.
///
/// Schemes (README.md, "Datasets: `bissl data info URI`"):
/// - `idx:DIR`: MNIST-family IDX files (`*-images-idx3-ubyte` / `*-labels-idx1-ubyte`, gzipped or not).
/// - `cifar:DIR`: CIFAR-10 (`data_batch_1..5.bin`, `test_batch.bin`) or CIFAR-100 (`train.bin`, `test.bin`) binary.
/// - `folder:DIR`: one sub-folder per class (torchvision `ImageFolder`), PNG and JPEG files.
/// - `h5:FILE`: HDF5 with uint8 `images` (N,H,W,C or N,H,W) and integer `labels` (N).
///
/// Fragment options, separated by `&`:
/// - `part=train` or `part=test` (bare `train` / `test` also accepted): which official part of an
///   `idx`, `cifar` or `h5` dataset to read. Default `train`. `folder` has no parts (point it at the
///   part's folder instead) and refuses `part=test`.
/// - `split=FILE`: an index list (one non-negative integer per line, each index at most once, blank
///   lines and lines starting with `#` ignored) selecting and ordering images of the part, like the
///   paper's split files.
///
/// Parsing makes PATH and FILE absolute (`~` expanded, a relative path resolved against the current
/// directory, `.` and `..` removed; symbolic links are kept), so a URI recorded by a run or in
/// provenance names the same data from any directory; `description` writes them back in that form,
/// and parsing `description` gives the same URI.
///
/// Examples: `idx:/usr/share/datasets/fashion-mnist#test`, `cifar:data/cifar10#part=train&split=splits/val.txt`.
public struct DatasetURI: Equatable, Sendable, CustomStringConvertible {
    public enum Scheme: String, CaseIterable, Sendable { case idx, cifar, folder, h5 }
    public enum Part: String, Sendable { case train, test }

    public var scheme: Scheme
    /// The folder (idx, cifar, folder) or file (h5): absolute when parsed (see `absolutized`).
    public var path: String
    public var part: Part
    /// Whether `part` was written explicitly in the URI.
    public var partGiven: Bool
    /// The index-list file of `#split=FILE`, if any: absolute when parsed.
    public var splitFile: String?

    public init(scheme: Scheme, path: String, part: Part = .train, splitFile: String? = nil) {
        self.scheme = scheme
        self.path = path
        self.part = part
        self.partGiven = false
        self.splitFile = splitFile
    }

    /// Parses `SCHEME:PATH[#options]`; PATH and a split FILE are made absolute against `base`
    /// (default: the current directory), `~` expanded.
    /// - Throws: `DatasetError.badURI` for a missing or unknown scheme, an empty path, or an unknown,
    ///   repeated or empty fragment option (`#split` without `=FILE` included).
    public init(parsing text: String, relativeTo base: String = FileManager.default.currentDirectoryPath) throws {
        guard let colon = text.firstIndex(of: ":") else {
            throw DatasetError.badURI("dataset '\(text)' has no scheme; write idx:DIR, cifar:DIR, folder:DIR or h5:FILE")
        }
        let schemeText = String(text[..<colon])
        guard let scheme = Scheme(rawValue: schemeText) else {
            throw DatasetError.badURI("unknown dataset scheme '\(schemeText):' in '\(text)'; use idx:, cifar:, folder: or h5:")
        }
        var rest = String(text[text.index(after: colon)...])
        var fragment: String?
        if let hash = rest.firstIndex(of: "#") {
            fragment = String(rest[rest.index(after: hash)...])
            rest = String(rest[..<hash])
        }
        guard !rest.isEmpty else { throw DatasetError.badURI("dataset '\(text)' has an empty path") }
        self.init(scheme: scheme, path: Self.absolute(rest, relativeTo: base))
        guard let fragment else { return }
        var seen = Set<String>()
        for option in fragment.split(separator: "&", omittingEmptySubsequences: false) {
            let pair = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard pair.count == 2 || pair[0] != "split" else {
                throw DatasetError.badURI("split needs a file: write #split=FILE in '\(text)'")
            }
            let key = pair.count == 2 ? pair[0] : (Part(rawValue: pair[0]) != nil ? "part" : pair[0])
            let value = pair.count == 2 ? pair[1] : pair[0]
            guard !seen.contains(key) else { throw DatasetError.badURI("option '\(key)' given twice in '\(text)'") }
            seen.insert(key)
            switch key {
            case "part":
                guard let p = Part(rawValue: value) else {
                    throw DatasetError.badURI("part must be train or test, not '\(value)' in '\(text)'")
                }
                part = p
                partGiven = true
            case "split":
                guard !value.isEmpty else { throw DatasetError.badURI("split= needs a file in '\(text)'") }
                splitFile = Self.absolute(value, relativeTo: base)
            default:
                throw DatasetError.badURI("unknown dataset option '\(option)' in '\(text)'; use part=train|test or split=FILE")
            }
        }
        if scheme == .folder && partGiven && part == .test {
            throw DatasetError.badURI("folder: datasets have no test part; point folder: at the test folder instead")
        }
    }

    /// This URI with `path` and `splitFile` absolute: `~` expanded, a relative path appended to `base`
    /// (an absolute directory path), then `.` and `..` components removed textually (symbolic links are
    /// not resolved). Absolute paths only lose their `.`/`..` components.
    public func absolutized(relativeTo base: String) -> DatasetURI {
        var out = self
        out.path = Self.absolute(path, relativeTo: base)
        out.splitFile = splitFile.map { Self.absolute($0, relativeTo: base) }
        return out
    }

    static func absolute(_ path: String, relativeTo base: String) -> String {
        let expanded = (path as NSString).expandingTildeInPath
        let url = expanded.hasPrefix("/") ? URL(fileURLWithPath: expanded)
            : URL(fileURLWithPath: expanded, relativeTo: URL(fileURLWithPath: base, isDirectory: true))
        return url.standardizedFileURL.path
    }

    public var description: String {
        var options: [String] = []
        if partGiven || part != .train { options.append("part=\(part.rawValue)") }
        if let splitFile { options.append("split=\(splitFile)") }
        return "\(scheme.rawValue):\(path)" + (options.isEmpty ? "" : "#" + options.joined(separator: "&"))
    }
}
