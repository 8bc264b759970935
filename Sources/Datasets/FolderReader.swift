import Foundation

/// torchvision `ImageFolder` layout: `DIR/<class>/**/<image>`. Classes are the sub-folders of DIR,
/// sorted by name (byte order, as Python's `sorted`), labelled 0, 1, ...; images are the files
/// below each class folder (recursively, symlinks followed, hidden files and folders skipped)
/// whose extension is `.png`, `.jpg` or `.jpeg` (any case), in sorted path order. Other files are
/// ignored. A class folder with no image is an error (torchvision raises one too).
final class FolderSource: ImageSource, @unchecked Sendable {
    static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    let root: URL
    let classNames: [String]
    /// Paths relative to `root`, and labels, in dataset order.
    let files: [String]
    let labels: [Int32]

    var count: Int { files.count }

    init(_ uri: DatasetURI) throws {
        let root = try requireFolder(uri.path, scheme: "folder")
        self.root = root
        let fm = FileManager.default
        let entries = (try? fm.contentsOfDirectory(atPath: root.path)) ?? []
        let classes = entries.filter { name in
            var isDir: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: root.appendingPathComponent(name).path, isDirectory: &isDir) && isDir.boolValue
        }.sorted(by: Self.utf8Less)
        guard !classes.isEmpty else { throw DatasetError.invalid("folder:\(root.path) has no class sub-folders") }
        var files: [String] = []
        var labels: [Int32] = []
        for (label, name) in classes.enumerated() {
            let found = Self.images(below: root.appendingPathComponent(name), relative: name)
            guard !found.isEmpty else {
                throw DatasetError.invalid("folder:\(root.path): class folder '\(name)' holds no PNG or JPEG file")
            }
            files += found
            labels += Array(repeating: Int32(label), count: found.count)
        }
        classNames = classes
        self.files = files
        self.labels = labels
    }

    /// Image files below `dir`, as paths relative to the dataset root, in torchvision's order:
    /// folders sorted by path (`sorted(os.walk(dir))`), then the files of each folder sorted.
    private static func images(below dir: URL, relative: String) -> [String] {
        let fm = FileManager.default
        var folders: [(String, [String])] = []
        var pending: [(URL, String)] = [(dir, relative)]
        var visited = Set<String>()
        while let (url, rel) = pending.popLast() {
            let real = url.resolvingSymlinksInPath().path
            guard visited.insert(real).inserted else { continue }  // symlink loops
            var names: [String] = []
            for name in ((try? fm.contentsOfDirectory(atPath: url.path)) ?? []) where !name.hasPrefix(".") {
                let child = url.appendingPathComponent(name)
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: child.path, isDirectory: &isDir) else { continue }
                if isDir.boolValue {
                    pending.append((child, rel + "/" + name))
                } else if extensions.contains((name as NSString).pathExtension.lowercased()) {
                    names.append(name)
                }
            }
            folders.append((rel, names.sorted(by: utf8Less)))
        }
        return folders.sorted { utf8Less($0.0, $1.0) }.flatMap { folder in folder.1.map { folder.0 + "/" + $0 } }
    }

    private static func utf8Less(_ a: String, _ b: String) -> Bool {
        Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8))
    }

    func label(_ i: Int) -> Int { Int(labels[i]) }

    func name(_ i: Int) -> String { root.appendingPathComponent(files[i]).path }

    func image(_ i: Int) throws -> RGBImage {
        let url = root.appendingPathComponent(files[i])
        return try ImageDecoder.decode(try readFile(url, what: "image file"), name: url.path)
    }

    func fingerprint(kept: [Int]) throws -> Fingerprinter {
        var f = Fingerprinter()
        for i in kept {
            f.add(name: files[i], bytes: try readFile(root.appendingPathComponent(files[i]), what: "image file"))
        }
        return f
    }
}
