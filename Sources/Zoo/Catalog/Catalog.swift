import Checkpoint
import Foundation
import GRDB

/// The zoo's index: an SQLite database in WAL mode (schemas/catalog.md), opened through GRDB.
///
/// Every mutation runs in one `BEGIN IMMEDIATE` transaction (`write`), so concurrent `bissl` processes
/// queue on SQLite's write lock (waiting up to `busyTimeout`) and never lose each other's rows. Reads
/// see the last committed state. Errors are `ZooError`s with one line naming the catalog.
final class Catalog {
    /// How long a process waits for another one's write transaction before giving up.
    static let busyTimeout: TimeInterval = 120

    let url: URL
    private let queue: DatabaseQueue
    /// False when the catalog was opened for reading only (`readOnly`): read-only commands, `verify`
    /// included, write nothing, not even file facts (schemas/catalog.md, "Trusted reads").
    let canWrite: Bool
    /// The schema version of the open catalog: `CatalogSchema.currentVersion`, or an older readable
    /// one when it was opened read-only by a user who cannot write it (not migrated).
    private(set) var schemaVersion = CatalogSchema.currentVersion

    /// Opens (or creates, when `create`) the catalog at `url` and brings its schema to
    /// `CatalogSchema.currentVersion`.
    /// - Throws: `ZooError.unsupported` for a catalog of a newer schema (left untouched),
    ///   `ZooError.io` when SQLite cannot open or write it.
    /// - Parameter readOnly: the caller only reads. When this process may write the zoo folder and
    ///   the catalog, the connection is the usual one (it issues no writes, and closing it removes the
    ///   -wal/-shm files as before). When it may not (a zoo of another user), the catalog is opened with
    ///   `SQLITE_OPEN_READONLY` (GRDB `Configuration.readonly`), see `ReadMode`.
    init(url: URL, create: Bool, readOnly: Bool = false) throws {
        self.url = url
        let exists = FileManager.default.fileExists(atPath: url.path)
        if !exists && !create {
            throw ZooError.io("no zoo catalog at \(url.path)")
        }
        // Check the version before GRDB touches the file; an up-to-date catalog is not written to.
        let version = exists ? try Self.headerVersion(url) : 0
        try CatalogSchema.checkNotNewer(version, path: url.path)
        var config = Configuration()
        config.busyMode = .timeout(Self.busyTimeout)
        config.foreignKeysEnabled = true
        config.label = "bissl-catalog"
        let dir = url.deletingLastPathComponent().path
        let mode = readOnly ? Self.readMode(canWrite: access(dir, W_OK) == 0 && access(url.path, W_OK) == 0,
                                            walExists: FileManager.default.fileExists(atPath: url.path + "-wal")) : .readWrite
        canWrite = !readOnly
        var path = url.path
        switch mode {
        case .readWrite: break
        case .readOnly: config.readonly = true
        case .immutable:
            config.readonly = true
            // SQLite URI filename (https://www.sqlite.org/uri.html); Debian's libsqlite3 is built with
            // SQLITE_USE_URI=1, so a `file:` path is read as a URI by sqlite3_open_v2.
            let escaped = path.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "?", with: "%3f")
                .replacingOccurrences(of: "#", with: "%23")
            path = "file:\(escaped)?mode=ro&immutable=1"
        }
        do {
            queue = try DatabaseQueue(path: path, configuration: config)
        } catch {
            throw Self.describe(error, url: url)
        }
        if mode != .readWrite {
            let live = try read { try CatalogSchema.version($0) }
            try CatalogSchema.checkNotNewer(live, path: url.path)
            guard live >= CatalogSchema.oldestReadable else {
                throw ZooError.io("\(url.path): the catalog has schema version \(live), this bissl needs \(CatalogSchema.oldestReadable) or later; run any writing bissl command once as a user who can write the zoo")
            }
            schemaVersion = live
            return
        }
        if version < CatalogSchema.currentVersion {
            // WAL is a persistent property of the database file: set once here, when the catalog is
            // created or migrated. (GRDB's `journalMode = .wal` would write to the catalog at every
            // open, so read-only commands would modify it.)
            // Several processes may create the same zoo at once. Switching the journal mode needs an
            // exclusive lock, and SQLite answers that conflict with SQLITE_BUSY at once (its busy handler
            // is skipped where waiting could deadlock), so the set-up is retried for up to `busyTimeout`.
            let deadline = Date().addingTimeInterval(Self.busyTimeout)
            while true {
                do {
                    try queue.writeWithoutTransaction { db in
                        let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                        guard mode == "wal" else { throw ZooError.io("\(url.path): SQLite refused WAL mode (journal mode \(mode ?? "?"))") }
                        try db.inTransaction(.immediate) {
                            try CatalogSchema.migrate(db, path: url.path)
                            return .commit
                        }
                    }
                    break
                } catch let error as DatabaseError
                            where [.SQLITE_BUSY, .SQLITE_LOCKED].contains(error.resultCode) && Date() < deadline {
                    usleep(UInt32.random(in: 10_000...50_000))
                } catch {
                    throw Self.describe(error, url: url)
                }
            }
        } else {
            // The header may lag behind a version bump still in the WAL of a running newer bissl.
            let live = try read { try CatalogSchema.version($0) }
            try CatalogSchema.checkNotNewer(live, path: url.path)
        }
    }

    /// Reads the schema version from the database header without opening a connection (which would
    /// create WAL files); 0 for an empty file. SQLite keeps `PRAGMA user_version` as a 4-byte
    /// big-endian integer at offset 60 of the header (https://www.sqlite.org/fileformat2.html#user_version_number).
    /// `CatalogSchema.migrate` checks again inside its transaction, where the WAL is taken into account.
    private static func headerVersion(_ url: URL) throws -> Int {
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw ZooError.io("cannot read the catalog \(url.path): \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        let header = (try? handle.read(upToCount: 100)) ?? Data()
        guard header.count >= 64 else { return 0 }  // empty file: SQLite initialises it
        guard header.prefix(16) == Data("SQLite format 3\u{0}".utf8) else {
            throw ZooError.corrupt("\(url.path): the catalog is not an SQLite database; rebuild it with bissl verify --reindex")
        }
        return header[60..<64].reduce(0) { $0 << 8 | Int($1) }
    }

    /// How a read-only command opens the catalog.
    enum ReadMode: Equatable {
        /// The usual read-write connection (this process may write the zoo; it only reads).
        case readWrite
        /// `SQLITE_OPEN_READONLY`: another user's zoo with a -wal file (a writer is active or was
        /// killed); SQLite reads the WAL through the existing -shm file (https://www.sqlite.org/wal.html#readonly).
        case readOnly
        /// `SQLITE_OPEN_READONLY` with the `immutable` URI parameter: another user's zoo with no
        /// -wal file, where SQLite could not create the -shm file a WAL reader needs. Every commit
        /// is then in the main file; a writer starting meanwhile writes to its WAL, which this
        /// short-lived reader does not see.
        case immutable
    }

    static func readMode(canWrite: Bool, walExists: Bool) -> ReadMode {
        canWrite ? .readWrite : walExists ? .readOnly : .immutable
    }

    /// Runs `body` in one IMMEDIATE transaction; commits when it returns, rolls back when it throws.
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try queue.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch {
            throw Self.describe(error, url: url)
        }
    }

    /// Runs `body` on the last committed state.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try queue.read { db in try body(db) }
        } catch {
            throw Self.describe(error, url: url)
        }
    }

    /// Closes the connection (checkpointing the WAL when it is the last one).
    func close() throws {
        do { try queue.close() } catch { throw Self.describe(error, url: url) }
    }

    /// One-line errors (`ZooError`, a `CheckpointError` from decoding a row) pass through; SQLite
    /// errors become one `.io` line naming the catalog.
    static func describe(_ error: Error, url: URL) -> Error {
        if error is OneLineError { return error }
        if let db = error as? DatabaseError {
            switch db.resultCode {
            case .SQLITE_BUSY, .SQLITE_LOCKED:
                return ZooError.io("\(url.path): catalog is locked by another bissl process (waited \(Int(busyTimeout)) s)")
            case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_CANTOPEN:
                return ZooError.io("\(url.path): cannot open the catalog for writing: \(db.message ?? "\(db.resultCode)")")
            case .SQLITE_NOTADB, .SQLITE_CORRUPT:
                return ZooError.corrupt("\(url.path): the catalog is damaged (\(db.message ?? "not a database")); rebuild it with bissl verify --reindex")
            default:
                return ZooError.io("\(url.path): catalog error: \(db.message ?? "\(db.resultCode)")")
            }
        }
        return ZooError.io("\(url.path): \(error)")
    }

    // MARK: - entries

    static func insert(_ s: EntrySummary, _ db: Database) throws {
        try db.execute(sql: """
            INSERT INTO entries (id, stage, method, arch, dataset, headline_metric, headline_value, created, size,
                                 tensor_count, components, source_file, provenance, details, first_parent, parent_count, carried)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [s.id, s.stage, s.method, s.arch, s.dataset, s.headlineMetric, s.headlineValue, s.created, s.size,
                             s.tensorCount, s.components.joined(separator: "\n"), s.sourceFile, s.provenanceJSON,
                             s.details.map(EntryDetails.json), s.parents.first?.id, s.parents.count, s.carried])
        // A re-imported removed entry is listed again: its tombstone row and edges give way.
        try db.execute(sql: "DELETE FROM tombstones WHERE id = ?", arguments: [s.id])
        try db.execute(sql: "DELETE FROM edges WHERE child = ?", arguments: [s.id])
        for (position, parent) in s.parents.enumerated() {
            try db.execute(sql: "INSERT INTO edges (child, parent, relation, note, position) VALUES (?, ?, ?, ?, ?)",
                           arguments: [s.id, parent.id, parent.relation, parent.note, position])
        }
        for (name, value) in s.metrics.sorted(by: { $0.key < $1.key }) {
            try db.execute(sql: "INSERT INTO metrics (entry_id, name, value) VALUES (?, ?, ?)",
                           arguments: [s.id, name, value.isNaN ? nil : value])
        }
    }

    static func exists(_ id: String, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM entries WHERE id = ?", arguments: [id]) ?? false
    }

    static func allIDs(_ db: Database) throws -> Set<String> {
        Set(try String.fetchAll(db, sql: "SELECT id FROM entries"))
    }

    /// Ids starting with `prefix` (lowercase hex), at most `limit`.
    static func ids(withPrefix prefix: String, limit: Int, _ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT id FROM entries WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                            arguments: [prefix, prefix + "g", limit])
    }

    /// Deletes a listed entry with its labels, metrics and lineage edges.
    static func delete(_ id: String, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM edges WHERE child = ?", arguments: [id])
        try db.execute(sql: "DELETE FROM entries WHERE id = ?", arguments: [id])
    }

    /// Entries matching `filter`, newest first, with their labels.
    /// - Parameter withProvenance: also load each entry's provenance JSON and details (`provenanceJSON`
    ///   is empty and `details` nil otherwise; listings need neither and they are most of a row's bytes).
    static func records(_ filter: ListFilter, withProvenance: Bool = true, _ db: Database) throws -> [EntryRecord] {
        let (whereSQL, arguments) = whereClause(filter)
        // One query per table (the same filter as a sub-select), merged here: 4 scans instead of
        // 3 correlated sub-queries per row.
        let selected = "SELECT e.id FROM entries e \(whereSQL)"
        var labels: [String: (name: String?, tags: [String])] = [:]
        let labelRows = try Row.fetchCursor(db, sql: "SELECT entry_id, kind, label FROM labels WHERE entry_id IN (\(selected)) ORDER BY label",
                                            arguments: arguments)
        while let row = try labelRows.next() {
            let id: String = row[0], kind: String = row[1], label: String = row[2]
            if kind == LabelKind.name.rawValue { labels[id, default: (nil, [])].name = label } else { labels[id, default: (nil, [])].tags.append(label) }
        }
        var parents: [String: [Provenance.Parent]] = [:]
        let edgeRows = try Row.fetchCursor(db, sql: "SELECT child, parent, relation, note FROM edges WHERE child IN (\(selected)) ORDER BY child, position",
                                           arguments: arguments)
        while let row = try edgeRows.next() {
            parents[row[0], default: []].append(Provenance.Parent(id: row[1], relation: row[2], note: row[3]))
        }
        var metrics: [String: [String: Double]] = [:]
        let metricRows = try Row.fetchCursor(db, sql: "SELECT entry_id, name, value FROM metrics WHERE entry_id IN (\(selected))", arguments: arguments)
        while let row = try metricRows.next() {
            let value: Double? = row[2]
            metrics[row[0], default: [:]][row[1]] = value ?? .nan
        }
        var records: [EntryRecord] = []
        let carried = try CatalogSchema.version(db) >= 5 ? "e.carried" : CatalogSchema.carriedSQL(column: "e.provenance")
        let rows = try Row.fetchCursor(db, sql: """
            SELECT e.id, e.stage, e.method, e.arch, e.dataset, e.headline_metric, e.headline_value, e.created, e.size,
                   e.tensor_count, e.components, e.source_file, \(withProvenance ? "e.provenance, e.details" : "'', NULL"),
                   \(carried)
            FROM entries e \(whereSQL) ORDER BY e.created DESC, e.id
            """, arguments: arguments)
        while let row = try rows.next() {
            // Columns by position: name lookups cost more than the query for 10,000 rows.
            let id: String = row[0]
            let summary = EntrySummary(
                id: id, stage: row[1], method: row[2], arch: row[3], dataset: row[4],
                headlineMetric: row[5], headlineValue: row[6], created: row[7], size: row[8],
                tensorCount: row[9], components: (row[10] as String).split(separator: "\n").map(String.init),
                sourceFile: row[11], parents: parents[id] ?? [], metrics: metrics[id] ?? [:], provenanceJSON: row[12],
                details: EntryDetails.decode(row[13]), carried: row[14])
            let l = labels[id]
            records.append(EntryRecord(summary: summary, name: l?.name, tags: l?.tags ?? []))
        }
        return records
    }

    // MARK: - labels

    static func labelOwner(_ label: String, _ db: Database) throws -> (id: String, kind: LabelKind)? {
        guard let row = try Row.fetchOne(db, sql: "SELECT entry_id, kind FROM labels WHERE label = ?", arguments: [label]) else { return nil }
        return (row["entry_id"], LabelKind(rawValue: row["kind"]) ?? .tag)
    }

    static func labels(of id: String, _ db: Database) throws -> [(label: String, kind: LabelKind)] {
        try Row.fetchAll(db, sql: "SELECT label, kind FROM labels WHERE entry_id = ? ORDER BY kind, label", arguments: [id])
            .map { ($0["label"], LabelKind(rawValue: $0["kind"]) ?? .tag) }
    }

    static func allLabels(_ db: Database) throws -> [(label: String, kind: LabelKind, id: String)] {
        try Row.fetchAll(db, sql: "SELECT label, kind, entry_id FROM labels ORDER BY label")
            .map { ($0["label"], LabelKind(rawValue: $0["kind"]) ?? .tag, $0["entry_id"]) }
    }

    /// Adds a label row; a name is also copied into its entry's row (`entries.name`, which `list` reads).
    static func addLabel(_ label: String, kind: LabelKind, id: String, _ db: Database) throws {
        try db.execute(sql: "INSERT INTO labels (label, kind, entry_id) VALUES (?, ?, ?)", arguments: [label, kind.rawValue, id])
        if kind == .name { try db.execute(sql: "UPDATE entries SET name = ? WHERE id = ?", arguments: [label, id]) }
    }

    /// Removes a label row (and a name's copy in its entry's row).
    static func removeLabel(_ label: String, _ db: Database) throws {
        try db.execute(sql: "UPDATE entries SET name = NULL WHERE id = (SELECT entry_id FROM labels WHERE label = ? AND kind = 'name')",
                       arguments: [label])
        try db.execute(sql: "DELETE FROM labels WHERE label = ?", arguments: [label])
    }

    // MARK: - lineage and tombstones

    /// Entries (listed or not) that name `id` as a parent.
    static func children(of id: String, _ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT DISTINCT child FROM edges WHERE parent = ? ORDER BY child", arguments: [id])
    }

    static func edges(from child: String, _ db: Database) throws -> [Provenance.Parent] {
        try Row.fetchAll(db, sql: "SELECT parent, relation, note FROM edges WHERE child = ? ORDER BY position", arguments: [child])
            .map { Provenance.Parent(id: $0["parent"], relation: $0["relation"], note: $0["note"]) }
    }

    static func insert(_ t: Tombstone, _ db: Database) throws {
        try db.execute(sql: """
            INSERT OR REPLACE INTO tombstones (id, stage, method, arch, labels, removed_at, provenance) VALUES (?, ?, ?, ?, ?, ?, ?)
            """, arguments: [t.id, t.stage, t.method, t.arch, t.labels.joined(separator: "\n"), t.removedAt, EntrySummary.json(t.provenance)])
        try db.execute(sql: "DELETE FROM edges WHERE child = ?", arguments: [t.id])
        for (position, parent) in t.provenance.parents.enumerated() {
            try db.execute(sql: "INSERT INTO edges (child, parent, relation, note, position) VALUES (?, ?, ?, ?, ?)",
                           arguments: [t.id, parent.id, parent.relation, parent.note, position])
        }
    }

    static func tombstone(_ id: String, _ db: Database) throws -> Tombstone? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM tombstones WHERE id = ?", arguments: [id]),
              let provenance = EntrySummary.decodeProvenance(row["provenance"]) else { return nil }
        return Tombstone(id: row["id"], stage: row["stage"], method: row["method"], arch: row["arch"],
                         labels: (row["labels"] as String).split(separator: "\n").map(String.init),
                         removedAt: row["removed_at"], provenance: provenance)
    }

    static func allTombstoneIDs(_ db: Database) throws -> Set<String> {
        Set(try String.fetchAll(db, sql: "SELECT id FROM tombstones"))
    }

    /// Empties every table (for `reindex`), keeping the schema.
    static func clear(_ db: Database) throws {
        for table in ["verified", "labels", "edges", "metrics", "entries", "tombstones"] { try db.execute(sql: "DELETE FROM \(table)") }
    }

    // MARK: - verified objects

    /// Records the file facts of a listed entry's object whose content id was just verified.
    static func recordVerified(_ id: String, _ status: FileStatus, _ db: Database) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO verified (id, size, device, inode, mtime_ns, ctime_ns) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [id, status.size, Int64(bitPattern: status.device), Int64(bitPattern: status.inode),
                                   status.modifiedNanoseconds, status.changedNanoseconds])
    }

    /// Sets the `details` of a row that has none (written before schema version 2).
    static func fillDetails(_ id: String, _ details: EntryDetails?, _ db: Database) throws {
        try db.execute(sql: "UPDATE entries SET details = ? WHERE id = ? AND details IS NULL",
                       arguments: [details.map(EntryDetails.json), id])
    }

    /// The file facts recorded when the object of `id` was last verified; nil when never.
    static func verified(_ id: String, _ db: Database) throws -> FileStatus? {
        guard let row = try Row.fetchOne(db, sql: "SELECT size, device, inode, mtime_ns, ctime_ns FROM verified WHERE id = ?",
                                         arguments: [id]) else { return nil }
        return FileStatus(size: row[0], device: UInt64(bitPattern: row[1] as Int64), inode: UInt64(bitPattern: row[2] as Int64),
                          modifiedNanoseconds: row[3], changedNanoseconds: row[4])
    }
}

/// Filters of `bissl list` (all optional; given ones must all hold).
public struct ListFilter: Sendable, Equatable {
    public var stage: String?
    public var method: String?
    /// An architecture label (`resnet50`) or its start before a `-` (`resnet18` matches `resnet18-w8-small`).
    public var arch: String?
    /// A substring of the headline dataset URI.
    public var dataset: String?
    /// A label or glob pattern (`best-*`) matching one of the entry's name or tags.
    public var tag: String?
    /// Only these ids.
    public var ids: [String]?

    public init(stage: String? = nil, method: String? = nil, arch: String? = nil, dataset: String? = nil, tag: String? = nil, ids: [String]? = nil) {
        self.stage = stage
        self.method = method
        self.arch = arch
        self.dataset = dataset
        self.tag = tag
        self.ids = ids
    }
}
