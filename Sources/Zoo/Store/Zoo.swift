import Checkpoint
import Foundation

/// A model zoo: immutable content-addressed checkpoint files plus mutable labels, indexed by an SQLite
/// catalog (schemas/catalog.md). Modelled on git's object store: objects never change once written,
/// names are small files next to them, and the index can be rebuilt from both (`reindex`).
///
/// Consistency rule: files are *added* (objects, ref files) inside the catalog's write transaction
/// before it commits, and *removed* inside it as well (objects via `trash/`). A process killed at any
/// moment therefore leaves at most files the catalog does not list (an unlisted object, a ref of an
/// unlisted label, a staging file in `tmp/`); `verify` reports them as leftovers and `gc` removes them.
/// The catalog never lists an entry whose object is incomplete.
public final class Zoo {
    public let layout: ZooLayout
    let catalog: Catalog

    private init(layout: ZooLayout, catalog: Catalog) {
        self.layout = layout
        self.catalog = catalog
    }

    /// Opens the zoo at `layout.root`.
    /// - Parameter create: make the directories and catalog when missing (`import` does; read-only
    ///   commands do not, and fail on a missing zoo).
    /// - Throws: `CheckpointError.io` for a missing or unwritable zoo, `.unsupported` for a catalog of
    ///   a newer schema.
    public static func open(_ layout: ZooLayout, create: Bool = false) throws -> Zoo {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        let exists = fm.fileExists(atPath: layout.root.path, isDirectory: &isDirectory)
        if exists && !isDirectory.boolValue {
            throw CheckpointError.io("zoo \(layout.root.path) is not a directory")
        }
        if !create && (!exists || !fm.fileExists(atPath: layout.catalog.path)) {
            throw CheckpointError.io("no zoo at \(layout.root.path) (bissl import creates one; choose another with --zoo DIR or BISSL_ZOO)")
        }
        if create {
            for dir in layout.directories { try makeDirectories(dir, zoo: layout.root) }
            guard access(layout.root.path, W_OK) == 0, access(layout.objects.path, W_OK) == 0 else {
                throw CheckpointError.io("zoo \(layout.root.path) is not writable")
            }
        }
        let catalog = try Catalog(url: layout.catalog, create: create)
        return Zoo(layout: layout, catalog: catalog)
    }

    /// `mkdir -p` with the failing component's `strerror` in the message.
    static func makeDirectories(_ dir: URL, zoo: URL) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw CheckpointError.io("cannot create zoo at \(zoo.path): \(dir.path) is not a directory") }
            return
        }
        let parent = dir.deletingLastPathComponent()
        if parent.path != dir.path { try makeDirectories(parent, zoo: zoo) }
        if mkdir(dir.path, 0o755) != 0 && errno != EEXIST {
            throw CheckpointError.io("cannot create zoo at \(zoo.path): \(dir.path): \(String(cString: strerror(errno)))")
        }
    }

    /// Closes the catalog connection.
    public func close() throws { try catalog.close() }

    static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        return ns.localizedDescription
    }

    /// Fails with one line when the zoo cannot be written (checked before any mutation).
    func requireWritable() throws {
        for dir in [layout.root, layout.objects, layout.refs, layout.tmp, layout.trash, layout.tombstones]
        where access(dir.path, W_OK) != 0 {
            throw CheckpointError.io("zoo \(layout.root.path) is not writable (\(dir.lastPathComponent): \(String(cString: strerror(errno))))")
        }
    }

    // MARK: - reading

    /// The listed entries matching `filter`, newest first.
    /// - Parameter withProvenance: fill `summary.provenanceJSON` (left empty otherwise, which makes
    ///   listing 10,000 entries several times faster).
    public func list(_ filter: ListFilter = ListFilter(), withProvenance: Bool = true) throws -> [EntryRecord] {
        try catalog.read { try Catalog.records(filter, withProvenance: withProvenance, $0) }
    }

    /// The catalog record of a listed entry.
    /// - Throws: `CheckpointError.invalid` when `id` is not listed.
    public func record(_ id: String) throws -> EntryRecord {
        guard let record = try list(ListFilter(ids: [id])).first else {
            throw CheckpointError.invalid("no entry \(id) in the zoo at \(layout.root.path)")
        }
        return record
    }

    /// Reads a listed entry's object file and checks that it holds the content it is named after.
    /// - Parameter verifyContentID: recompute the content id from the tensors (slower; `verify`
    ///   does it); otherwise only the stored `content_id` attribute is compared with the file name.
    /// - Throws: `CheckpointError.io` for a missing object, `.corrupt` for a damaged one.
    public func checkpoint(_ id: String, verifyContentID: Bool = false) throws -> Checkpoint {
        let url = layout.objectURL(id)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CheckpointError.io("object file of entry \(id.prefix(12)) is missing (\(url.path)); run bissl verify")
        }
        let checkpoint: Checkpoint
        do {
            checkpoint = try CheckpointFile.read(url, verifyContentID: verifyContentID)
        } catch let error as CheckpointError {
            throw CheckpointError.corrupt("object of entry \(id.prefix(12)) is damaged: \(error.description)")
        }
        let stored = try CheckpointFile.storedContentID(url)
        guard stored == id else {
            throw CheckpointError.corrupt("object of entry \(id.prefix(12)) holds content \(stored.prefix(12)), not \(id.prefix(12)); run bissl verify")
        }
        return checkpoint
    }

    /// Size and modification time of an object file.
    func objectAttributes(_ id: String) throws -> (size: Int64, modified: Date) {
        let attributes = try FileManager.default.attributesOfItem(atPath: layout.objectURL(id).path)
        return ((attributes[.size] as? NSNumber)?.int64Value ?? 0, (attributes[.modificationDate] as? Date) ?? Date())
    }

    /// A removed entry's record (its tombstone), nil when the zoo never held it or forgot it.
    public func tombstone(_ id: String) throws -> Tombstone? {
        try catalog.read { try Catalog.tombstone(id, $0) }
    }

    /// Labels (name first, then tags) of a listed entry.
    public func labels(of id: String) throws -> [(label: String, kind: LabelKind)] {
        try catalog.read { try Catalog.labels(of: id, $0) }
    }

    /// Listed entries that name `id` as a parent.
    public func children(of id: String) throws -> [String] {
        try catalog.read { db in try Catalog.children(of: id, db).filter { try Catalog.exists($0, db) } }
    }
}
