import Checkpoint
import Foundation

/// What `Zoo.gc` removed (or, with `dryRun`, would remove).
public struct GCReport: Codable, Equatable, Sendable {
    /// Object files the catalog did not list whose recomputed content id matches their name: listed
    /// again (never deleted), with the labels of ref files pointing at them that are free.
    public var relistedObjects: [String]
    /// Object files the catalog does not list that cannot be read or hold other content than their
    /// name says: moved aside to `damaged/` (never deleted), as `<original name>`.
    public var damagedObjects: [String]
    /// Temporary, staged and trashed files of writers that are no longer running.
    public var writerLeftovers: [String]
    /// Ref files of labels the catalog does not hold.
    public var strayRefs: [String]
    /// Ref files rewritten for labels the catalog holds (after an interrupted untag/rm).
    public var rewrittenRefs: [String]
    /// Trashed objects put back because the catalog still lists them (interrupted rm).
    public var restoredObjects: [String]
    /// Bytes freed.
    public var bytes: Int64
}

extension Zoo {
    /// Repairs what no catalog row accounts for. An unlisted object whose content id verifies (an
    /// import killed before its commit, a lost catalog) is listed again, with the labels of ref files
    /// naming it when they are free; an unlisted object that cannot be read or fails verification is
    /// moved to `damaged/`. Complete objects are never deleted. Deleted: files of writers no longer running (`tmp/`, AtomicFile temporaries, `trash/`), and
    /// ref files of labels the catalog does not hold; rewrites missing ref files of held labels and
    /// puts back a trashed object the catalog still lists. Runs under the catalog's write lock, so a
    /// running import's object is never taken for a leftover; files carrying the pid of a running
    /// process are kept.
    /// - Parameter dryRun: report without changing anything.
    public func gc(dryRun: Bool = false) throws -> GCReport {
        try requireWritable()
        return try catalog.write { db in
            let scan = ZooScan(layout)
            var listed = try Catalog.allIDs(db)
            var report = GCReport(relistedObjects: [], damagedObjects: [], writerLeftovers: [], strayRefs: [], rewrittenRefs: [], restoredObjects: [], bytes: 0)
            func size(_ url: URL) -> Int64 {
                ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
            }
            func delete(_ url: URL) throws {
                let bytes = size(url)
                if !dryRun {
                    do { try FileManager.default.removeItem(at: url) } catch {
                        throw CheckpointError.io("cannot remove \(url.path): \(Self.reason(error))")
                    }
                }
                report.bytes += bytes
            }
            var relisted = Set<String>()
            for (id, url) in scan.objects.sorted(by: { $0.key < $1.key }) where !listed.contains(id) {
                do {
                    let (checkpoint, hashed) = try load(id, rehash: true)
                    let attributes = try objectAttributes(id)
                    if !dryRun {
                        try Catalog.insert(EntrySummary(id: id, checkpoint: checkpoint, size: attributes.size, modified: attributes.modified), db)
                        if let hashed { try Catalog.recordVerified(id, hashed, db) }
                        listed.insert(id)
                    }
                    relisted.insert(id)
                    if !dryRun { unlink(layout.tombstoneURL(id).path) }  // listed again: its tombstone is obsolete
                    report.relistedObjects.append(url.path)
                } catch {
                    let aside = layout.damaged.appendingPathComponent(id + ".h5")
                    if !dryRun {
                        try Self.makeDirectories(layout.damaged, zoo: layout.root)
                        guard rename(url.path, aside.path) == 0 else {
                            throw CheckpointError.io("cannot move the damaged object \(url.path) aside: \(String(cString: strerror(errno)))")
                        }
                    }
                    report.damagedObjects.append(aside.path)
                }
            }
            for (id, url) in scan.trash.sorted(by: { $0.key < $1.key }) {
                if listed.contains(id) && !FileManager.default.fileExists(atPath: layout.objectURL(id).path) {
                    if !dryRun && rename(url.path, layout.objectURL(id).path) != 0 {
                        throw CheckpointError.io("cannot restore \(url.path): \(String(cString: strerror(errno)))")
                    }
                    report.restoredObjects.append(layout.objectURL(id).path)
                } else {
                    try delete(url)
                    report.writerLeftovers.append(url.path)
                }
            }
            for (url, pid) in scan.leftovers where !ZooScan.isAlive(pid) {
                try delete(url)
                report.writerLeftovers.append(url.path)
            }
            // Free labels whose ref files name a relisted entry go back to it (names first).
            var relabeled = Set<String>()
            if !relisted.isEmpty {
                let refs = RefFiles.all(layout: layout).filter { $0.id.map(relisted.contains) ?? false }
                    .sorted { ($0.kind == .name ? 0 : 1, $0.label) < ($1.kind == .name ? 0 : 1, $1.label) }
                for ref in refs where (try? LabelRules.validate(ref.label)) != nil {
                    guard let id = ref.id, try Catalog.labelOwner(ref.label, db) == nil else { continue }
                    if ref.kind == .name, try Catalog.labels(of: id, db).contains(where: { $0.kind == .name }) { continue }
                    if !dryRun { try Catalog.addLabel(ref.label, kind: ref.kind, id: id, db) }
                    relabeled.insert(ref.label)
                }
            }
            let labels = try Catalog.allLabels(db)
            let byLabel = Dictionary(labels.map { ($0.label, ($0.kind, $0.id)) }, uniquingKeysWith: { a, _ in a })
            var present = Set<String>()
            for ref in RefFiles.all(layout: layout) {
                if relabeled.contains(ref.label) { present.insert(ref.label); continue }
                if let owner = byLabel[ref.label], owner.0 == ref.kind, owner.1 == ref.id {
                    present.insert(ref.label)
                    continue
                }
                try delete(ref.url)
                report.strayRefs.append(ref.url.path)
            }
            for (label, kind, id) in labels where !present.contains(label) {
                if !dryRun { try RefFiles.write(label, kind: kind, id: id, layout: layout) }
                report.rewrittenRefs.append(layout.refURL(label, kind: kind).path)
            }
            return report
        }
    }
}
