import Checkpoint
import Foundation

/// What `RemoteZoo.gc` removed (or, with `dryRun`, would remove).
public struct RemoteGCReport: Codable, Equatable, Sendable {
    /// Keys of objects no manifest references, last modified before the grace period: deleted.
    public var removedObjects: [String]
    /// Keys of multipart uploads started before the grace period and never completed: aborted.
    public var abortedUploads: [String]
    /// Unreferenced objects and pending uploads younger than the grace period (kept: a push may be writing them).
    public var keptRecent: Int
    /// Manifests whose object is missing (reported, never deleted: push the entry again to repair).
    public var missingObjects: [String]
    /// Labels pointing at entries without a manifest (reported, never deleted).
    public var danglingLabels: [String]
    /// Bytes freed.
    public var bytes: Int64
    /// Refs, manifests and index shards that do not decode, and keys under `refs/` that are no valid
    /// label (`RemoteDamage`): reported; deleted with `removeDamaged`.
    public var damaged: [RemoteDamage] = []
    /// Keys of the damaged refs and manifests deleted (with `removeDamaged`).
    public var removedDamaged: [String] = []
    /// Unreferenced objects older than the grace period kept because a damaged manifest without a
    /// copy in the index may reference them (what it references cannot be read).
    public var keptForDamaged: Int = 0
}

/// The entries of a remote (`RemoteZoo.list`) and the refs and manifests the listing skipped
/// because they do not decode.
public struct RemoteListing: Sendable {
    public var entries: [EntryRecord]
    public var damaged: [RemoteDamage]
}

/// The lineage graph of a remote entry (`RemoteZoo.lineage`) and the refs and manifests skipped
/// because they do not decode.
public struct RemoteLineage: Sendable {
    public var graph: LineageGraph
    public var damaged: [RemoteDamage]
}

/// Reading and cleaning a remote without a local zoo (schemas/remote.md): its entries as
/// `EntryRecord`s built from manifests and refs (no object is downloaded), their lineage, and `gc`.
public struct RemoteZoo {
    let store: RemoteStore

    /// - Throws: `ZooError.invalid` for a bad configuration or credentials profile.
    public init(_ config: RemoteConfig) throws { store = try RemoteStore(config) }

    init(store: RemoteStore) { self.store = store }

    public var config: RemoteConfig { store.config }

    /// What the remote's URL holds: a bissl zoo and its entry count, or else whether other keys are
    /// there and which zoos are near (`RemoteSurvey`); `bissl remote add` reports it.
    /// - Throws: `ZooError.io` when the server cannot be reached or refuses.
    public func survey() throws -> RemoteSurvey {
        // One attempt per request: `remote add` should not wait on an unreachable server.
        store.client.attempts = 1
        return try store.survey()
    }

    /// Every entry on the remote, newest first (by `created`, then id), with its remote labels; refs
    /// and manifests that do not decode are left out and named (`RemoteListing.damaged`). Costs one
    /// listing of `entries/` and `refs/`, the index shards, and one read per manifest the index
    /// lacks (over parallel connections).
    /// - Throws: `ZooError.invalid` when the prefix holds no bissl zoo (`RemoteStore.requireZoo`).
    public func list() throws -> RemoteListing {
        try store.requireZoo()
        let ids = try store.entryIDs()
        let manifests = try store.indexedManifests(ids)
        let refs = try store.refs(knownIDs: ids)
        var labels: [String: (name: String?, tags: [String])] = [:]
        for (label, r) in refs.refs.sorted(by: { $0.key < $1.key }) {
            if r.kind == .name && labels[r.id]?.name == nil { labels[r.id, default: (nil, [])].name = label } else { labels[r.id, default: (nil, [])].tags.append(label) }
        }
        let entries = manifests.manifests.map { m in EntryRecord(summary: m.summary, name: labels[m.id]?.name, tags: labels[m.id]?.tags ?? []) }
            .sorted { ($0.summary.created, $0.id) > ($1.summary.created, $1.id) }
        return RemoteListing(entries: entries, damaged: manifests.damaged + refs.damaged)
    }

    /// The lineage graph of the entry REF names on the remote (resolved as `pull` resolves it), over
    /// every manifest of the remote that decodes; parents the remote lacks stay edge ends only, and
    /// entries whose manifest is damaged are nodes naming it (`LineageNode.damaged`).
    /// - Throws: `ZooError.corrupt` naming the key when REF is a label whose ref does not decode.
    public func lineage(_ ref: String) throws -> RemoteLineage {
        try store.requireZoo()
        let root = try store.resolve(ref)
        let listing = try list()
        let records = listing.entries
        // Entries whose manifest is damaged are nodes that say so (naming the manifest), not ids the remote lacks.
        let damagedNodes = listing.damaged.filter { $0.kind == .manifest }.map { d in
            LineageNode(id: String(d.key.dropFirst("entries/".count).prefix(64)), stage: "unknown", damaged: d.url)
        }
        // A record carried from an imported bissl .h5 (`Provenance.carriedFrom`) is that file's claim;
        // the provenance document is decoded only when its text names the key.
        let carried = Set(records.filter { r in
            r.summary.provenanceJSON.contains("\"carriedFrom\"") && !(r.summary.provenance?.carriedFrom ?? []).isEmpty
        }.map(\.id))
        let nodes = records.map { r in
            LineageNode(id: r.id, name: r.name ?? r.tags.first, stage: r.summary.stage, method: r.summary.method, arch: r.summary.arch,
                        created: r.summary.created, carried: carried.contains(r.id))
        } + damagedNodes
        let edges = records.flatMap { r in
            r.summary.parents.map { LineageEdge(parent: $0.id, child: r.id, relation: $0.relation, note: $0.note, carried: carried.contains(r.id)) }
        }
        return RemoteLineage(graph: LineageGraph(root: root, nodes: nodes, edges: edges), damaged: listing.damaged)
    }

