import Checkpoint
import Foundation

/// What `Zoo.reindex` rebuilt.
public struct ReindexReport: Codable, Equatable, Sendable {
    /// Entries listed after the rebuild.
    public var entries: Int
    public var labels: Int
    public var tombstones: Int
    /// Object files, ref files and tombstones left out, with the reason (they stay on disk).
    public var skipped: [String]
    /// Set when a damaged catalog file was moved aside to this path before rebuilding.
    public var movedAside: String?
}

extension Zoo {
    /// Rebuilds the catalog from the files alone: every object file whose recomputed content id
    /// matches its name becomes an entry (rows derived as `EntrySummary` does), every ref file pointing
    /// at one becomes its name or tag, every tombstone file a tombstone. Runs in one transaction:
    /// readers see the old catalog until it commits. A catalog SQLite cannot open as a database is
    /// first moved aside (`catalog.sqlite.damaged-<time>`).
    /// - Throws: `ZooError.unsupported` for a catalog of a newer schema (left untouched),
    ///   `.io` when the zoo does not exist or cannot be written.
    public static func reindex(_ layout: ZooLayout) throws -> ReindexReport {
        try reindex(layout, onlyIfEmpty: false)!
    }

    /// `reindex`; with `onlyIfEmpty`, does nothing and returns nil when, under the write lock, the
    /// catalog already lists entries (another process rebuilt it first).
    static func reindex(_ layout: ZooLayout, onlyIfEmpty: Bool) throws -> ReindexReport? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: layout.objects.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ZooError.io("no zoo at \(layout.root.path) (no objects/ directory)")
        }
        var movedAside: String?
        let zoo: Zoo
        do {
            zoo = try Zoo.openCatalog(layout, create: true)
        } catch ZooError.corrupt {
            let aside = layout.catalog.path + ".damaged-\(Int(Date().timeIntervalSince1970))"
            guard rename(layout.catalog.path, aside) == 0 else {
                throw ZooError.io("cannot move the damaged catalog aside: \(String(cString: strerror(errno)))")
            }
            unlink(layout.catalog.path + "-wal")
            unlink(layout.catalog.path + "-shm")
            movedAside = aside
            zoo = try Zoo.openCatalog(layout, create: true)
        }
        defer { try? zoo.close() }
        guard var report = try zoo.rebuild(onlyIfEmpty: onlyIfEmpty) else { return nil }
        report.movedAside = movedAside
        return report
    }

    private func rebuild(onlyIfEmpty: Bool) throws -> ReindexReport? {
        try requireWritable()
        return try catalog.write { db -> ReindexReport? in
            if onlyIfEmpty, try !Catalog.allIDs(db).isEmpty { return nil }
            try Catalog.clear(db)
            let scan = ZooScan(layout)
            var skipped: [String] = []
            var indexed = Set<String>()
            for (id, url) in scan.objects.sorted(by: { $0.key < $1.key }) {
                do {
                    let (checkpoint, hashed) = try load(id, rehash: true)
                    let attributes = try objectAttributes(id)
                    try Catalog.insert(EntrySummary(id: id, checkpoint: checkpoint, size: attributes.size, modified: attributes.modified), db)
                    if let hashed { try Catalog.recordVerified(id, hashed, db) }
                    indexed.insert(id)
                } catch {
                    skipped.append("\(url.path): \(error)")
                }
            }
            var labelCount = 0
            // Names first, so an entry's name wins over a tag file of the same label.
            for ref in RefFiles.all(layout: layout).sorted(by: { ($0.kind == .name ? 0 : 1, $0.label) < ($1.kind == .name ? 0 : 1, $1.label) }) {
                if let problem = ref.problem { skipped.append("\(ref.url.path): not a valid ref file: \(problem)"); continue }
                guard let id = ref.id, indexed.contains(id) else {
                    skipped.append("\(ref.url.path): points at no listed entry"); continue
                }
                if try Catalog.labelOwner(ref.label, db) != nil {
                    skipped.append("\(ref.url.path): label already used as a name"); continue
                }
                if ref.kind == .name, try Catalog.labels(of: id, db).contains(where: { $0.kind == .name }) {
                    skipped.append("\(ref.url.path): entry \(id.prefix(12)) already has a name"); continue
                }
                try Catalog.addLabel(ref.label, kind: ref.kind, id: id, db)
                labelCount += 1
            }
            var tombstoneCount = 0
            for (id, url) in scan.tombstones.sorted(by: { $0.key < $1.key }) where !indexed.contains(id) {
                do {
                    try Catalog.insert(try TombstoneFile.read(url), db)
                    tombstoneCount += 1
                } catch {
                    skipped.append("\(url.path): \(error)")
                }
            }
            return ReindexReport(entries: indexed.count, labels: labelCount, tombstones: tombstoneCount, skipped: skipped)
        }
    }
}
