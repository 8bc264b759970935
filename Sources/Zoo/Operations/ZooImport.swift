import Checkpoint
import Foundation
import GRDB

/// What `Zoo.add` did.
public struct ImportResult: Codable, Equatable, Sendable {
    /// Full content id of the entry.
    public var id: String
    /// False when the zoo already listed this content (then only `labelsAdded` changed).
    public var added: Bool
    /// Labels given to an entry the zoo already listed that it did not hold yet (applied now, as
    /// `bissl tag` would); empty for a new entry.
    public var labelsAdded: [String] = []
    /// The entry's name and tags after the import.
    public var name: String?
    public var tags: [String]
    /// Object file size in bytes.
    public var size: Int64
    /// `HealthCheck.warnings` of the tensors when this call scanned them (a new entry); nil otherwise.
    public var health: [String]?
    /// Labels given back to content that `gc` had unlisted as damaged (`Tombstone.damage`): the
    /// labels it had then that are free now, the name only when the import gives none.
    public var labelsRestored: [String] = []
    /// Labels of that damaged entry not given back: held by another entry now, or its name when the
    /// import gives another one.
    public var labelsNotRestored: [String] = []
}

extension Zoo {
    /// Adds a checkpoint as an immutable entry named by its content id (`ContentID.compute`).
    ///
    /// The object is first written completely to `tmp/` and flushed (`fsync`) while its content id is
    /// hashed on another thread, then, inside one IMMEDIATE catalog transaction, renamed to
    /// `objects/<2 hex>/<62 hex>.h5` (its folder flushed), the ref files written, the rows and the
    /// object's file facts (`FileStatus`, schemas/catalog.md "Trusted reads") inserted. Killed before the commit, the process leaves only files the catalog does
    /// not list (`gc` removes them); concurrent imports of the same content produce one entry.
    ///
    /// - Parameters:
    ///   - name: the entry's name (unique in the zoo, `LabelRules`).
    ///   - tags: further labels (unique in the zoo).
    ///   - sourceDigest: the source file's SHA-256 still being hashed (`Interchange.loadDeferringDigest`),
    ///     waited for once the object's tensors are written (`CheckpointFile.writeStaged`).
    /// - Returns: `added == false` when the content is already listed: then `name`/`tags` it does not
    ///   hold yet are applied to that entry (same rules as `tag`; a second name is refused) and
    ///   listed in `labelsAdded`; nothing else changes. Content that `gc` unlisted as damaged gets
    ///   back the labels it had that are still free (`labelsRestored`, `restorableLabels`).
    /// - Throws: `ZooError.invalid` for a bad or taken label, provenance outside the schema
    ///   (`ProvenanceCheck`) or naming the entry's own id as a parent, `.io` when the zoo cannot be
    ///   written.
    public func add(_ checkpoint: Checkpoint, name: String? = nil, tags: [String] = [], sourceDigest: SourceDigest? = nil) throws -> ImportResult {
        try add(checkpoint, name: name, tags: tags, staged: nil, sourceDigest: sourceDigest)
    }

