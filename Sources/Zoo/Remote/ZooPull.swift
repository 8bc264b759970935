import Checkpoint
import Foundation

extension Zoo {
    /// Downloads the entry REF names on `remote` (a remote label, a full id or a unique id prefix)
    /// into this zoo (schemas/remote.md, "Pull"): first every ancestor the remote holds and this zoo
    /// lacks (unless `ancestors` is false), then the entry. Each object is downloaded to `tmp/` and
    /// checked against the manifest (`RemoteStore.downloadObject`: its size, and its content id
    /// recomputed from its tensors with the SHA-256 of its other bytes, or, for a manifest without
    /// that digest, its SHA-256 and then its content id), read in the HDF5 reader process (its tensor
    /// index must agree with its metadata) and placed as `import` places a file; a killed pull leaves at
    /// most a staging file `gc` removes. The remote labels of every entry pulled are applied where
    /// this zoo has them free (else `LabelChange.skipped`, with the local holder in `note`).
    ///
    /// - Throws: `ZooError.corrupt` naming the entry for an object whose bytes or content id
    ///   differ from its manifest (nothing of it is imported; ancestors pulled before stay), and,
    ///   before anything is downloaded, naming the ancestor and its key when the manifest of an
    ///   ancestor this zoo lacks is damaged (`RemoteDamage`),
    ///   `.invalid` when REF names nothing on the remote, `.io` for transport failures.
    /// - Parameter maxRate: bytes per second each connection receives at most (nil: no limit).
    public func pull(_ ref: String, from config: RemoteConfig, ancestors: Bool = true, maxRate: Int64? = nil,
                     progress: TransferProgress? = nil) throws -> TransferReport {
        let remote = try RemoteStore(config)
        remote.maxRate = maxRate
        return try pull(ref, remote, ancestors: ancestors, progress: progress)
    }

