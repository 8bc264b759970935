import Checkpoint
import Foundation
import GRDB

/// What `Zoo.remove` did.
public struct RemoveResult: Codable, Equatable, Sendable {
    public var id: String
    /// Labels the entry had (now free).
    public var labels: [String]
    /// Listed entries that name it as a parent; non-empty only with `force`.
    public var descendants: [String]
    /// True when a tombstone (`tombstones/<id>.json`) keeps its provenance for those descendants.
    public var tombstone: Bool
    /// Files at its labels' ref paths that are not the ref files bissl writes for it: kept
    /// (`RefFiles.remove`).
    public var keptRefs: [KeptRef] = []
}

extension Zoo {
    /// Removes an entry: its catalog rows, labels, ref files and object file.
    ///
    /// An entry that listed entries name as a parent is refused unless `force`. When forced, the
    /// removed entry's provenance, stage, method, architecture and labels are kept in
    /// `tombstones/<id>.json` (and the catalog table `tombstones`), so `lineage` and `show` of its
    /// descendants still say what their parent was; the descendants' own objects are immutable and
    /// keep naming its id.
    ///
    /// The object is moved to `trash/` inside the transaction and deleted after the commit, so a
    /// concurrent import of the same content never loses its freshly placed object.
    /// Its ref files are removed only when they are the ones bissl writes (`RefFiles.remove`);
    /// anything else at their paths is kept (`RemoveResult.keptRefs`).
    /// - Throws: `ZooError.invalid` for an unknown REF or (without `force`) an entry with
    ///   descendants, listing them; `ZooError.unsupported` when the entry has labels and `refs/` or
    ///   `refs/<kind>` is a symbolic link (nothing changes).
    public func remove(_ ref: String, force: Bool = false) throws -> RemoveResult {
        try requireWritable()
        var trashed: URL?
        let result: RemoveResult = try catalog.write { db in
            let id = try Self.resolve(ref, db, zoo: layout.root.path)
            let children = try Catalog.children(of: id, db).filter { try $0 != id && Catalog.exists($0, db) }
            let labels = try Catalog.labels(of: id, db)
            if !labels.isEmpty { try layout.requireOwnRefFolders() }  // before anything changes
            if !children.isEmpty && !force {
                let shown = try children.prefix(5).map { child -> String in
                    let name = try Catalog.labels(of: child, db).first { $0.kind == .name }?.label
                    return String(child.prefix(12)) + (name.map { " (\($0))" } ?? "")
                }
                throw ZooError.invalid(
                    "entry \(id.prefix(12)) has \(children.count) descendant\(children.count == 1 ? "" : "s") (\(shown.joined(separator: ", "))\(children.count > 5 ? ", ..." : "")); bissl rm --force removes it and keeps its provenance as a tombstone")
            }
            try unlist(id, tombstone: !children.isEmpty, db)
            let object = layout.objectURL(id)
            let trash = layout.trash.appendingPathComponent("\(id).\(getpid()).h5")
            if rename(object.path, trash.path) == 0 {
                trashed = trash
            } else if errno != ENOENT {
                throw ZooError.io("cannot remove \(object.path): \(String(cString: strerror(errno)))")
            }
            let kept = try labels.compactMap { try RefFiles.remove($0.label, kind: $0.kind, id: id, layout: layout) }
            return RemoveResult(id: id, labels: labels.map(\.label), descendants: children, tombstone: !children.isEmpty, keptRefs: kept)
        }
        if let trashed { unlink(trashed.path) }
        return result
    }
}

extension Zoo {
    /// Deletes `id`'s catalog row (inside a write transaction); with `tombstone`, keeps its record
    /// (provenance from the catalog row, labels) in `tombstones/` and the catalog first.
    /// - Throws: `ZooError.corrupt` when a tombstone is wanted and the row's provenance is unreadable.
    /// - Parameter damage: with `tombstone`, why `gc` unlists the entry (recorded as `Tombstone.damage`).
    func unlist(_ id: String, tombstone: Bool, damage: String? = nil, _ db: Database) throws {
        guard tombstone else { return try Catalog.delete(id, db) }
        let record = try Catalog.records(ListFilter(ids: [id]), db)[0]
        guard let provenance = EntrySummary.decodeProvenance(record.summary.provenanceJSON) else {
            throw ZooError.corrupt("catalog row of \(id.prefix(12)) holds unreadable provenance; run bissl verify --reindex")
        }
        let labels = try Catalog.labels(of: id, db)
        let t = Tombstone(
            id: id, stage: record.summary.stage, method: record.summary.method, arch: record.summary.arch,
            labels: labels.map(\.label), removedAt: ISO8601DateFormatter().string(from: Date()), provenance: provenance,
            name: labels.first { $0.kind == .name }?.label, damage: damage)
        try TombstoneFile.write(t, layout: layout)
        try Catalog.delete(id, db)
        try Catalog.insert(t, db)
    }
}

/// `tombstones/<id>.json`: a removed entry's record, JSON with sorted keys.
enum TombstoneFile {
    static func write(_ t: Tombstone, layout: ZooLayout) throws {
        let encoder = JSONEncoder.bissl(pretty: true)
        try AtomicFile.write(try encoder.encode(t), to: layout.tombstoneURL(t.id))
    }

    static func read(_ url: URL) throws -> Tombstone {
        let decoder = JSONDecoder.bissl()
        do {
            return try decoder.decode(Tombstone.self, from: try Data(contentsOf: url))
        } catch {
            throw ZooError.corrupt("\(url.path): not a valid tombstone record")
        }
    }
}
