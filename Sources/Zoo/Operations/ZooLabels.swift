import Checkpoint
import Foundation

extension Zoo {
    /// Adds tag `label` to the entry REF names.
    /// - Returns: false when the entry already had this label (nothing changed).
    /// - Throws: `ZooError.invalid` for a bad label or one held by another entry.
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
            try RefFiles.write(label, kind: .tag, id: id, layout: layout)
            do {
                try Catalog.addLabel(label, kind: .tag, id: id, db)
            } catch {
                _ = try? RefFiles.remove(label, kind: .tag, id: id, layout: layout)
                throw error
            }
            return (id, true)
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
