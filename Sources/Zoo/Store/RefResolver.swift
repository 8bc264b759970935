import Checkpoint
import GRDB

extension Zoo {
    /// Shortest id prefix `resolve` accepts.
    public static let minimumPrefixLength = 6

    /// Resolves REF (README.md, "The zoo") to a listed entry's full id, trying in order:
    /// 1. a full 64-hex id of a listed entry;
    /// 2. a name or tag (labels never consist of 6+ hex digits, so they cannot shadow a prefix);
    /// 3. a unique id prefix of at least 6 hex digits (case-insensitive).
    /// - Throws: `ZooError.ambiguous` for a prefix several ids share (listing up to 10 of them
    ///   with their names), `ZooError.invalid` for anything else that names no entry (a removed
    ///   entry is reported as removed).
    public func resolve(_ ref: String) throws -> String {
        try catalog.read { db in try Self.resolve(ref, db, zoo: layout.root.path) }
    }

    static func resolve(_ ref: String, _ db: Database, zoo: String) throws -> String {
        let lower = ref.lowercased()
        if ZooLayout.isFullID(lower), try Catalog.exists(lower, db) { return lower }
        if let owner = try Catalog.labelOwner(ref, db) { return owner.id }
        if lower.count >= minimumPrefixLength, ZooLayout.isHex(lower) {
            let matches = try Catalog.ids(withPrefix: lower, limit: 11, db)
            if matches.count == 1 { return matches[0] }
            if matches.count > 1 {
                let shown = try matches.prefix(10).map { id -> String in
                    let name = try Catalog.labels(of: id, db).first { $0.kind == .name }?.label
                    return String(id.prefix(16)) + (name.map { " (\($0))" } ?? "")
                }
                throw ZooError.ambiguous(
                    "'\(ref)' is ambiguous: \(matches.count > 10 ? "more than 10" : "\(matches.count)") entries start with it: \(shown.joined(separator: ", "))\(matches.count > 10 ? ", ..." : ""); give more digits")
            }
            if let dead = try String.fetchOne(db, sql: "SELECT id FROM tombstones WHERE id >= ? AND id < ? LIMIT 1", arguments: [lower, lower + "g"]) {
                throw ZooError.invalid("entry \(dead.prefix(12)) was removed from the zoo (bissl lineage still shows its record)")
            }
        }
        if ZooLayout.isHex(lower) && lower.count < minimumPrefixLength {
            throw ZooError.invalid("no name or tag '\(ref)' in the zoo at \(zoo), and an id prefix needs at least \(minimumPrefixLength) hex digits")
        }
        throw ZooError.invalid("no entry, name or tag '\(ref)' in the zoo at \(zoo) (bissl list shows what is there)")
    }
}
