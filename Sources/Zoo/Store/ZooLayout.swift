import Checkpoint
import Foundation

/// The files of one zoo (schemas/catalog.md, "Directory layout"):
///
/// ```
/// <root>/objects/<2 hex>/<62 hex>.h5   immutable checkpoint files (format v1), named by content id
/// <root>/refs/names/<label>            mutable labels: one line, the full entry id
/// <root>/refs/tags/<label>
/// <root>/tombstones/<id>.json          provenance of removed entries that descendants still name
/// <root>/tmp/                          staging area of running imports (pid in every file name)
/// <root>/trash/                        objects being removed, deleted right after the commit
/// <root>/damaged/                      unlisted objects gc found unreadable or mismatched (kept)
/// <root>/runs/<run id>/                 training run directories (run.json, log.jsonl, state.h5,
///                                       curves.png); never read or removed by verify, gc or reindex
/// <root>/catalog.sqlite                the index (SQLite, WAL), rebuildable from the files above
/// ```
public struct ZooLayout: Sendable, Equatable {
    public let root: URL

    public init(root: URL) { self.root = root.standardizedFileURL }

    /// The zoo a command uses: `--zoo DIR` when given, else `$BISSL_ZOO` when set and non-empty,
    /// else `./zoo` relative to the current directory.
    public static func resolve(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> ZooLayout {
        if let explicit, !explicit.isEmpty { return ZooLayout(root: URL(fileURLWithPath: explicit)) }
        if let env = environment["BISSL_ZOO"], !env.isEmpty { return ZooLayout(root: URL(fileURLWithPath: env)) }
        return ZooLayout(root: URL(fileURLWithPath: "zoo"))
    }

    public var objects: URL { root.appendingPathComponent("objects", isDirectory: true) }
    public var refs: URL { root.appendingPathComponent("refs", isDirectory: true) }
    public var tombstones: URL { root.appendingPathComponent("tombstones", isDirectory: true) }
    public var tmp: URL { root.appendingPathComponent("tmp", isDirectory: true) }
    public var trash: URL { root.appendingPathComponent("trash", isDirectory: true) }
    public var catalog: URL { root.appendingPathComponent("catalog.sqlite") }
    /// Unlisted objects `gc` found unreadable or not matching their name, moved aside (made on demand).
    public var damaged: URL { root.appendingPathComponent("damaged", isDirectory: true) }
    /// Training run directories (`Training.Run`, made on demand). Not part of the catalog: `verify`,
    /// `gc` and `reindex` neither scan nor delete anything under it.
    public var runs: URL { root.appendingPathComponent("runs", isDirectory: true) }

    /// Every directory `Zoo.open(create: true)` makes.
    var directories: [URL] {
        [root, objects, refs.appendingPathComponent(LabelKind.name.directory), refs.appendingPathComponent(LabelKind.tag.directory),
         tombstones, tmp, trash]
    }

    /// Throws when a folder `gc` removes files from is a symbolic link (`refs`, `refs/names`,
    /// `refs/tags`, `objects` and its two-hex folders, `tombstones`, `tmp`, `trash`, `damaged`, `runs`,
    /// whose completed runs gc compacts): gc
    /// judges what it finds there as the zoo's own, so through a link it would delete another
    /// folder's files. (A `tmp` elsewhere cannot work anyway: imports rename from it into `objects`.)
    /// - Throws: `ZooError.unsupported` naming the link and where it leads.
    func requireOwnFolders(_ action: String) throws {
        var folders = directories.dropFirst() + [refs, damaged, runs]
        if let shards = try? FileManager.default.contentsOfDirectory(atPath: objects.path) {
            folders += shards.map { objects.appendingPathComponent($0, isDirectory: true) }
        }
        try Self.requireNoLink(Array(folders), action)
    }

    /// Throws when `runs/` is a symbolic link, as `requireOwnFolders` does: for what deletes runs
    /// (`bissl runs rm`, which also takes a run's path, so the run folder's own path cannot tell).
    /// - Throws: `ZooError.unsupported` naming the link and where it leads.
    public func requireOwnRunsFolder(_ action: String) throws {
        try Self.requireNoLink([runs], action)
    }

    /// Throws when `refs`, `refs/names` or `refs/tags` is a symbolic link, as `requireOwnFolders`
    /// does: for what writes and removes ref files (`tag`, `untag`, `rm`, `import`, `pull`), which
    /// through a link would change another folder's files.
    /// - Throws: `ZooError.unsupported` naming the link and where it leads.
    func requireOwnRefFolders() throws {
        guard let link = linkedRefFolder() else { return }
        throw ZooError.unsupported("refused: \(link.url.path) is a symbolic link (to \(link.target)); bissl writes and removes labels' ref files only in the zoo's own refs/ folders: put the folder itself there")
    }

    /// The first of `refs`, `refs/names`, `refs/tags` that is a symbolic link, and where it leads.
    func linkedRefFolder() -> (url: URL, target: String)? {
        for folder in [refs] + LabelKind.allCases.map({ refs.appendingPathComponent($0.directory, isDirectory: true) }) {
            var info = stat()
            guard lstat(folder.path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { continue }
            return (folder, (try? FileManager.default.destinationOfSymbolicLink(atPath: folder.path)) ?? "?")
        }
        return nil
    }

    private static func requireNoLink(_ folders: [URL], _ action: String) throws {
        for folder in folders {
            var info = stat()
            guard lstat(folder.path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { continue }
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: folder.path)) ?? "?"
            throw ZooError.unsupported("\(action) refused: \(folder.path) is a symbolic link (to \(target)); it removes files only in the zoo's own folders: put the folder itself there")
        }
    }

    /// `objects/<first 2 hex>/<remaining 62 hex>.h5` for a 64-hex content id.
    public func objectURL(_ id: String) -> URL {
        objects.appendingPathComponent(String(id.prefix(2)), isDirectory: true)
            .appendingPathComponent(String(id.dropFirst(2)) + ".h5")
    }

    public func refURL(_ label: String, kind: LabelKind) -> URL {
        refs.appendingPathComponent(kind.directory, isDirectory: true).appendingPathComponent(label)
    }

    public func tombstoneURL(_ id: String) -> URL { tombstones.appendingPathComponent(id + ".json") }

    /// True for a 64-character lowercase hex string (a full content id).
    public static func isFullID(_ s: String) -> Bool { s.utf8.count == 64 && isHex(s) }

    /// True when every character is a lowercase hex digit (and the string is non-empty).
    public static func isHex(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// The two kinds of label. A *name* is the one primary label of an entry (`import --name`); *tags* are
/// any number of further labels (`import --tag`, `bissl tag`). Names and tags share one namespace, so a
/// label always resolves to exactly one entry.
public enum LabelKind: String, Codable, Sendable, CaseIterable {
    case name, tag
    var directory: String { self == .name ? "names" : "tags" }
}

/// Rules for labels, which are also file names under `refs/`.
public enum LabelRules {
    /// 1 to 100 characters of `A-Z a-z 0-9 . _ + -`, starting with a letter or digit, and not a
    /// string of 6 or more hex digits (that would read as an id prefix).
    /// - Throws: `ZooError.invalid` saying which rule the label breaks.
    public static func validate(_ label: String) throws {
        let allowed = label.utf8.allSatisfy {
            (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2B || $0 == 0x2D
        }
        guard !label.isEmpty, label.utf8.count <= 100, allowed, let first = label.utf8.first,
              (0x30...0x39).contains(first) || (0x41...0x5A).contains(first) || (0x61...0x7A).contains(first) else {
            throw ZooError.invalid("invalid label '\(label)': use 1-100 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit")
        }
        if label.utf8.count >= 6 && ZooLayout.isHex(label) {
            throw ZooError.invalid("invalid label '\(label)': 6 or more hex digits would read as an entry id prefix")
        }
    }
}
