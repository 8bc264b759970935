import Checkpoint
import Foundation

/// A model zoo: immutable content-addressed checkpoint files plus mutable labels, indexed by an SQLite
/// catalog (schemas/catalog.md). Modelled on git's object store: objects never change once written,
/// names are small files next to them, and the index can be rebuilt from both (`reindex`).
///
/// Consistency rule: files are *added* (objects, ref files) inside the catalog's write transaction
/// before it commits, and *removed* inside it as well (objects via `trash/`). A process killed at any
/// moment therefore leaves at most files the catalog does not list (an unlisted object, a ref of an
/// unlisted label, a staging file in `tmp/`); `verify` reports them as leftovers and `gc` lists a
/// complete unlisted object again and removes the rest (it never deletes an object that verifies).
/// The catalog never lists an entry whose object is incomplete.
public final class Zoo {
    public let layout: ZooLayout
    let catalog: Catalog
    /// Set when `open` found the catalog missing, empty or unreadable while `objects/` held objects
    /// and rebuilt it from the files (`reindex`): one line for the user, e.g.
    /// `catalog missing: rebuilt from 3 objects`. The CLI prints it on stderr.
    public internal(set) var notice: String?

    private init(layout: ZooLayout, catalog: Catalog) {
        self.layout = layout
        self.catalog = catalog
    }

    /// Opens the zoo at `layout.root`.
    /// - Parameter create: make the directories and catalog when missing (`import` does; read-only
    ///   commands do not, and fail on a missing zoo).
    /// - Throws: `ZooError.io` for a missing or unwritable zoo, `.unsupported` for a catalog of
    ///   a newer schema.
    ///   - readOnly: open the catalog with `SQLITE_OPEN_READONLY` (GRDB `Configuration.readonly`):
    ///     the catalog is never written, so a zoo the user may only read can be listed, shown,
    ///     exported and verified.
    ///
    /// A catalog that is missing, zero bytes or not an SQLite database while `objects/` holds object
    /// files is rebuilt from the files first (`reindex`, under the catalog's write lock) and `notice`
    /// says so; when the zoo cannot be written, opening fails and points to `bissl verify --reindex`.
    public static func open(_ layout: ZooLayout, create: Bool = false, readOnly: Bool = false) throws -> Zoo {
        var notice: String?
        if let state = missingCatalogState(layout) {
            let objects = ZooScan(layout).objects.count
            guard access(layout.root.path, W_OK) == 0, access(layout.objects.path, W_OK) == 0 else {
                throw ZooError.io("the catalog of zoo \(layout.root.path) is \(state) but objects/ holds \(objects) object\(objects == 1 ? "" : "s"); run bissl verify --reindex as a user who can write the zoo")
            }
            let report = try reindex(layout, onlyIfEmpty: true)
            if let report {
                notice = "catalog \(state): rebuilt from \(report.entries) object\(report.entries == 1 ? "" : "s")"
                    + (report.movedAside == nil ? "" : " (the damaged catalog was moved aside)")
            }
        }
        let zoo = try openCatalog(layout, create: create, readOnly: readOnly)
        zoo.notice = notice
        return zoo
    }

    /// True when `layout.root` holds a zoo: a catalog, or object files a rebuilt catalog would list.
    public static func isZoo(_ layout: ZooLayout) -> Bool {
        FileManager.default.fileExists(atPath: layout.catalog.path) || missingCatalogState(layout) != nil
    }

    /// "missing", "empty" or "unreadable" when the catalog file is so while `objects/` holds at least
    /// one object file; nil otherwise (including a new zoo with no objects).
    static func missingCatalogState(_ layout: ZooLayout) -> String? {
        let path = layout.catalog.path
        let state: String
        if !FileManager.default.fileExists(atPath: path) {
            state = "missing"
        } else {
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
            if size == 0 {
                state = "empty"
            } else if let handle = FileHandle(forReadingAtPath: path) {
                let header = (try? handle.read(upToCount: 16)) ?? Data()
                try? handle.close()
                guard header != Data("SQLite format 3\u{0}".utf8) else { return nil }
                state = "unreadable"
            } else {
                return nil  // unreadable for permissions: reported by SQLite when opened
            }
        }
        return ZooScan(layout).objects.isEmpty ? nil : state
    }