    func pull(_ ref: String, _ remote: RemoteStore, ancestors: Bool, progress: TransferProgress?) throws -> TransferReport {
        let started = Date()
        try requireWritable()
        try remote.requireZoo()
        let id = try remote.resolve(ref)
        guard let root = try remote.manifest(id) else {
            throw ZooError.invalid("entry \(id.prefix(12)) is not on remote \(remote.config.name) (a label points at it, its manifest is missing)")
        }
        // Ancestors breadth-first with a visited set (provenance may hold cycles), then farthest first.
        var manifests = [id: root]
        var order = [id]
        // Refs and manifests that do not decode are skipped and named (schemas/remote.md, "Damaged refs and manifests").
        var damaged: [RemoteDamage] = []
        if ancestors {
            var frontier = [root]
            var seen: Set<String> = [id]
            while !frontier.isEmpty {
                var next: [RemoteManifest] = []
                for m in frontier {
                    for parent in m.summary.parents where seen.insert(parent.id).inserted {
                        switch try remote.manifestOrDamage(parent.id) {
                        case .success(let pm)?:
                            manifests[parent.id] = pm
                            order.append(parent.id)
                            next.append(pm)
                        case .failure(let d)?:
                            // An ancestor this zoo holds needs nothing from the remote; one it lacks
                            // cannot be pulled, so nothing is (the pull would promise a lineage it cannot give).
                            guard try catalog.read({ try Catalog.exists(parent.id, $0) }) else {
                                throw ZooError.corrupt("ancestor \(parent.id.prefix(12)) of \(ref) cannot be pulled: \(d.summary); nothing pulled. "
                                                       + "\(d.remedy) (pulls then skip the ancestor), or bissl pull \(ref) --no-ancestors pulls the entry alone")
                            }
                            damaged.append(d)
                        case nil: break
                        }
                    }
                }
                frontier = next
            }
            order.reverse()
        }
        // The remote's labels are listed on a connection of their own while the first object arrives.
        let labelStore = try RemoteStore(remote.config, credentials: remote.credentials)
        labelStore.client.attempts = remote.client.attempts
        labelStore.maxRate = remote.maxRate
        let listing = Background { try labelStore.refs(knownIDs: try labelStore.entryIDs()) }
        var labelsByID: [String: [(String, LabelKind)]]?
        func labels(_ entry: String) throws -> [(String, LabelKind)] {
            if labelsByID == nil {
                var byID: [String: [(String, LabelKind)]] = [:]
                let listed = try listing.value()
                damaged += listed.damaged
                for (label, r) in listed.refs.sorted(by: { ($0.value.kind == .name ? 0 : 1, $0.key) < ($1.value.kind == .name ? 0 : 1, $1.key) }) {
                    byID[r.id, default: []].append((label, r.kind))
                }
                labelsByID = byID
            }
            return labelsByID![entry] ?? []
        }
        var report = TransferReport(remote: remote.config.name, id: id, entries: [], labels: [], bytes: 0, seconds: 0)
        for entry in order {
            let m = manifests[entry]!
            var sent = false
            var restored: [String] = [], notRestored: [String] = []
            if try catalog.read({ try Catalog.exists(entry, $0) }) {
                let (free, skipped) = try freeLabels(try labels(entry), for: entry)
                report.labels += skipped
                let added = try catalog.write { db in try labelExisting(entry, free, db) }.labelsAdded
                for (label, kind) in free {
                    report.labels.append(LabelChange(label: label, kind: kind, id: entry, action: added.contains(label) ? .created : .unchanged))
                }
            } else {
                // The object's size is checked against the server before anything is planned or written.
                try remote.checkObjectSize(m)
                // The download's folder, locked while this pull runs; what an interrupted pull of this
                // object left is taken over and resumed.
                let claim = try TransferRecords.claim(in: layout.tmp, sha256: m.object.sha256, kind: "pull", folder: true)
                let folder = claim.url
                defer { claim.lock.release() }   // after the folder's removal below (defers run in reverse)
                let staged = folder.appendingPathComponent("object.h5")
                // The HDF5 reader process starts now and, once every byte is written, reads the file's
                // metadata while the last bytes are hashed and flushed (a failed download kills it unused).
                let reader = Locked(try? UntrustedCheckpointFile.startReader(staged))
                // Objects whose manifest has no digest of their non-tensor bytes were checked by their
                // SHA-256 alone: their content id is hashed from the tensors read.
                let hashRead = m.object.nonTensorSHA256 == nil
                var reading: Background<Reading>?
                let download: RemoteStore.Download
                do {
                    download = try remote.downloadObject(m, to: staged, record: folder.appendingPathComponent("record.json"), written: {
                        reading = Background {
                            try Reading(contentID: hashRead) {
                                try UntrustedCheckpointFile.read(staged, reader: reader.update { r in defer { r = nil }; return r }, zooObject: true)
                            }
                        }
                    }, progress: progress.map { p in { @Sendable done, total in p(entry, done, total) } })
                } catch ZooError.corrupt(let message) {
                    try? FileManager.default.removeItem(at: folder)
                    throw ZooError.corrupt(message)
                }
                // The bytes are the manifest's: whatever happens next, they are not needed again.
                defer { try? FileManager.default.removeItem(at: folder) }
                let read: Reading
                do {
                    // Not yet verified against its content id: libhdf5 read it in the HDF5 reader process.
                    read = try reading!.value()
                } catch let error as CheckpointError {
                    throw ZooError.corrupt("the object of entry \(entry.prefix(12)) on remote \(remote.config.name) is not a readable checkpoint (\(error.description)); not imported")
                }
                let checkpoint = read.contents.checkpoint
                // The download hashed the content id through the tensor index, which the read found to
                // agree with the HDF5 metadata (`zooObject`): it is the file's.
                let actual = download.contentID ?? read.contentID ?? ""
                guard actual == entry else {
                    throw ZooError.corrupt("the object of entry \(entry.prefix(12)) on remote \(remote.config.name) is corrupt: it holds content \(actual.prefix(12)); not imported")
                }
                let (free, skipped) = try freeLabels(try labels(entry), for: entry)
                report.labels += skipped
                let name = free.first { $0.1 == .name }?.0
                // The download scanned the float32 tensors for the health warnings as it hashed them.
                let details = read.details ?? EntryDetails(checkpoint, scanned: download.scans)
                let result = try add(checkpoint, name: name, tags: free.filter { $0.1 == .tag }.map(\.0), staged: (staged, actual, details))
                sent = result.added
                // Content `gc` had unlisted as damaged gets its old labels back where free, as `import` gives them.
                restored = result.labelsRestored
                notRestored = result.labelsNotRestored
                report.bytes += download.received
                for (label, kind) in free {
                    report.labels.append(LabelChange(label: label, kind: kind, id: entry, action: sent || result.labelsAdded.contains(label) ? .created : .unchanged))
                }
            }
            report.entries.append(TransferredEntry(id: entry, name: try labels(entry).first { $0.1 == .name }?.0, transferred: sent, size: m.object.size,
                                                   labelsRestored: restored.isEmpty ? nil : restored, labelsNotRestored: notRestored.isEmpty ? nil : notRestored))
        }
        if !damaged.isEmpty { report.damaged = damaged }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    /// Splits remote labels of `id` into those this zoo can give it (free, or already its own; a
    /// remote name becomes a tag when the local entry has another name) and those held by other
    /// local entries.
    private func freeLabels(_ labels: [(String, LabelKind)], for id: String) throws -> (free: [(String, LabelKind)], skipped: [LabelChange]) {
        try catalog.read { db in
            var free: [(String, LabelKind)] = []
            var skipped: [LabelChange] = []
            var hasName = try Catalog.labels(of: id, db).contains { $0.kind == .name }
            for (label, kind) in labels {
                if let owner = try Catalog.labelOwner(label, db) {
                    if owner.id == id { continue }
                    skipped.append(LabelChange(label: label, kind: kind, id: id, action: .skipped,
                                               note: "this zoo's \(owner.kind.rawValue) of entry \(owner.id.prefix(12))"))
                    continue
                }
                let local: LabelKind = kind == .name && !hasName ? .name : .tag
                if local == .name { hasName = true }
                free.append((label, local))
            }
            return (free, skipped)
        }
    }
}

/// A downloaded object read in the HDF5 reader process (not yet verified against its content id)
/// and, when asked (an object checked by its SHA-256), its content id computed from the tensors
/// side by side with the catalog's `EntryDetails` of it (a scan of its floating-point tensors for
/// health warnings).
private struct Reading: Sendable {
    var contents: UntrustedCheckpointFile.Contents
    var details: EntryDetails?
    var contentID: String?

    /// - Throws: `CheckpointError` from `read`.
    init(contentID: Bool, _ read: () throws -> UntrustedCheckpointFile.Contents) throws {
        contents = try read()
        guard contentID else { return }
        let checkpoint = contents.checkpoint
        let id = Background { ContentID.compute(checkpoint) }
        details = EntryDetails(checkpoint)
        self.contentID = try id.value()
    }
}
