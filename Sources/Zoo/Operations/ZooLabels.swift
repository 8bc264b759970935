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
                try? RefFiles.remove(label, kind: .tag, layout: layout)
                throw error
            }
            return (id, true)
        }
    }

    /// Removes a tag (or the name) `label` from whichever entry holds it; the entry itself stays.
    /// - Returns: the id of the entry that held it and the label's kind.
    /// - Throws: `ZooError.invalid` when no entry holds `label`.
    @discardableResult
    public func untag(_ label: String) throws -> (id: String, kind: LabelKind) {
        try requireWritable()
        return try catalog.write { db in
            guard let owner = try Catalog.labelOwner(label, db) else {
                throw ZooError.invalid("no name or tag '\(label)' in the zoo at \(layout.root.path)")
            }
            try Catalog.removeLabel(label, db)
            try RefFiles.remove(label, kind: owner.kind, layout: layout)
            return owner
        }
    }
}
