import Checkpoint
import Foundation
import GRDB

extension Zoo {
    /// The provenance of every entry, listed or removed (a tombstone, which descendants' lineage and
    /// cards still show), whose provenance document contains `text`, ordered by id: for finding what
    /// names a file outside the zoo (a run's hold-out split files) before that file is deleted.
    /// One SQL scan of the catalog (`instr` over the stored JSON, schemas/catalog.md); the caller
    /// checks the matches' fields exactly.
    /// - Throws: `ZooError` when the catalog cannot be read.
    public func provenanceMentioning(_ text: String) throws -> [(id: String, provenance: Provenance)] {
        try catalog.read { db in
            var out: [(id: String, provenance: Provenance)] = []
            for table in ["entries", "tombstones"] {
                let rows = try Row.fetchAll(db, sql: "SELECT id, provenance FROM \(table) WHERE instr(provenance, ?) > 0",
                                            arguments: [text])
                for row in rows {
                    if let p = EntrySummary.decodeProvenance(row["provenance"]) { out.append((row["id"], p)) }
                }
            }
            return out.sorted { $0.id < $1.id }
        }
    }
}
