import Checkpoint
import Foundation

/// One entry a push or pull considered.
public struct TransferredEntry: Codable, Equatable, Sendable {
    public var id: String
    public var name: String?
    /// False when the destination held the entry already (nothing was sent).
    public var transferred: Bool
    /// Object bytes.
    public var size: Int64
    /// Pull only: labels this zoo gave back to the entry because `gc` had unlisted it as damaged
    /// (`ImportResult.labelsRestored`); absent when none.
    public var labelsRestored: [String]?
    /// Pull only: labels of that damaged entry not given back (`ImportResult.labelsNotRestored`);
    /// absent when none.
    public var labelsNotRestored: [String]?
}

/// What a push or pull did to one label.
public struct LabelChange: Codable, Equatable, Sendable {
    public enum Action: String, Codable, Sendable {
        /// The label was created at the destination.
        case created
        /// The destination held it for the same entry.
        case unchanged
        /// A tag moved to this entry (`push --force`).
        case moved
        /// Not applied: the destination gives the label to another entry (`note` says which).
        case skipped
    }
    public var label: String
    public var kind: LabelKind
    public var id: String
    public var action: Action
    public var note: String?
}

/// What `Zoo.push` and `Zoo.pull` did.
public struct TransferReport: Codable, Equatable, Sendable {
    /// Remote name.
    public var remote: String
    /// The entry REF named.
    public var id: String
    /// Entries in transfer order: ancestors first, the entry REF named last.
    public var entries: [TransferredEntry]
    public var labels: [LabelChange]
    /// Object bytes this run sent (push) or received (pull): less than the objects' sizes where it
    /// resumed an interrupted transfer.
    public var bytes: Int64
    public var seconds: Double
    /// True when this push started the zoo on the remote (wrote its `bissl-remote.json`: the
    /// prefix held none); absent otherwise.
    public var startedZoo: Bool?
    /// With `startedZoo`: bissl zoos near the remote's prefix (`s3://BUCKET/PREFIX`), which a
    /// mistyped prefix would have meant; absent when there are none.
    public var nearbyZoos: [String]?
    /// Pull only: refs and manifests on the remote that do not decode, which the pull skipped (a
    /// damaged ref's label is not applied; a damaged ancestor is not pulled); absent when none.
    public var damaged: [RemoteDamage]?
}

/// Progress of one object transfer: entry id, bytes so far, object bytes.
public typealias TransferProgress = @Sendable (_ id: String, _ done: Int64, _ total: Int64) -> Void

extension Zoo {
    /// Uploads the entry REF names to `remote` (schemas/remote.md, "Push"): first every ancestor the
    /// remote lacks (unless `ancestors` is false), then the entry; per entry its object (conditional
    /// create), then its manifest (conditional create, which lists it on the remote); then the
    /// manifest index (`updateIndex`) and the labels of every entry sent, each created with `If-None-Match: *` or checked against the remote's.
    ///
    /// - Parameters:
    ///   - maxRate: bytes per second each connection sends at most (nil: no limit).
    ///   - force: move a remote *tag* of the entry REF names that points at another entry
    ///     (compare-and-swap on the ref's ETag); names never move.
    /// - Throws: `ZooError.invalid` before anything is sent when a label of the entry is a
    ///   remote label of another entry (naming that entry), and after the upload when another pusher
    ///   took it meanwhile (the entry is then on the remote, unlabelled); `.io` for transport failures.
    ///   Labels of ancestors held by other entries on the remote are skipped (`LabelChange.skipped`).
    public func push(_ ref: String, to config: RemoteConfig, ancestors: Bool = true, force: Bool = false,
                     maxRate: Int64? = nil, progress: TransferProgress? = nil) throws -> TransferReport {
        let started = Date()
        let remote = try RemoteStore(config)
        remote.maxRate = maxRate
        return try push(ref, remote, ancestors: ancestors, force: force, progress: progress, started: started)
    }

