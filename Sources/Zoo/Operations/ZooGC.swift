import Checkpoint
import Foundation

/// What `Zoo.gc` removed (or, with `dryRun`, would remove).
public struct GCReport: Codable, Equatable, Sendable {
    /// Object files the catalog does not list.
    public var unlistedObjects: [String]
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
    /// Removes what no catalog row accounts for: unlisted objects (an import killed before its
    /// commit), files of writers no longer running (`tmp/`, AtomicFile temporaries, `trash/`), and
    /// ref files of labels the catalog does not hold; rewrites missing ref files of held labels and
    /// puts back a trashed object the catalog still lists. Runs under the catalog's write lock, so a
    /// running import's object is never taken for a leftover; files carrying the pid of a running
    /// process are kept.
    /// - Parameter dryRun: report without changing anything.
    public func gc(dryRun: Bool = false) throws -> GCReport {
        try requireWritable()
        return try catalog.write { db in
            let scan = ZooScan(layout)
            let listed = try Catalog.allIDs(db)
            var report = GCReport(unlistedObjects: [], writerLeftovers: [], strayRefs: [], rewrittenRefs: [], restoredObjects: [], bytes: 0)
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
            for (id, url) in scan.objects.sorted(by: { $0.key < $1.key }) where !listed.contains(id) {
                try delete(url)
                report.unlistedObjects.append(url.path)
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
            let labels = try Catalog.allLabels(db)
            let byLabel = Dictionary(labels.map { ($0.label, ($0.kind, $0.id)) }, uniquingKeysWith: { a, _ in a })
            var present = Set<String>()
            for ref in RefFiles.all(layout: layout) {
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
