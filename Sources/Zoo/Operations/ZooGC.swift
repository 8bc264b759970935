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
    /// Removed: temporaries no writer holds a lock on (`TemporaryFileLock`; AtomicFile's, ZIP
    /// writers', staged imports'), trashed objects, and what interrupted transfers kept that made no
    /// progress for the grace period.
    public var writerLeftovers: [String]
    /// What interrupted pushes and pulls keep to resume from (schemas/remote.md, "Resuming") that
    /// made progress within the grace period: kept, so running them again still resumes.
    public var keptTransfers: [String] = []
    /// Ref files naming no entry the zoo lists (what an interrupted import or rm left): a valid
    /// label's file holding a full entry id, as bissl writes them. A valid ref naming a listed entry
    /// is a record of its label and is never removed: adopted (`adoptedRefs`) or, when the catalog
    /// holds the label otherwise, kept (`kept`). Anything else under `refs/` (garbage content, a
    /// name that is no label, a symbolic link, a folder) is kept too.
    public var strayRefs: [String]
    /// Ref files rewritten for labels the catalog holds (after an interrupted untag/rm).
    public var rewrittenRefs: [String]
    /// Valid ref files of labels the catalog does not hold naming an entry it lists (an interrupted
    /// tag or import): ref files are the durable record of labels, so the label goes into the catalog,
    /// as `bissl verify --reindex` does (a name only for an entry without one; a name ref for an
    /// entry named otherwise is kept, `kept`).
    public var adoptedRefs: [String] = []
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
    /// What gc found and kept because it cannot show that it is a leftover of bissl's writers:
    /// anything in the zoo's folders that no writer names so (a user's `README.txt` in `objects/` or
    /// `refs/`, a folder in `tmp/`), a file under `refs/names` or `refs/tags` that is not a ref file
    /// as bissl writes them (`RefFiles.read`: garbage content, a name that is no label, a symbolic
    /// link, a folder), a valid ref file naming a listed entry for a label the catalog holds as the
    /// other kind or for another entry (`conflictingRefReason`), a temporary it cannot lock, a
    /// transfer that changed within the grace period and cannot be resumed.
    public var kept: [KeptFile] = []

    public struct KeptFile: Codable, Equatable, Sendable {
        public var path: String
        /// Why it is kept, a clause.
        public var reason: String
    }

    /// What gc could not do (a file it could not remove, move or write), one line each; the rest of
    /// the run went on, and everything above happened.
    public var failures: [String] = []

    /// Bytes freed: the disk space the removed files occupied (`st_blocks`; less than a sparse file's size).
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

    /// Why something no writer of bissl names so is kept, a clause for `GCReport.kept` and `verify`.
    static func foreignReason(_ url: URL) -> String {
        var info = stat()
        let what = lstat(url.path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR ? "a folder" : "a file"
        return "\(what) that no bissl writer makes here (not an object, ref, temporary, transfer or trashed object): gc never removes it; move it out of the zoo if it is yours"
    }

    /// Why a file under `refs/names` or `refs/tags` that is not a ref file as bissl writes them is
    /// kept, a clause for `GCReport.kept` and `verify`: bissl cannot tell that it wrote it (a damaged
    /// ref and a user's `notes.txt` look alike), so only the user removes it.
    /// - Parameters:
    ///   - problem: what is wrong with it (`RefFiles.read`).
    ///   - held: the catalog holds `label` as a label of this `kind` (its ref file belongs there).
    static func invalidRefReason(_ problem: String, label: String, kind: LabelKind, held: Bool) -> String {
        "not a ref file bissl writes (\(problem)): gc never removes it; " + (held
            ? "move it out of the zoo if it is yours and run bissl gc again (it rewrites the ref of \(kind.rawValue) '\(label)'); to drop the \(kind.rawValue) instead, bissl untag \(label) (which keeps this file) and remove the file by hand"
            : "move it out of the zoo if it is yours, else remove it by hand")
    }

    /// Why a valid ref file of `label` naming entry `id`, which the zoo lists, is kept while the label
    /// is held otherwise (`holder`: as the other kind, or as this kind of another entry), a clause
    /// for `GCReport.kept` and `verify`: ref files are the record of labels, so neither record is
    /// dropped (nor a held label's ref rewritten over this one) until the user says which is right.
    /// Removing this file keeps the catalog's label; `untag` frees the label (keeping this file when
    /// it is at the held label's path: `RefFiles.remove`), and gc then gives it to `id` as
    /// `verify --reindex` would; for a name ref, only once `id` has no other name (an entry has one
    /// name, and gc does not adopt a second), so when it has one (`name`) that is untagged too.
    /// - Parameter name: the name entry `id` holds when this is a name ref (nil otherwise).
    static func conflictingRefReason(label: String, kind: LabelKind, id: String, holder: (kind: LabelKind, id: String), name: String?) -> String {
        let other = String(id.prefix(12))
        let samePath = holder.kind == kind
        let named = kind == .name ? name : nil
        return "ref file of \(kind.rawValue) '\(label)' naming entry \(other), but the catalog holds '\(label)' as the \(holder.kind.rawValue) of entry \(holder.id.prefix(12)): "
            + "gc never removes it (ref files are the record of labels)\(samePath ? " nor rewrites it" : ""); "
            + "to keep the catalog's \(holder.kind.rawValue), remove this file by hand\(samePath ? " and run bissl gc (it rewrites the ref)" : ""); "
            + "to give '\(label)' to \(other) as its \(kind.rawValue) instead"
            + (named.map { " (it is named '\($0)', and an entry has one name)" } ?? "")
            + ", bissl untag \(label)\(samePath ? " (which keeps this file)" : "")"
            + (named.map { ", bissl untag \($0) (the entry stays, unnamed)" } ?? "")
            + ", then bissl gc (it adds the label from this file, as bissl verify --reindex does)"
    }

    /// Why a valid ref file of name `label` naming entry `id`, which the zoo lists and which holds
    /// the name `name` (an entry has one name), is kept while the catalog does not hold `label`, a
    /// clause for `GCReport.kept` and `verify`: each way out names the commands that do it.
    static func secondNameReason(label: String, id: String, name: String) -> String {
        let short = String(id.prefix(12))
        return "ref file of name '\(label)' for entry \(short), which is named '\(name)' (an entry has one name): gc never removes it; "
            + "to drop '\(label)', remove this file by hand; to make '\(label)' a tag of \(short), remove this file by hand, then bissl tag \(short) \(label); "
            + "to make '\(label)' its name instead, bissl untag \(name) (the entry stays, unnamed), then bissl gc (it adds the label from this file, as bissl verify --reindex does)"
    }

    /// A reader's error text without its "; run bissl verify" advice (verify and gc are where it leads).
    static func withoutVerifyHint(_ message: String) -> String {
        message.replacingOccurrences(of: "; run bissl verify", with: "")
    }

    /// Repairs what no catalog row accounts for, and takes damaged entries out of the catalog. An
    /// unlisted object whose content id verifies (an import killed before its commit, a lost catalog)
    /// is listed again, with the labels of ref files naming it when they are free; an unlisted object
    /// that cannot be read or fails verification is moved to `damaged/`. Complete objects are never
    /// deleted. A listed entry whose object is missing or fails verification (every listed object is
    /// read) is unlisted with a tombstone and its object moved to `damaged/`
    /// (`GCReport.damagedEntries`); a trashed object the catalog still lists is put back; missing
    /// ref files of held labels are rewritten; a valid ref file naming a listed entry is adopted when
    /// the catalog does not hold its label (`GCReport.adoptedRefs`) and kept, named, when it holds the
    /// label as the other kind or for another entry (a record of the label either way: the user
    /// settles which is right); one naming no listed entry is removed. A file under `refs/` that is
    /// not a ref file as bissl writes them is kept, and a held label's ref is not rewritten over it
    /// or over a kept valid one.
    ///
    /// Removed, and only these (`ZooScan` sorts the zoo's files by name): a writer's temporary (a
    /// regular file named `.<name>.tmp-<pid>-<n>` or `.zip-`, whatever its pid: pids are reused) while this
    /// process holds an exclusive lock on it: every writer holds a lock on its temporary from its
    /// creation until it is renamed or removed (`TemporaryFileLock`), whichever pid namespace or NFS
    /// client it runs in, so the lock proves the writer gone and no grace period is needed; a
    /// trashed object (`trash/<id>.<pid>.h5`, committed as removed); what an interrupted push or pull
    /// keeps (`tmp/<sha256>.<pid>.pull`, `.push`) once it has made no progress for `transferGrace`
    /// seconds (these are not locked: until then it is kept, `GCReport.keptTransfers` when running
    /// the transfer again resumes it), or at once for a pull of an entry the zoo holds already (another
    /// pull or an import brought it), a pull folder only with nothing in it but what a pull writes.
    /// Anything else in the zoo's folders (a user's file, a folder, a temporary that cannot be
    /// locked) is kept and named (`GCReport.kept`). Runs under the catalog's write lock, so a
    /// running import's object is never taken for a leftover. A file that cannot be removed, moved
    /// or written is named in `GCReport.failures` and the run goes on, so the report says everything
    /// that was done.
    /// - Parameters:
    ///   - dryRun: report without changing anything.
    ///   - transferGrace: seconds since an interrupted transfer last wrote its record or bytes
    ///     after which it is discarded (0: discard every one whose process has ended).
    /// - Throws: `ZooError` when the zoo is read-only, a folder of it is a symbolic link, or the
    ///   catalog cannot be read or written.
    public func gc(dryRun: Bool = false, transferGrace: TimeInterval = 24 * 3600) throws -> GCReport {
        try requireWritable()
        try layout.requireOwnFolders("bissl gc")
        return try catalog.write { db in
            let scan = ZooScan(layout)
            var listed = try Catalog.allIDs(db)
            var report = GCReport(relistedObjects: [], damagedObjects: [], writerLeftovers: [], strayRefs: [], rewrittenRefs: [], restoredObjects: [], bytes: 0)
            /// Unlinks the regular file `url` (never a folder), counting the space it occupied.
            func delete(_ url: URL) -> Bool {
                var info = stat()
                guard lstat(url.path, &info) == 0 else { return false }
                if !dryRun, unlink(url.path) != 0 {
                    report.failures.append("cannot remove \(url.path): \(String(cString: strerror(errno)))")
                    return false
                }
                report.bytes += TemporaryFiles.allocatedBytes(info)
                return true
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
                    do { report.damagedObjects.append(try moveAside(url, id: id, dryRun: dryRun).path) } catch {
                        report.failures.append(String(describing: error))
                    }
                }
            }
            for (id, url) in scan.trash.sorted(by: { $0.key < $1.key }) {
                if listed.contains(id) && !FileManager.default.fileExists(atPath: layout.objectURL(id).path) {
                    if !dryRun && rename(url.path, layout.objectURL(id).path) != 0 {
                        report.failures.append("cannot restore \(url.path): \(String(cString: strerror(errno)))")
                        continue
                    }
                    report.restoredObjects.append(layout.objectURL(id).path)
                } else if delete(url) {
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
                    do { movedTo = try moveAside(url, id: id, dryRun: dryRun).path } catch {
                        report.failures.append("\(error); entry \(id.prefix(12)) stays listed")
                        continue
                    }
                }
                if !dryRun {
                    let labels = try Catalog.labels(of: id, db)
                    try unlist(id, tombstone: true, damage: problem, db)
                    for (label, kind) in labels {
                        do {
                            if let kept = try RefFiles.remove(label, kind: kind, id: id, layout: layout) {
                                report.kept.append(.init(path: kept.path, reason: kept.reason))
                            }
                        } catch { report.failures.append(String(describing: error)) }
                    }
                }
                report.damagedEntries.append(.init(id: id, problem: problem, movedTo: movedTo, sourceFile: source))
            }
            let cutoff = Date().addingTimeInterval(-transferGrace)
            let unlisted = Set(report.damagedEntries.map(\.id))
            // A pull of an entry the zoo holds (listed, its object in place) has nothing left to resume.
            let inZoo = { (id: String) in
                (listed.contains(id) || relisted.contains(id)) && !unlisted.contains(id) && FileManager.default.fileExists(atPath: self.layout.objectURL(id).path)
            }
            for leftover in scan.leftovers where leftover.kind == .temporary || !ZooScan.isAlive(leftover.pid) {
                let url = leftover.url
                switch ZooScan.verdict(leftover, cutoff: cutoff, inZoo: inZoo) {
                case .running: continue
                case .resumable: report.keptTransfers.append(url.path)
                case .kept(let reason): report.kept.append(.init(path: url.path, reason: reason))
                case .abandoned:
                    var info = stat()
                    guard lstat(url.path, &info) == 0 else { continue }
                    if dryRun {
                        report.writerLeftovers.append(url.path)
                        report.bytes += info.st_mode & S_IFMT == S_IFREG ? TemporaryFiles.allocatedBytes(info) : 0
                        continue
                    }
                    // Removed only while this process holds its lock (a writer that still runs holds
                    // one, also from another pid namespace or NFS client); a pull folder only when it
                    // holds nothing but what a pull writes there.
                    let outcome = info.st_mode & S_IFMT == S_IFDIR
                        ? TemporaryFiles.removeStagingFolder(url, holding: ZooScan.pullFolderFiles)
                        : TemporaryFiles.removeFile(url)
                    switch outcome {
                    case .removed(let bytes):
                        report.writerLeftovers.append(url.path)
                        report.bytes += bytes
                    case .inUse: continue
                    case .kept(let reason): report.kept.append(.init(path: url.path, reason: reason))
                    }
                }
            }
            for url in scan.foreign {
                report.kept.append(.init(path: url.path, reason: Self.foreignReason(url)))
            }
            // Who holds each label: the catalog, and what this run gives (a dry run does not write it).
            let labels = try Catalog.allLabels(db)
            var holder = Dictionary(labels.map { ($0.label, (kind: $0.kind, id: $0.id)) }, uniquingKeysWith: { a, _ in a })
            var nameOf = Dictionary(labels.filter { $0.kind == .name }.map { ($0.id, $0.label) }, uniquingKeysWith: { a, _ in a })
            func give(_ label: String, _ kind: LabelKind, _ id: String) throws {
                if !dryRun { try Catalog.addLabel(label, kind: kind, id: id, db) }
                holder[label] = (kind, id)
                if kind == .name { nameOf[id] = label }
            }
            // Free labels whose ref files name a relisted entry go back to it (names first).
            if !relisted.isEmpty {
                let refs = RefFiles.all(layout: layout).filter { $0.id.map(relisted.contains) ?? false }
                    .sorted { ($0.kind == .name ? 0 : 1, $0.label) < ($1.kind == .name ? 0 : 1, $1.label) }
                for ref in refs where ref.problem == nil {
                    guard let id = ref.id, holder[ref.label] == nil else { continue }
                    if ref.kind == .name, nameOf[id] != nil { continue }
                    try give(ref.label, ref.kind, id)
                }
            }
            var present = Set<String>()  // held labels whose ref file is in place (or must not be rewritten)
            for ref in RefFiles.all(layout: layout) {
                let owner = holder[ref.label]
                if let owner, owner.kind == ref.kind, owner.id == ref.id, ref.problem == nil {
                    present.insert(ref.label)
                    continue
                }
                if let problem = ref.problem {
                    // Not a ref file as bissl writes them: bissl cannot tell it wrote it, so it stays,
                    // and a held label's ref is not rewritten over it. A folder at a held label's
                    // path is the exception: the rewrite below replaces it when empty, fails naming it
                    // when it holds files (`RefFiles.write`).
                    let held = owner?.kind == ref.kind
                    if held && problem == "it is a folder" { continue }
                    report.kept.append(.init(path: ref.url.path, reason: Self.invalidRefReason(problem, label: ref.label, kind: ref.kind, held: held)))
                    if held { present.insert(ref.label) }
                    continue
                }
                // A valid ref naming no entry of the zoo: what an interrupted import or rm left.
                guard let id = ref.id, inZoo(id) else {
                    if delete(ref.url) { report.strayRefs.append(ref.url.path) }
                    continue
                }
                if let owner {
                    // The label is held otherwise: the file is a record of it too, so it stays (and a
                    // held label's ref is not rewritten over it) until the user settles which is right.
                    report.kept.append(.init(path: ref.url.path, reason: Self.conflictingRefReason(label: ref.label, kind: ref.kind, id: id, holder: owner, name: nameOf[id])))
                    if owner.kind == ref.kind { present.insert(ref.label) }
                    continue
                }
                // A label the catalog lacks, for an entry it lists: adopted, as reindex does.
                if ref.kind == .name, let name = nameOf[id] {
                    report.kept.append(.init(path: ref.url.path, reason: Self.secondNameReason(label: ref.label, id: id, name: name)))
                    continue
                }
                try give(ref.label, ref.kind, id)
                report.adoptedRefs.append(ref.url.path)
            }
            for (label, kind, id) in labels where !present.contains(label) {
                if !dryRun {
                    do { try RefFiles.write(label, kind: kind, id: id, layout: layout) } catch {
                        report.failures.append(String(describing: error))
                        continue
                    }
                }
                report.rewrittenRefs.append(layout.refURL(label, kind: kind).path)
            }
            return report
        }
    }
}
