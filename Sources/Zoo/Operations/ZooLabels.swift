import Checkpoint
import Foundation
import GRDB

extension Zoo {
    /// Adds tag `label` to the entry REF names.
    /// - Returns: false when the entry already had this label (nothing changed).
    /// - Throws: `ZooError.invalid` for a bad label, one held by another entry, or one whose ref file
    ///   records it for another entry the zoo lists (`requireNoUnheldRecord`).
    @discardableResult
    public func tag(_ ref: String, _ label: String) throws -> (id: String, added: Bool) {
        try LabelRules.validate(label)
        try requireWritable()
        return try catalog.write { db in
            let id = try Self.resolve(ref, db, zoo: layout.root.path)
            if let owner = try Catalog.labelOwner(label, db) {
                if owner.id == id { return (id, false) }
                throw ZooError.invalid("label '\(label)' is already the \(owner.kind.rawValue) of entry \(owner.id.prefix(12)); bissl untag \(label) first")
            }
            try requireNoUnheldRecord(label, kind: .tag, for: id, db)
            try RefFiles.write(label, kind: .tag, id: id, layout: layout)
            do {
                try Catalog.addLabel(label, kind: .tag, id: id, db)
            } catch {
                _ = try? RefFiles.remove(label, kind: .tag, id: id, layout: layout)
                throw error
            }
            dropSupersededRef(label, kind: .tag, id: id)
            return (id, true)
        }
    }

    /// Refuses to give `label` (which the catalog does not hold) to entry `id` as `kind` while a
    /// valid ref file of it, under either kind, records it otherwise for an entry the zoo lists (its
    /// object in place): what an interrupted tag or import left, which `gc` adopts and
    /// `verify --reindex` gives back. Ref files are the record of labels, so writing this label's
    /// ref over it (or beside it, as the other kind) would lose or contradict that record. A ref
    /// already naming `id`, as `kind` or as the other kind, records the label for this same entry:
    /// giving it `label` as `kind` now is what the user asks and loses no entry's label (the other
    /// kind's file is then removed, `dropSupersededRef`); one naming an entry the zoo does not list
    /// is a stray that `RefFiles.write` replaces (and `gc` removes).
    /// - Throws: `ZooError.invalid` naming the file, the entry it names, and the commands that settle
    ///   it (the wording of `gc`'s and `verify`'s reports of such a file).
    func requireNoUnheldRecord(_ label: String, kind: LabelKind, for id: String, _ db: Database) throws {
        for fileKind in LabelKind.allCases {
            let url = layout.refURL(label, kind: fileKind)
            guard case let (held?, nil) = RefFiles.read(url, label: label), held != id,
                  try Catalog.exists(held, db), FileManager.default.fileExists(atPath: layout.objectURL(held).path) else { continue }
            throw ZooError.invalid("cannot make '\(label)' the \(kind.rawValue) of entry \(id.prefix(12)): \(url.path) is a ref file of \(fileKind.rawValue) '\(label)' naming entry \(held.prefix(12)), a label the catalog does not hold (interrupted import or tag), "
                + "and ref files are the record of labels, so bissl does not write over it; bissl gc adds it to the catalog, as bissl verify --reindex does (then bissl untag \(label) frees it), or remove the file by hand to drop the label, then run again")
        }
    }

    /// After `label` became entry `id`'s `kind` (catalog row and ref file), removes a ref file of the
    /// other kind that records `label` for `id` too (left by an interrupted import or tag): the label
    /// has one kind, and that file would read to `gc` and `verify` as a second, conflicting record.
    /// Only the file bissl writes for `id` goes (`RefFiles.remove`); failing to remove it changes
    /// nothing else (`gc` and `verify` then report it as before).
    func dropSupersededRef(_ label: String, kind: LabelKind, id: String) {
        for other in LabelKind.allCases where other != kind {
            guard case (id?, nil) = RefFiles.read(layout.refURL(label, kind: other), label: label) else { continue }
            _ = try? RefFiles.remove(label, kind: other, id: id, layout: layout)
        }
    }

    /// Removes a tag (or the name) `label` from whichever entry holds it; the entry itself stays. Its
    /// ref file is removed only when it is the one bissl writes (`RefFiles.remove`); anything else at
    /// its path is kept and returned, with why.
    /// - Returns: the id of the entry that held it, the label's kind, and the file kept at the ref's
    ///   path (nil when none).
    /// - Throws: `ZooError.invalid` when no entry holds `label`; `ZooError.unsupported` when `refs/`
    ///   or `refs/<kind>` is a symbolic link (nothing changes).
    @discardableResult
    public func untag(_ label: String) throws -> (id: String, kind: LabelKind, kept: KeptRef?) {
        try requireWritable()
        return try catalog.write { db in
            guard let owner = try Catalog.labelOwner(label, db) else {
                throw ZooError.invalid("no name or tag '\(label)' in the zoo at \(layout.root.path)")
            }
            try Catalog.removeLabel(label, db)
            return (owner.id, owner.kind, try RefFiles.remove(label, kind: owner.kind, id: owner.id, layout: layout))
        }
    }
}

/// A file `untag` or `rm` found at a removed label's ref path and kept: it is not the ref file bissl
/// writes for that entry (`RefFiles.remove`).
public struct KeptRef: Codable, Equatable, Sendable {
    public var path: String
    /// Why it stays and what the user can do, a clause.
    public var reason: String
}
