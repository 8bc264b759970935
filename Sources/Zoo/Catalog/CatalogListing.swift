import Foundation
import GRDB
import GRDBSQLite

/// One row of `bissl list`'s table, read straight from SQLite: each text field is a view of the
/// UTF-8 bytes SQLite holds for the current row (`sqlite3_column_text`), valid only inside the
/// `Zoo.visitListing` callback that receives it. No Swift string is made for a field the caller
/// does not turn into one, which is what makes a listing of 100,000 entries fast.
public struct ListingRow {
    /// Full content id (64 hex digits).
    public var id: UnsafeRawBufferPointer
    /// The entry's name, nil when it has none.
    public var name: UnsafeRawBufferPointer?
    public var stage: UnsafeRawBufferPointer
    public var method: UnsafeRawBufferPointer?
    /// `Architecture.label`, nil when unknown.
    public var arch: UnsafeRawBufferPointer?
    /// Id of the first parent in provenance order, nil for a root entry.
    public var firstParent: UnsafeRawBufferPointer?
    /// Number of parents.
    public var parentCount: Int
    /// Headline dataset URI (`EntrySummary.dataset`).
    public var dataset: UnsafeRawBufferPointer?
    /// Headline metric name and value (value nil for a NaN metric or when there is no metric).
    public var headlineMetric: UnsafeRawBufferPointer?
    public var headlineValue: Double?
    /// The record is carried from an imported bissl `.h5` (`EntrySummary.carried`): its metric is that file's claim.
    public var carried: Bool
    /// ISO 8601 UTC (`EntrySummary.created`).
    public var created: UnsafeRawBufferPointer
    /// Object file size in bytes.
    public var size: Int64
}

extension Zoo {
    /// Visits the listed entries matching `filter`, newest first (the order and filter of `list`),
    /// with the fields `bissl list` shows as byte views (`ListingRow`); `body` must not keep them.
    /// One query over the catalog's covering index `entries_listing`, which holds every field shown
    /// (schemas/catalog.md).
    /// - Throws: `ZooError.io` when the catalog cannot be read, whatever `body` throws.
    public func visitListing(_ filter: ListFilter = ListFilter(), _ body: (ListingRow) throws -> Void) throws {
        try catalog.visitListing(filter, body)
    }
}