    /// `add` placing `given.url`, a complete object file of `checkpoint` in `tmp/` whose content id
    /// `given.id` and `EntryDetails` its caller computed from `checkpoint` (a verified download,
    /// `pull`), instead of writing one; `given.url` is removed in every case.
    func add(_ checkpoint: Checkpoint, name: String?, tags: [String], staged given: (url: URL, id: String, details: EntryDetails)?,
             sourceDigest: SourceDigest? = nil) throws -> ImportResult {
        defer { if let given { unlink(given.url.path) } }
        let labels = (name.map { [($0, LabelKind.name)] } ?? []) + tags.map { ($0, LabelKind.tag) }
        var seen = Set<String>()
        for (label, _) in labels {
            try LabelRules.validate(label)
            guard seen.insert(label).inserted else { throw ZooError.invalid("label '\(label)' given twice") }
        }
        let violations = ProvenanceCheck.violations(checkpoint.provenance)
        if !violations.isEmpty {
            throw ZooError.invalid("cannot import: provenance does not satisfy schemas/provenance.schema.json: \(violations.joined(separator: "; "))")
        }
        do {
            try requireWritable()
        } catch {
            // A zoo this process cannot write still answers for content it lists already.
            let id = ContentID.compute(checkpoint)
            if labels.isEmpty, let existing = try existingResult(id) { return existing }
            throw error
        }
        // The object is written to tmp/ while its content id is hashed (`CheckpointFile.writeStaged`)
        // and its tensors scanned for the catalog's details (`EntryDetails`, the health scan):
        // content the zoo lists already, or labels another entry holds, cost one write thrown away.
        // A given file (a verified download) is placed as it is, with the id and details its caller computed.
        let staged: URL, id: String, details: EntryDetails
        var stagedLock: TemporaryFileLock?   // held until the staged file is placed or removed (gc keeps it)
        var checkpoint = checkpoint
        if let given {
            staged = given.url
            id = given.id
            details = given.details
        } else {
            staged = layout.tmp.appendingPathComponent(".staged.h5.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            let scanning = Background { [checkpoint] in EntryDetails(checkpoint) }
            (id, stagedLock) = try CheckpointFile.writeStaged(checkpoint, to: staged, sourceDigest: sourceDigest)
            checkpoint = try sourceDigest?.completing(checkpoint) ?? checkpoint
            details = try scanning.value()
        }
        defer { unlink(staged.path); stagedLock?.release() }
        if checkpoint.provenance.parents.contains(where: { $0.id == id }) {
            throw ZooError.invalid("cannot import: provenance names the checkpoint's own content id \(id.prefix(12)) as its parent (a lineage cycle)")
        }
        if let existing = try existingResult(id) {
            if labels.isEmpty { return existing }
            return try catalog.write { db in try labelExisting(id, labels, db) }
        }

        let object = layout.objectURL(id)
        let result: ImportResult = try catalog.write { db in
            if try Catalog.exists(id, db) {
                return try labelExisting(id, labels, db)
            }
            try checkLabelsFree(labels, for: id, db)
            try Self.checkNoCycle(id, parents: checkpoint.provenance.parents.map(\.id), db)
            let (restored, notRestored) = try restorableLabels(id, given: labels, db)
            let labels = labels + restored
            var placedObject = false
            var writtenRefs: [(String, LabelKind)] = []
            do {
                let dir = object.deletingLastPathComponent()
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                guard rename(staged.path, object.path) == 0 else {
                    throw ZooError.io("cannot place object \(object.path): \(String(cString: strerror(errno)))")
                }
                placedObject = true
                fsyncDirectory(dir)
                for (label, kind) in labels {
                    try RefFiles.write(label, kind: kind, id: id, layout: layout)
                    writtenRefs.append((label, kind))
                }
                let attributes = try objectAttributes(id)
                let summary = EntrySummary(id: id, checkpoint: checkpoint, size: attributes.size, modified: attributes.modified, details: details)
                try Catalog.insert(summary, db)
                // The object holds the bytes `id` was computed from: later reads trust it while its
                // file facts stay as they are now (schemas/catalog.md, "Trusted reads").
                if let status = Self.settledStatus(object) { try Catalog.recordVerified(id, status, db) }
                for (label, kind) in labels { try Catalog.addLabel(label, kind: kind, id: id, db) }
                for (label, kind) in labels { dropSupersededRef(label, kind: kind, id: id) }
                return ImportResult(id: id, added: true, name: labels.first { $0.1 == .name }?.0,
                                    tags: labels.filter { $0.1 == .tag }.map(\.0).sorted(), size: attributes.size, health: details.health,
                                    labelsRestored: restored.map(\.0), labelsNotRestored: notRestored)
            } catch {
                // Still under the write lock: nobody else can have indexed what we placed.
                for (label, kind) in writtenRefs { _ = try? RefFiles.remove(label, kind: kind, id: id, layout: layout) }
                if placedObject { unlink(object.path) }
                throw error
            }
        }
        // A removed entry imported again is listed again: its tombstone is obsolete.
        if result.added { unlink(layout.tombstoneURL(id).path) }
        return result
    }

    /// The labels `gc` took from entry `id` when it unlisted it as damaged (its tombstone file with
    /// `Tombstone.damage`; `rm` leaves none, a removal is meant), split into those that come back with
    /// its content and those that cannot: a label another entry holds now (or a ref file records for one: `requireNoUnheldRecord`), or its old name when
    /// `given` names the entry otherwise. Given labels are not repeated.
    func restorableLabels(_ id: String, given: [(String, LabelKind)], _ db: Database) throws
        -> (restored: [(String, LabelKind)], notRestored: [String]) {
        let url = layout.tombstoneURL(id)
        guard FileManager.default.fileExists(atPath: url.path), let t = try? TombstoneFile.read(url), t.damage != nil else { return ([], []) }
        let givenLabels = Set(given.map(\.0))
        let givenName = given.contains { $0.1 == .name }
        var restored: [(String, LabelKind)] = [], notRestored: [String] = []
        for label in t.labels where !givenLabels.contains(label) && (try? LabelRules.validate(label)) != nil {
            let kind: LabelKind = label == t.name ? .name : .tag
            // Held by another entry now, or recorded for one by a ref file (`requireNoUnheldRecord`).
            let taken = try Catalog.labelOwner(label, db) != nil || (try? requireNoUnheldRecord(label, kind: kind, for: id, db)) == nil
            if (kind == .name && givenName) || taken {
                notRestored.append(label)
            } else {
                restored.append((label, kind))
            }
        }
        return (restored, notRestored)
    }

    /// Applies `labels` the listed entry `id` does not hold yet (refs first, then rows, inside the
    /// caller's write transaction) and returns its result with `labelsAdded`.
    func labelExisting(_ id: String, _ labels: [(String, LabelKind)], _ db: Database) throws -> ImportResult {
        try checkLabelsFree(labels, for: id, db)
        let held = Set(try Catalog.labels(of: id, db).map(\.label))
        var written: [(String, LabelKind)] = []
        do {
            for (label, kind) in labels where !held.contains(label) {
                try RefFiles.write(label, kind: kind, id: id, layout: layout)
                written.append((label, kind))
                try Catalog.addLabel(label, kind: kind, id: id, db)
            }
        } catch {
            for (label, kind) in written { _ = try? RefFiles.remove(label, kind: kind, id: id, layout: layout) }
            throw error
        }
        for (label, kind) in written { dropSupersededRef(label, kind: kind, id: id) }
        var result = try existingResult(id, db)!
        result.labelsAdded = written.map(\.0)
        return result
    }

    private func existingResult(_ id: String) throws -> ImportResult? {
        try catalog.read { db in try existingResult(id, db) }
    }

    private func existingResult(_ id: String, _ db: Database) throws -> ImportResult? {
        guard let row = try Row.fetchOne(db, sql: "SELECT size FROM entries WHERE id = ?", arguments: [id]) else { return nil }
        let labels = try Catalog.labels(of: id, db)
        return ImportResult(id: id, added: false, name: labels.first { $0.kind == .name }?.label,
                            tags: labels.filter { $0.kind == .tag }.map(\.label), size: row["size"])
    }

    /// Refuses an entry that an ancestor of its parents names as a parent: with it, the lineage the
    /// zoo holds would be a cycle (A made from B made from A). Content ids cover tensors only, so
    /// hand-made provenance can state this. Breadth-first over the catalog's edges (removed entries
    /// included), each entry visited once.
    /// - Throws: `ZooError.invalid` naming the parent that descends from `id`.
    static func checkNoCycle(_ id: String, parents: [String], _ db: Database) throws {
        let statement = try db.cachedStatement(sql: "SELECT parent FROM edges WHERE child = ?")
        for parent in parents {
            var frontier = [parent], seen: Set<String> = [parent]
            while let next = frontier.popLast() {
                for ancestor in try String.fetchAll(statement, arguments: [next]) where seen.insert(ancestor).inserted {
                    if ancestor == id {
                        throw ZooError.invalid("cannot import: its parent \(parent.prefix(12)) descends from it (\(id.prefix(12))), so the lineage would be a cycle")
                    }
                    frontier.append(ancestor)
                }
            }
        }
    }

    /// Refuses labels another entry holds, a name for an entry that already has one, and a label
    /// the catalog does not hold whose ref file records it for another entry the zoo lists
    /// (`requireNoUnheldRecord`).
    func checkLabelsFree(_ labels: [(String, LabelKind)], for id: String, _ db: Database) throws {
        for (label, kind) in labels {
            let owner = try Catalog.labelOwner(label, db)
            if let owner, owner.id != id || owner.kind != kind {
                throw ZooError.invalid("label '\(label)' is already the \(owner.kind.rawValue) of entry \(owner.id.prefix(12)); choose another (bissl untag \(label) frees a tag)")
            }
            if kind == .name, let current = try Catalog.labels(of: id, db).first(where: { $0.kind == .name }), current.label != label {
                throw ZooError.invalid("entry \(id.prefix(12)) is already named '\(current.label)'; add '\(label)' as a tag instead")
            }
            if owner == nil { try requireNoUnheldRecord(label, kind: kind, for: id, db) }
        }
    }
}

extension Zoo {
    /// The facts of a file just placed, once they are settled (`FileStatus.isSettled`): the rename
    /// stamped its change time with the current clock tick, so this waits for the next tick (a few
    /// milliseconds); nil after 100 ms or on a file system stamping whole seconds (then reads hash
    /// the object until `verify` records its facts).
    static func settledStatus(_ url: URL) -> FileStatus? {
        guard let status = FileStatus(path: url.path) else { return nil }
        for _ in 0..<100 {
            if status.isSettled(before: FileStatus.coarseNow()) { return status }
            if status.changedNanoseconds % 1_000_000_000 == 0 { return nil }
            usleep(1000)
        }
        return nil
    }
}

/// Flushes a directory so a rename inside it survives a power loss.
func fsyncDirectory(_ url: URL) {
    let fd = open(url.path, O_RDONLY)
    if fd >= 0 { fsync(fd); close(fd) }
}