    /// Deletes objects no manifest references and aborts multipart uploads, both only when older
    /// than `grace` seconds (a running push writes its object before its manifest); reports
    /// manifests whose object is gone, labels of entries without a manifest, and damaged refs,
    /// manifests and index shards (`RemoteDamage`), which it deletes only with `removeDamaged`. The object of a
    /// damaged manifest is known from its copy in the index; while a damaged manifest has none, no
    /// unreferenced object is deleted (`keptForDamaged`). Adds the manifests the index lacks to it
    /// (it read them all).
    public func gc(grace: TimeInterval, dryRun: Bool = false, removeDamaged: Bool = false) throws -> RemoteGCReport {
        var report = RemoteGCReport(removedObjects: [], abortedUploads: [], keptRecent: 0, missingObjects: [], danglingLabels: [], bytes: 0)
        try store.requireZoo()
        let cutoff = Date().addingTimeInterval(-grace)
        // Objects are listed before manifests: an object uploaded after this listing is not a candidate,
        // and every manifest written before the deletions below is seen.
        let objects = try store.list("objects/")
        let ids = try store.entryIDs()
        let (manifests, damagedManifests) = try store.manifests(ids)
        let damagedShards = try store.damagedShards()
        if !dryRun { store.updateIndex(manifests) }
        var referenced = Set(manifests.map { RemoteStore.objectKey(sha256: $0.object.sha256) })
        let damagedIDs = damagedManifests.map { String($0.key.dropFirst("entries/".count).prefix(64)) }
        let copies = damagedIDs.isEmpty ? [:] : try store.indexCopies(damagedIDs)
        for id in damagedIDs { if let copy = copies[id] { referenced.insert(RemoteStore.objectKey(sha256: copy.object.sha256)) } }
        let unknownReferences = damagedIDs.contains { copies[$0] == nil }
        let present = Set(objects.map(\.key))
        for m in manifests where !present.contains(RemoteStore.objectKey(sha256: m.object.sha256)) {
            report.missingObjects.append(m.id)
        }
        for object in objects where !referenced.contains(object.key) {
            guard object.lastModified < cutoff else { report.keptRecent += 1; continue }
            guard !unknownReferences else { report.keptForDamaged += 1; continue }
            if !dryRun { try store.delete(object.key) }
            report.removedObjects.append(object.key)
            report.bytes += object.size
        }
        for upload in try store.pendingUploads() {
            guard upload.initiated < cutoff else { report.keptRecent += 1; continue }
            if !dryRun { try store.abortUpload(upload.key, upload.uploadID) }
            report.abortedUploads.append(upload.key)
        }
        let listed = Set(ids)
        let refs = try store.refs(knownIDs: ids)
        report.danglingLabels = refs.refs.filter { !listed.contains($0.value.id) }.map(\.key).sorted()
        report.damaged = damagedManifests + refs.damaged + damagedShards
        if removeDamaged {
            // No bissl writer replaces a ref or manifest it cannot decode (push and pull fail on it),
            // so what was read damaged is still what these deletions remove.
            for d in report.damaged {
                if !dryRun { try store.delete(d.key) }
                report.removedDamaged.append(d.key)
            }
        }
        return report
    }
}

extension ListFilter {
    /// True when `record` passes the filter, with the catalog query's rules (`Catalog.records`):
    /// equal stage and method, architecture equal or its start before `-`, dataset URI containing
    /// `dataset`, a name or tag matching the glob `tag` (case-sensitive, as SQLite's GLOB).
    public func matches(_ record: EntryRecord) -> Bool {
        let s = record.summary
        if let stage, s.stage != stage { return false }
        if let method, s.method != method { return false }
        if let arch, !(s.arch == arch || (s.arch?.hasPrefix(arch + "-") ?? false)) { return false }
        if let dataset, !(s.dataset?.contains(dataset) ?? false) { return false }
        if let tag, !(([record.name].compactMap { $0 } + record.tags).contains { fnmatch(tag, $0, 0) == 0 }) { return false }
        if let ids, !ids.contains(record.id) { return false }
        return true
    }
}
