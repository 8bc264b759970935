import Checkpoint
import Foundation

/// What `Zoo.gc` removed (or, with `dryRun`, would remove).
public struct GCReport: Codable, Equatable, Sendable {
    /// Object files the catalog did not list whose recomputed content id matches their name: listed
    /// again (never deleted), with the labels of ref files pointing at them that are free.
    public var relistedObjects: [String]
    /// Object files the catalog does not list that cannot be read or hold other content than their
    /// name says: moved aside to `damaged/` (never deleted), as `<original name>` or, beside an earlier
    /// copy, `<id>.<n>.h5` (`Zoo.moveAside`).
    public var damagedObjects: [String]
    /// Temporary, staged and trashed files of writers that are no longer running.
    public var writerLeftovers: [String]
    /// What interrupted pushes and pulls keep to resume from (schemas/remote.md, "Resuming") that
    /// made progress within the grace period: kept, so running them again still resumes.
    public var keptTransfers: [String] = []
    /// Ref files of labels the catalog does not hold (or holds for another entry or as the other kind).
    public var strayRefs: [String]
    /// Files under `refs/` that are not valid ref files (garbage content, a name that is no label),
    /// removed, each with what is wrong (`RefFiles.read`). Folders there are left alone.
    public var invalidRefs: [InvalidRef] = []

    public struct InvalidRef: Codable, Equatable, Sendable {
        public var path: String
        /// What is wrong, a clause: `it holds 'x', not an entry id; ...`.
        public var problem: String
    }
    /// Ref files rewritten for labels the catalog holds (after an interrupted untag/rm).
    public var rewrittenRefs: [String]
    /// Trashed objects put back because the catalog still lists them (interrupted rm).
    public var restoredObjects: [String]
    /// Listed entries whose object is missing, cannot be read or holds other content than its id:
    /// taken out of the catalog (their provenance and labels kept as a tombstone, so lineage still
    /// names them), the object moved to `damaged/` when there is one.
    public var damagedEntries: [DamagedEntry] = []

    public struct DamagedEntry: Codable, Equatable, Sendable {
        public var id: String
        /// What is wrong (one line).
        public var problem: String
        /// Where the object went (`damaged/<id>.h5`, or `damaged/<id>.<n>.h5` beside earlier
        /// copies: `Zoo.moveAside`), nil when it was missing.
        public var movedTo: String?
        /// The file it was imported from, when the provenance records one (re-import it to get it
        /// back, with the labels it had that are still free: `Zoo.add`).
        public var sourceFile: String?
    }
    /// Bytes freed.
    public var bytes: Int64
}

extension Zoo {
    /// Moves the damaged object file `url` of content `id` to `damaged/` (never deleted), as
    /// `<id>.h5`, or, when an earlier gc put a file there already (the same content found damaged
    /// again), as the first free `<id>.2.h5`, `<id>.3.h5`, ...: a quarantined file is never replaced.
    /// Called under the catalog's write lock, so no other gc picks the same name.
    /// - Returns: where it went (with `dryRun`, where it would go; nothing moves).
    /// - Throws: `ZooError.io` when `damaged/` cannot be made or the file cannot be moved.
    func moveAside(_ url: URL, id: String, dryRun: Bool) throws -> URL {
        var aside = layout.damaged.appendingPathComponent(id + ".h5")
        var copy = 1
        var info = stat()
        while lstat(aside.path, &info) == 0 {
            copy += 1
            aside = layout.damaged.appendingPathComponent("\(id).\(copy).h5")
        }
        if !dryRun {
            try Self.makeDirectories(layout.damaged, zoo: layout.root)
            guard rename(url.path, aside.path) == 0 else {
                throw ZooError.io("cannot move the damaged object \(url.path) aside: \(String(cString: strerror(errno)))")
            }
        }
        return aside
    }

    /// A reader's error text without its "; run bissl verify" advice (verify and gc are where it leads).
    static func withoutVerifyHint(_ message: String) -> String {
        message.replacingOccurrences(of: "; run bissl verify", with: "")
    }