    /// `open` without the missing-catalog check (used by `reindex` itself).
    static func openCatalog(_ layout: ZooLayout, create: Bool, readOnly: Bool = false) throws -> Zoo {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        let exists = fm.fileExists(atPath: layout.root.path, isDirectory: &isDirectory)
        if exists && !isDirectory.boolValue {
            throw ZooError.io("zoo \(layout.root.path) is not a directory")
        }
        if !create && (!exists || !fm.fileExists(atPath: layout.catalog.path)) {
            throw ZooError.io("no zoo at \(layout.root.path) (bissl import creates one; choose another with --zoo DIR or BISSL_ZOO)")
        }
        if create {
            for dir in layout.directories { try makeDirectories(dir, zoo: layout.root) }
            guard access(layout.root.path, W_OK) == 0, access(layout.objects.path, W_OK) == 0 else {
                throw ZooError.io("zoo \(layout.root.path) is not writable")
            }
        }
        if !create && !readOnly, access(layout.root.path, W_OK) != 0 || access(layout.catalog.path, W_OK) != 0 {
            throw ZooError.io("zoo \(layout.root.path) is not writable (\(String(cString: strerror(errno)))); reading commands (list, show, export, diff, lineage, verify) still work")
        }
        let catalog = try Catalog(url: layout.catalog, create: create, readOnly: readOnly && !create)
        return Zoo(layout: layout, catalog: catalog)
    }