extension Catalog {
    /// The `WHERE` clause (empty, or starting with `WHERE`) selecting the entries `e` that match
    /// `filter`, with its arguments. `records` and `visitListing` share it, so both list the same rows.
    static func whereClause(_ filter: ListFilter) -> (sql: String, arguments: StatementArguments) {
        var clauses: [String] = []
        var arguments: StatementArguments = []
        if let v = filter.stage { clauses.append("e.stage = ?"); arguments += [v] }
        if let v = filter.method { clauses.append("e.method = ?"); arguments += [v] }
        if let v = filter.arch { clauses.append("(e.arch = ? OR e.arch LIKE ? || '-%')"); arguments += [v, v] }
        if let v = filter.dataset { clauses.append("instr(e.dataset, ?) > 0"); arguments += [v] }
        if let v = filter.tag {
            clauses.append("EXISTS (SELECT 1 FROM labels t WHERE t.entry_id = e.id AND t.label GLOB ?)"); arguments += [v]
        }
        if let ids = filter.ids {
            clauses.append("e.id IN (\(ids.map { _ in "?" }.joined(separator: ",")))")
            arguments += StatementArguments(ids)
        }
        return (clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND "), arguments)
    }

    func visitListing(_ filter: ListFilter, _ body: (ListingRow) throws -> Void) throws {
        let copies = schemaVersion >= 4, carriedColumn = schemaVersion >= 5
        try read { db in try Self.visitListing(filter, db, path: url.path, copies: copies, carriedColumn: carriedColumn, body) }
    }

    /// - Parameter copies: the catalog has the name, first parent and parent count in each entry's
    ///   row (schema version 4); else they are looked up per row (an older catalog read as it is).
    /// - Parameter carriedColumn: the rows have `carried` (schema version 5); else it is read from
    ///   each row's provenance document.
    private static func visitListing(_ filter: ListFilter, _ db: Database, path: String, copies: Bool, carriedColumn: Bool,
                                     _ body: (ListingRow) throws -> Void) throws {
        let (whereSQL, arguments) = whereClause(filter)
        // Older catalogs: the name through the partial unique index `labels_one_name`, the first
        // parent and the parent count through the primary key of `edges` (child, position).
        let lookups = copies ? ["e.name", "e.first_parent", "e.parent_count"] : [
            "(SELECT l.label FROM labels l WHERE l.entry_id = e.id AND l.kind = 'name')",
            "(SELECT p.parent FROM edges p WHERE p.child = e.id ORDER BY p.position LIMIT 1)",
            "(SELECT count(*) FROM edges c WHERE c.child = e.id)"]
        let statement = try db.makeStatement(sql: """
            SELECT e.id, \(lookups[0]), e.stage, e.method, e.arch, \(lookups[1]), \(lookups[2]),
                   e.dataset, e.headline_metric, e.headline_value, e.created, e.size,
                   \(carriedColumn ? "e.carried" : CatalogSchema.carriedSQL(column: "e.provenance"))
            FROM entries e \(whereSQL) ORDER BY e.created DESC, e.id
            """)
        try statement.setArguments(arguments)
        let s = statement.sqliteStatement
        func text(_ column: Int32) -> UnsafeRawBufferPointer? {
            guard let p = sqlite3_column_text(s, column) else { return nil }   // NULL
            return UnsafeRawBufferPointer(start: p, count: Int(sqlite3_column_bytes(s, column)))
        }
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        while true {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                throw ZooError.io("\(path): catalog error: \(String(cString: sqlite3_errmsg(sqlite3_db_handle(s))))")
            }
            try body(ListingRow(
                id: text(0) ?? empty, name: text(1), stage: text(2) ?? empty, method: text(3), arch: text(4),
                firstParent: text(5), parentCount: Int(sqlite3_column_int64(s, 6)), dataset: text(7),
                headlineMetric: text(8),
                headlineValue: sqlite3_column_type(s, 9) == SQLITE_NULL ? nil : sqlite3_column_double(s, 9),
                carried: sqlite3_column_int64(s, 12) != 0, created: text(10) ?? empty, size: sqlite3_column_int64(s, 11)))
        }
    }
}

extension EntryRecord {
    /// Calls `body` with this record's `ListingRow` (the same fields `Zoo.visitListing` gives for
    /// a catalog row), so records from elsewhere (a remote's manifests) are shown the same way.
    public func withListingRow<T>(_ body: (ListingRow) throws -> T) rethrows -> T {
        let s = summary
        let fields: [String?] = [s.id, name, s.stage, s.method, s.arch, s.parents.first?.id, s.dataset, s.headlineMetric, s.created]
        var storage: [UInt8] = []
        var ranges: [Range<Int>?] = []
        for field in fields {
            guard let field else { ranges.append(nil); continue }
            let start = storage.count
            storage.append(contentsOf: field.utf8)
            ranges.append(start..<storage.count)
        }
        return try storage.withUnsafeBytes { raw in
            func view(_ i: Int) -> UnsafeRawBufferPointer? {
                ranges[i].map { UnsafeRawBufferPointer(rebasing: raw[$0]) }
            }
            let empty = UnsafeRawBufferPointer(start: nil, count: 0)
            return try body(ListingRow(
                id: view(0) ?? empty, name: view(1), stage: view(2) ?? empty, method: view(3), arch: view(4),
                firstParent: view(5), parentCount: s.parents.count, dataset: view(6), headlineMetric: view(7),
                headlineValue: s.headlineMetric == nil ? nil : s.headlineValue, carried: s.carried, created: view(8) ?? empty, size: s.size))
        }
    }
}