    func push(_ ref: String, _ remote: RemoteStore, ancestors: Bool, force: Bool, progress: TransferProgress?,
              started: Date = Date()) throws -> TransferReport {
        let id = try resolve(ref)
        remote.scratch = layout.tmp
        let startsZoo = try !remote.checkFormat(create: true)
        var order = [id]
        if ancestors {
            // Nodes come root first by distance: the farthest ancestors go up first.
            order = try lineage(id, direction: .up).nodes.filter { $0.status == .listed }.map(\.id).reversed()
        }
        let rootLabels = try labels(of: id)
        for (label, kind) in rootLabels {
            if let held = try remote.ref(label), held.id != id, !(force && kind == .tag && held.kind == .tag) {
                throw Self.remoteLabelConflict(label, kind: kind, id: id, held, remote)
            }
        }
        var report = TransferReport(remote: remote.config.name, id: id, entries: [], labels: [], bytes: 0, seconds: 0)
        if startsZoo {
            report.startedZoo = true
            report.nearbyZoos = (try? remote.nearbyZoos()).flatMap { $0.isEmpty ? nil : $0 }
        }
        var indexed: [RemoteManifest] = []
        for entry in order {
            let record = try self.record(entry)
            var sent = false
            if let (read, etag) = try remote.manifestWithETag(entry) {
                // A manifest an earlier bissl wrote gets the digest that lets pull hash the object once.
                let listed = try backfillNonTensorSHA256(read, etag: etag, remote) ?? read
                indexed.append(listed)
                // Listed already. Its object is put back when it went missing (gc --remote reports
                // that) and this zoo's file is the one the manifest names.
                let key = RemoteStore.objectKey(sha256: listed.object.sha256)
                if try !remote.exists(key) {
                    let url = layout.objectURL(entry)
                    let (sha, size) = try FileSHA256.digest(of: url)
                    if sha == listed.object.sha256,
                       let moved = try remote.uploadObject(url, sha256: sha, size: size, progress: progress.map { p in { @Sendable done, total in p(entry, done, total) } }) {
                        sent = true
                        report.bytes += moved
                    }
                }
            } else {
                let url = layout.objectURL(entry)
                let (sha, size) = try FileSHA256.digest(of: url)
                var moved = try remote.uploadObject(url, sha256: sha, size: size, progress: progress.map { p in { @Sendable done, total in p(entry, done, total) } })
                var summary = record.summary
                summary.size = size
                let object = RemoteManifest.ObjectRef(sha256: sha, size: size, nonTensorSHA256: try ObjectDigests.nonTensorSHA256(of: url))
                let manifest = RemoteManifest(version: 1, id: entry, object: object, summary: summary,
                                              pushedAt: ISO8601DateFormatter().string(from: Date()))
                if try remote.create(RemoteStore.manifestKey(entry), try RemoteStore.encodeManifest(manifest)) {
                    indexed.append(manifest)
                    // gc --remote may have removed an old unreferenced copy of this object between our
                    // existence check and the manifest: put it back.
                    if moved == nil, try !remote.exists(RemoteStore.objectKey(sha256: sha)) {
                        moved = try remote.uploadObject(url, sha256: sha, size: size, progress: nil)
                    }
                    sent = moved != nil
                    report.bytes += moved ?? 0
                } else {
                    sent = false  // another pusher listed the entry first; its manifest and object stand
                }
            }
            report.entries.append(TransferredEntry(id: entry, name: record.name, transferred: sent, size: record.summary.size))
        }
        remote.updateIndex(indexed)
        var conflict: ZooError?
        for entry in order {
            for (label, kind) in try (entry == id ? rootLabels : labels(of: entry)) {
                do {
                    let action = try Self.setRemoteRef(label, kind: kind, id: entry, force: force && entry == id, remote)
                    report.labels.append(LabelChange(label: label, kind: kind, id: entry, action: action))
                } catch let error as RemoteLabelConflict {
                    if entry == id, conflict == nil { conflict = Self.remoteLabelConflict(label, kind: kind, id: id, error.held, remote) }
                    report.labels.append(LabelChange(label: label, kind: kind, id: entry, action: .skipped,
                                                     note: "the remote's \(error.held.kind.rawValue) of entry \(error.held.id.prefix(12))"))
                }
            }
        }
        if let conflict { throw conflict }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    /// Adds `object.nonTensorSHA256` to a manifest that lacks it (created by a bissl before that
    /// field, schemas/remote.md "Versions"), computed from this zoo's file of the entry when that
    /// file is the manifest's object (the same SHA-256) and has a tensor index. The manifest is
    /// replaced only while it is the one read (`If-Match: etag`); nothing else in it changes.
    /// - Returns: the manifest now on the remote; nil when it was left as it is.
    /// - Throws: `ZooError.io` when this zoo's file cannot be read or the request fails.
    private func backfillNonTensorSHA256(_ listed: RemoteManifest, etag: String?, _ remote: RemoteStore) throws -> RemoteManifest? {
        guard listed.object.nonTensorSHA256 == nil, let etag else { return nil }
        let url = layout.objectURL(listed.id)
        guard try FileSHA256.digest(of: url).sha256 == listed.object.sha256,
              let digest = try ObjectDigests.nonTensorSHA256(of: url) else { return nil }
        var backfilled = listed
        backfilled.object.nonTensorSHA256 = digest
        return try remote.replace(RemoteStore.manifestKey(listed.id), try RemoteStore.encodeManifest(backfilled), etag: etag) ? backfilled : nil
    }

    struct RemoteLabelConflict: Error { var held: RemoteRef }

    /// The error of a push whose entry `id` has the local label `label` (of `kind`) that the remote
    /// gives another entry (`held`): the remedy for a name (which no command renames) differs from a tag's.
    static func remoteLabelConflict(_ label: String, kind: LabelKind, id: String, _ held: RemoteRef, _ remote: RemoteStore) -> ZooError {
        let holder = "'\(label)' on remote \(remote.config.name) is the \(held.kind.rawValue) of entry \(held.id.prefix(12)), not of this entry"
        switch kind {
        case .name:
            return .invalid("\(holder); a name cannot change, so push this entry under a tag: bissl untag \(label) (the entry stays), bissl tag \(id.prefix(12)) NEWLABEL, then push again")
        case .tag:
            return .invalid("\(holder); give yours another label (bissl untag \(label), bissl tag \(id.prefix(12)) NEWLABEL)\(held.kind == .tag ? " or move the tag with push --force" : "")")
        }
    }

    /// Points the remote label at `id`: created when absent (`If-None-Match: *`); when it points at
    /// another entry, moved only with `force` and only tag to tag (`If-Match` on the ref's ETag).
    /// Retried when another writer changes the ref in between (up to 20 times).
    /// - Throws: `RemoteLabelConflict` when another entry holds it.
    static func setRemoteRef(_ label: String, kind: LabelKind, id: String, force: Bool, _ remote: RemoteStore) throws -> LabelChange.Action {
        let wanted = RemoteRef(id: id, kind: kind, etag: nil)
        for _ in 0..<20 {
            if let current = try remote.ref(label) {
                if current.id == id { return .unchanged }
                guard force, kind == .tag, current.kind == .tag, let etag = current.etag else { throw RemoteLabelConflict(held: current) }
                if try remote.replace(RemoteStore.refKey(label), wanted.body, etag: etag) { return .moved }
            } else if try remote.create(RemoteStore.refKey(label), wanted.body) {
                return .created
            }
            Thread.sleep(forTimeInterval: Double.random(in: 0.01...0.1))
        }
        throw ZooError.io("label '\(label)' on remote \(remote.config.name) kept changing under concurrent writers; try again")
    }
}