    /// Repairs what no catalog row accounts for, and takes damaged entries out of the catalog. An unlisted object whose content id verifies (an
    /// import killed before its commit, a lost catalog) is listed again, with the labels of ref files
    /// naming it when they are free; an unlisted object that cannot be read or fails verification is
    /// moved to `damaged/`. Complete objects are never deleted. Deleted: files of writers no longer running (`tmp/`, AtomicFile temporaries, `trash/`), and
    /// ref files of labels the catalog does not hold; rewrites missing ref files of held labels and
    /// puts back a trashed object the catalog still lists. A listed entry whose object is missing or
    /// fails verification (every listed object is read) is unlisted with a tombstone and its object
    /// moved to `damaged/` (`GCReport.damagedEntries`). Runs under the catalog's write lock, so a
    /// running import's object is never taken for a leftover; files carrying the pid of a running
    /// process, and files a writer holds a lock on (`TemporaryFileLock`: a running import's staged
    /// file, whichever pid namespace or NFS client it runs in), are kept. The record of an
    /// interrupted push or pull (`TransferRecords`) is removed only once it has made no progress for
    /// `transferGrace` seconds: until then it is kept (`GCReport.keptTransfers`) and running the
    /// push or pull again resumes from it.
    /// - Parameters:
    ///   - dryRun: report without changing anything.
    ///   - transferGrace: seconds since an interrupted transfer last wrote its record or bytes
    ///     after which it is discarded (0: discard every one whose process has ended).
    public func gc(dryRun: Bool = false, transferGrace: TimeInterval = 24 * 3600) throws -> GCReport {
        try requireWritable()
        try layout.requireOwnFolders("bissl gc")
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
                        throw ZooError.io("cannot remove \(url.path): \(Self.reason(error))")
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
                    report.damagedObjects.append(try moveAside(url, id: id, dryRun: dryRun).path)
                }
            }
            for (id, url) in scan.trash.sorted(by: { $0.key < $1.key }) {
                if listed.contains(id) && !FileManager.default.fileExists(atPath: layout.objectURL(id).path) {
                    if !dryRun && rename(url.path, layout.objectURL(id).path) != 0 {
                        throw ZooError.io("cannot restore \(url.path): \(String(cString: strerror(errno)))")
                    }
                    report.restoredObjects.append(layout.objectURL(id).path)
                } else {
                    try delete(url)
                    report.writerLeftovers.append(url.path)
                }
            }
            // Listed entries whose object is gone or damaged (reads every listed object).
            for id in listed.sorted() where !relisted.contains(id) {
                let url = layout.objectURL(id)
                var problem: String?
                if !FileManager.default.fileExists(atPath: url.path) {
                    if report.restoredObjects.contains(url.path) { continue }
                    problem = "object file is missing"
                } else {
                    do { _ = try self.checkpoint(id, rehash: true) } catch {
                        problem = Self.withoutVerifyHint(String(describing: error))
                    }
                }
                guard let problem else { continue }
                let source = try Catalog.records(ListFilter(ids: [id]), db).first?.summary.sourceFile
                var movedTo: String?
                if FileManager.default.fileExists(atPath: url.path) {
                    movedTo = try moveAside(url, id: id, dryRun: dryRun).path
                }
                if !dryRun {
                    let labels = try Catalog.labels(of: id, db)
                    try unlist(id, tombstone: true, damage: problem, db)
                    for (label, kind) in labels { try RefFiles.remove(label, kind: kind, layout: layout) }
                }
                report.damagedEntries.append(.init(id: id, problem: problem, movedTo: movedTo, sourceFile: source))
            }
            let cutoff = Date().addingTimeInterval(-transferGrace)
            for (url, pid) in scan.leftovers where !ZooScan.isAlive(pid) {
                if TransferRecords.describeResumable(url) != nil, let last = TransferRecords.lastProgress(url), last > cutoff {
                    report.keptTransfers.append(url.path)
                    continue
                }
                // A writer that still runs holds a lock on its file, also from another pid namespace
                // or NFS client where its pid means nothing here (TemporaryFileLock): kept.
                try TemporaryFileLock.removeIfUnlocked(url) {
                    try delete(url)
                    report.writerLeftovers.append(url.path)
                }
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
                if let owner = byLabel[ref.label], owner.0 == ref.kind, owner.1 == ref.id, ref.problem == nil {
                    present.insert(ref.label)
                    continue
                }
                if ref.problem == "it is a folder" { continue }   // not ours to delete recursively; verify reports it
                try delete(ref.url)
                if let problem = ref.problem {
                    report.invalidRefs.append(.init(path: ref.url.path, problem: problem))
                } else {
                    report.strayRefs.append(ref.url.path)
                }
            }
            for (label, kind, id) in labels where !present.contains(label) {
                if !dryRun { try RefFiles.write(label, kind: kind, id: id, layout: layout) }
                report.rewrittenRefs.append(layout.refURL(label, kind: kind).path)
            }
            return report
        }
    }
}
