import Checkpoint
import GRDB

/// The catalog's versioned migrations (schemas/catalog.md). The schema version is SQLite's
/// `PRAGMA user_version`; migration *n* takes the schema from version n-1 to n. `migrate` runs in one
/// `BEGIN IMMEDIATE` transaction, so processes opening a fresh zoo at the same time apply each
/// migration exactly once; a catalog whose version is above `currentVersion` is refused untouched.
enum CatalogSchema {
    /// The schema version this code writes and reads.
    static let currentVersion = 5
    /// The oldest version this code reads without migrating it (a zoo this process may not write):
    /// migration 3 adds an index only, migrations 4 and 5 copies of what `list` otherwise looks up per row
    /// (`Catalog.visitListing` reads either).
    static let oldestReadable = 2

    /// Migration n (1-based) as SQL statements.
    static let migrations: [[String]] = [
        // 1: entries, labels (names and tags), lineage edges, metrics, tombstones of removed entries.
        // `edges.child` is a listed entry or a tombstone, so lineage walks through removed entries.
        [
            """
            CREATE TABLE entries (
                id TEXT PRIMARY KEY NOT NULL,
                stage TEXT NOT NULL,
                method TEXT,
                arch TEXT,
                dataset TEXT,
                headline_metric TEXT,
                headline_value REAL,
                created TEXT NOT NULL,
                size INTEGER NOT NULL,
                tensor_count INTEGER NOT NULL,
                components TEXT NOT NULL,
                source_file TEXT,
                provenance TEXT NOT NULL
            )
            """,
            "CREATE INDEX entries_stage ON entries(stage)",
            "CREATE INDEX entries_created ON entries(created)",
            """
            CREATE TABLE labels (
                label TEXT PRIMARY KEY NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('name', 'tag')),
                entry_id TEXT NOT NULL REFERENCES entries(id) ON DELETE CASCADE
            )
            """,
            "CREATE UNIQUE INDEX labels_one_name ON labels(entry_id) WHERE kind = 'name'",
            "CREATE INDEX labels_entry ON labels(entry_id)",
            """
            CREATE TABLE edges (
                child TEXT NOT NULL,
                parent TEXT NOT NULL,
                relation TEXT NOT NULL,
                note TEXT,
                position INTEGER NOT NULL,
                PRIMARY KEY (child, position)
            )
            """,
            "CREATE INDEX edges_parent ON edges(parent)",
            """
            CREATE TABLE metrics (
                entry_id TEXT NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                value REAL,
                PRIMARY KEY (entry_id, name)
            )
            """,
            """
            CREATE TABLE tombstones (
                id TEXT PRIMARY KEY NOT NULL,
                stage TEXT NOT NULL,
                method TEXT,
                arch TEXT,
                labels TEXT NOT NULL,
                removed_at TEXT NOT NULL,
                provenance TEXT NOT NULL
            )
            """,
        ],
        // 2: `entries.details` (what `show` prints beyond the row, JSON; NULL for rows of version 1),
        // file facts of each object recorded when its content id was last verified (import, verify,
        // reindex): reads trust the object without hashing while the facts are unchanged
        // (schemas/catalog.md, "Trusted reads"). device and inode are stored as the bit patterns of
        // their unsigned values.
        [
            "ALTER TABLE entries ADD COLUMN details TEXT",
            """
            CREATE TABLE verified (
                id TEXT PRIMARY KEY NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
                size INTEGER NOT NULL,
                device INTEGER NOT NULL,
                inode INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                ctime_ns INTEGER NOT NULL
            )
            """,
        ],
        // 3: `list` answers from one index (every column it shows, in its order) instead of walking
        // the table, whose rows carry the provenance and details documents (kilobytes each);
        // `entries_created` is its prefix.
        [
            "DROP INDEX entries_created",
            """
            CREATE INDEX entries_listing ON entries(created DESC, id, stage, method, arch, dataset, headline_metric,
                                                    headline_value, size, tensor_count, components, source_file)
            """,
        ],
        // 4: the entry's name, first parent and parent count in its own row (and in `entries_listing`),
        // so `list` reads that index alone instead of three lookups per row in `labels` and `edges`
        // (two thirds of a listing's SQLite time). Parents never change (objects are immutable); the
        // name follows `Catalog.addLabel` and `removeLabel`.
        [
            "ALTER TABLE entries ADD COLUMN name TEXT",
            "ALTER TABLE entries ADD COLUMN first_parent TEXT",
            "ALTER TABLE entries ADD COLUMN parent_count INTEGER NOT NULL DEFAULT 0",
            """
            UPDATE entries SET name = (SELECT l.label FROM labels l WHERE l.entry_id = entries.id AND l.kind = 'name'),
                               first_parent = (SELECT p.parent FROM edges p WHERE p.child = entries.id AND p.position = 0),
                               parent_count = (SELECT count(*) FROM edges c WHERE c.child = entries.id)
            """,
            "DROP INDEX entries_listing",
            """
            CREATE INDEX entries_listing ON entries(created DESC, id, name, stage, method, arch, first_parent, parent_count,
                                                    dataset, headline_metric, headline_value, size, tensor_count,
                                                    components, source_file)
            """,
        ],
        // 5: whether the entry's record is carried from an imported bissl .h5 (provenance `carriedFrom`
        // not empty: its metrics are that file's claim), in its row and in `entries_listing`, so `list`
        // marks them without reading the provenance document.
        [
            "ALTER TABLE entries ADD COLUMN carried INTEGER NOT NULL DEFAULT 0",
            "UPDATE entries SET carried = \(carriedSQL(column: "provenance"))",
            "DROP INDEX entries_listing",
            """
            CREATE INDEX entries_listing ON entries(created DESC, id, name, stage, method, arch, first_parent, parent_count,
                                                    dataset, headline_metric, headline_value, carried, size, tensor_count,
                                                    components, source_file)
            """,
        ],
    ]

    /// SQL: 1 when the provenance JSON in `column` has a non-empty `carriedFrom` array, else 0
    /// (also for a document SQLite cannot parse). Reads the document: for migration 5, and for a
    /// catalog older than it read as it is.
    static func carriedSQL(column: String) -> String {
        // CASE evaluates its THEN only when json_valid holds (the JSON functions raise an error on a
        // malformed document); json_array_length is NULL for an absent key, 0 for a non-array.
        "(CASE WHEN json_valid(\(column)) THEN coalesce(json_array_length(\(column), '$.carriedFrom'), 0) > 0 ELSE 0 END)"
    }

    static func version(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
    }

    /// Refuses a catalog written by a newer schema.
    /// - Throws: `ZooError.unsupported` ("catalog written by a newer bissl (schema N > M)").
    static func checkNotNewer(_ version: Int, path: String) throws {
        if version > currentVersion {
            throw ZooError.unsupported(
                "\(path): catalog written by a newer bissl (schema \(version) > \(currentVersion)); upgrade bissl")
        }
    }

    /// Brings the schema to `currentVersion` inside the caller's IMMEDIATE transaction.
    static func migrate(_ db: Database, path: String) throws {
        let version = try self.version(db)
        try checkNotNewer(version, path: path)
        guard version < currentVersion else { return }
        for n in (version + 1)...currentVersion {
            for statement in migrations[n - 1] { try db.execute(sql: statement) }
        }
        try db.execute(sql: "PRAGMA user_version = \(currentVersion)")
    }
}