    /// `mkdir -p` with the failing component's `strerror` in the message.
    static func makeDirectories(_ dir: URL, zoo: URL) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ZooError.io("cannot create zoo at \(zoo.path): \(dir.path) is not a directory") }
            return
        }
        let parent = dir.deletingLastPathComponent()
        if parent.path != dir.path { try makeDirectories(parent, zoo: zoo) }
        if mkdir(dir.path, 0o755) != 0 && errno != EEXIST {
            throw ZooError.io("cannot create zoo at \(zoo.path): \(dir.path): \(String(cString: strerror(errno)))")
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
            throw ZooError.io("zoo \(layout.root.path) is not writable (\(dir.lastPathComponent): \(String(cString: strerror(errno))))")
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
    /// - Throws: `ZooError.invalid` when `id` is not listed.
    public func record(_ id: String) throws -> EntryRecord {
        guard let record = try list(ListFilter(ids: [id])).first else {
            throw ZooError.invalid("no entry \(id) in the zoo at \(layout.root.path)")
        }
        return record
    }

    /// Reads an entry's object file and checks that it holds the content it is named after.
    ///
    /// The stored `content_id` must be `id`. The tensors are hashed (`ContentID.compute`) unless the
    /// object's file facts (size, device, inode, modification and change times, `FileStatus`) equal
    /// those the catalog recorded when its content id was last verified (import, `verify`,
    /// `verify --reindex`): then the bytes are trusted as git trusts an unchanged work-tree file
    /// (schemas/catalog.md, "Trusted reads"), and an object with a tensor index (`TensorIndex`) is
    /// read through it alone: no HDF5 metadata walk, every tensor a zero-copy view of the mapped
    /// file. Files from outside the zoo never get this trust.
    /// - Parameters:
    ///   - components: read only these components' tensors (all when nil), as
    ///     `Checkpoint.keeping(_:)`; an object that must be hashed is still read whole.
    ///   - rehash: hash whatever the recorded facts say (`verify`, `gc`, `reindex`).
    /// - Throws: `ZooError.io` for a missing object, `.corrupt` for an unreadable one, one holding
    ///   other content ("object <id> is corrupt: holds content <x>; run bissl verify") or one whose
    ///   tensor index disagrees with its HDF5 metadata.
    public func checkpoint(_ id: String, components: Set<String>? = nil, rehash: Bool = false) throws -> Checkpoint {
        try load(id, components: components, rehash: rehash).checkpoint
    }

    /// `checkpoint(_:components:rehash:)`, also returning the object's file facts when its content id
    /// was hashed and matched (and its tensor index, if any, agreed) and the facts are settled
    /// (`FileStatus.isSettled`); nil when the recorded facts were trusted or cannot be. `verify`,
    /// `reindex` and `gc` record them.
    func load(_ id: String, components: Set<String>? = nil, rehash: Bool) throws -> (checkpoint: Checkpoint, hashed: FileStatus?) {
        let opened = FileStatus.coarseNow()   // before the reader's fstat: see `FileStatus.isSettled`
        if !rehash, let trusted = try trustedRead(id, components: components) { return (trusted, nil) }
        let reader = try openObject(id)
        if !rehash, let status = reader.status, try catalog.read({ try Catalog.verified(id, $0) }) == status {
            return (try Self.damaged(id) { try reader.checkpoint(only: components) }, nil)
        }
        let checkpoint = try Self.damaged(id) { try reader.checkpoint() }
        let actual = ContentID.compute(checkpoint)
        guard actual == id else { throw Self.mismatch(id, holds: actual) }
        let settled = reader.status.flatMap { $0.isSettled(before: opened) ? $0 : nil }
        return (components.map { checkpoint.keeping($0) } ?? checkpoint, settled)
    }

    /// The object of `id` read through its tensor index, when its file facts equal the recorded ones
    /// and it has an index; nil otherwise (then it is read through HDF5). The facts are those of the
    /// descriptor the bytes are then read from.
    private func trustedRead(_ id: String, components: Set<String>?) throws -> Checkpoint? {
        let url = layout.objectURL(id)
        let descriptor = Glibc.open(url.path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }   // reported by the HDF5 path
        defer { Glibc.close(descriptor) }
        guard let status = FileStatus(descriptor: descriptor), try catalog.read({ try Catalog.verified(id, $0) }) == status else {
            return nil
        }
        return try Self.damaged(id) { () throws -> Checkpoint? in
            guard let index = try TensorIndex.read(descriptor: descriptor, fileSize: status.size, fileName: url.lastPathComponent) else {
                return nil
            }
            guard index.contentID == id else { throw Self.mismatch(id, holds: index.contentID) }
            return try index.checkpoint(descriptor: descriptor, fileSize: status.size, fileName: url.lastPathComponent, only: components)
        }
    }

    /// Opens an entry's object (its metadata, `CheckpointReader`) and checks that its stored
    /// `content_id` is `id` and its tensor index, if any, agrees with the metadata (later reads of
    /// a trusted object believe the index).
    private func openObject(_ id: String) throws -> CheckpointReader {
        let url = layout.objectURL(id)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw ZooError.io("object file of entry \(id.prefix(12)) is missing (\(url.path)); run bissl verify")
        }
        let reader = try Self.damaged(id) { try CheckpointReader(url, zooObject: true) }
        guard let stored = reader.storedContentID else {
            throw ZooError.corrupt("object of entry \(id.prefix(12)) is damaged: \(url.lastPathComponent): no root attribute content_id")
        }
        guard stored == id else { throw Self.mismatch(id, holds: stored) }
        return reader
    }

    /// Runs `body` (which reads the object of `id`), turning a reader's `CheckpointError` into
    /// `ZooError.corrupt("object of entry ID is damaged: REASON")`. The reader names the file (twice,
    /// for an HDF5 file that does not open), which the entry names already: only the reason is kept.
    private static func damaged<T>(_ id: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as CheckpointError {
            var reason = error.description
            let name = String(id.dropFirst(2)) + ".h5"
            for prefix in ["\(name): ", "damaged HDF5 file: ", "cannot open HDF5 file \(name): "] where reason.hasPrefix(prefix) {
                reason.removeFirst(prefix.count)
            }
            throw ZooError.corrupt("object of entry \(id.prefix(12)) is damaged: \(reason)")
        }
    }

    private static func mismatch(_ id: String, holds actual: String) -> ZooError {
        .corrupt("object \(id.prefix(12)) is corrupt: holds content \(actual.prefix(12)); run bissl verify")
    }

    /// Checks that the object of `id` still holds its content: at the cost of one `stat` when its file
    /// facts equal those recorded at its last verification (schemas/catalog.md, "Trusted reads"),
    /// else by reading and hashing it as `checkpoint(_:)` does.
    /// - Throws: `ZooError` as `checkpoint(_:)` does for a missing, damaged or modified object.
    public func checkIntact(_ id: String) throws {
        if let status = FileStatus(path: layout.objectURL(id).path), try catalog.read({ try Catalog.verified(id, $0) }) == status {
            return
        }
        _ = try checkpoint(id)
    }

    /// Every tensor's component, key, dtype and shape in stored order, from the object's metadata
    /// (no tensor bytes read, no hashing; the stored `content_id` must be `id`).
    /// - Throws: `ZooError` as `checkpoint(_:)` does for a missing or damaged object.
    public func tensorList(_ id: String) throws -> [(component: String, key: String, dtype: DType, shape: [Int])] {
        try openObject(id).components.flatMap { component, infos in
            infos.map { (component, $0.key, $0.value.dtype, $0.value.shape) }
        }
    }

    /// Size and modification time of an object file.
    func objectAttributes(_ id: String) throws -> (size: Int64, modified: Date) {
        // `lstat` itself: FileManager's attributes also look up the owner's user and group names.
        let path = layout.objectURL(id).path
        var s = stat()
        guard lstat(path, &s) == 0 else { throw ZooError.io("cannot examine \(path): \(String(cString: strerror(errno)))") }
        return (Int64(s.st_size), Date(timeIntervalSince1970: Double(s.st_mtim.tv_sec) + Double(s.st_mtim.tv_nsec) / 1e9))
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
        try catalog.read { db in try Catalog.children(of: id, db).filter { try $0 != id && Catalog.exists($0, db) } }
    }
}
