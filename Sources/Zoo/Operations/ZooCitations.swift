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
        try provenanceMentioning(anyOf: [text])[text] ?? []
    }

    /// `provenanceMentioning(_:)` of each of `texts` at once, from one read of the catalog: every
    /// document is searched for every text in its UTF-8 bytes where SQLite holds them (the row's
    /// bytes, not a copy: `Row.withUnsafeData`; `memchr` for the first byte, then `memcmp`: a byte
    /// match, as SQL's `instr`), and only a matching document is copied and decoded, once. One `instr` scan per text cost 34 ms per
    /// text on a 10,000-entry catalog (16 MB of provenance): `runs prune` asks for every finished run.
    /// - Returns: text -> its matches ordered by id; a text nothing mentions (or an empty one) has no key.
    /// - Throws: `ZooError` when the catalog cannot be read.
    public func provenanceMentioning(anyOf texts: [String]) throws -> [String: [(id: String, provenance: Provenance)]] {
        let needles = Array(Set(texts.filter { !$0.isEmpty })).sorted().map { ($0, Array($0.utf8)) }
        guard !needles.isEmpty else { return [:] }
        return try catalog.read { db in
            var out: [String: [(id: String, provenance: Provenance)]] = [:]
            for table in ["entries", "tombstones"] {
                let rows = try Row.fetchCursor(db, sql: "SELECT id, provenance FROM \(table)")
                while let row = try rows.next() {
                    let (found, json): ([(String, [UInt8])], String?) = try row.withUnsafeData(atIndex: 1) { data in
                        guard let data else { return ([], nil) }
                        let found = data.withUnsafeBytes { hay in
                            needles.filter { needle in needle.1.withUnsafeBytes { Self.bytes(hay, contain: $0) } }
                        }
                        return (found, found.isEmpty ? nil : String(decoding: data, as: UTF8.self))
                    }
                    guard let json, let p = EntrySummary.decodeProvenance(json) else { continue }
                    let id: String = row["id"]
                    for (text, _) in found { out[text, default: []].append((id, p)) }
                }
            }
            return out.mapValues { $0.sorted { $0.id < $1.id } }
        }
    }

    /// True when `needle` (not empty) occurs in `hay`.
    private static func bytes(_ hay: UnsafeRawBufferPointer, contain needle: UnsafeRawBufferPointer) -> Bool {
        guard let h = hay.baseAddress, let n = needle.baseAddress, needle.count > 0, hay.count >= needle.count else { return false }
        let last = hay.count - needle.count
        var i = 0
        while i <= last {
            guard let p = memchr(h + i, Int32(needle[0]), last - i + 1) else { return false }
            if memcmp(p, n, needle.count) == 0 { return true }
            i = UnsafeRawPointer(p) - h + 1
        }
        return false
    }
}
