import Foundation

/// One shard of a remote's manifest index, `<prefix>/index/<hex digit>.json` (schemas/remote.md,
/// "Index"): copies of the manifests of entries whose id starts with that digit, by id.
struct IndexShard: Codable {
    /// Layout version of the shard (1).
    var version: Int
    var manifests: [String: RemoteManifest]
}

/// The manifest index: a cache that lets `list --remote` read 16 shards instead of one manifest per
/// entry. Manifests never change once created, so a copy is exact; which entries are on the remote
/// is still decided by the `entries/` listing alone, and a manifest the index lacks (pushed by an
/// older bissl, or a shard update lost to concurrent pushers) is read on its own.
extension RemoteStore {
    static let shardDigits = Array("0123456789abcdef")

    static func indexKey(_ digit: Character) -> String { "index/\(digit).json" }

    /// The manifests of `ids` (in that order, ids whose manifest vanished left out): from the index
    /// where its shards hold them, the others read one by one (both over parallel connections);
    /// and the manifests read that do not decode.
    /// - Throws: as `manifests(_:)`; a damaged shard is not an error (its manifests are read one by one).
    func indexedManifests(_ ids: [String]) throws -> (manifests: [RemoteManifest], damaged: [RemoteDamage]) {
        var all = try indexCopies(ids)
        let read = try manifests(ids.filter { all[$0] == nil })
        for m in read.manifests { all[m.id] = m }
        return (ids.compactMap { all[$0] }, read.damaged)
    }

    /// The index copies of the manifests of `ids` its shards hold (one read per shard, over
    /// parallel connections), by id.
    func indexCopies(_ ids: [String]) throws -> [String: RemoteManifest] {
        let wanted = Set(ids)
        let digits = Self.shardDigits.filter(Set(ids.compactMap(\.first)).contains)
        let cached = Locked<[String: RemoteManifest]>([:])
        try parallel(digits.count) { i, client in
            guard let (data, _) = try self.get(Self.indexKey(digits[i]), client: client) else { return }
            let shard = Self.decodeShard(data, digits[i]).filter { wanted.contains($0.key) }
            cached.update { $0.merge(shard) { a, _ in a } }
        }
        return cached.value
    }

    /// The well-formed version-1 manifests of a shard filed under their own id and digit; none when
    /// the shard does not decode.
    static func decodeShard(_ data: Data, _ digit: Character) -> [String: RemoteManifest] {
        guard let shard = parseShard(data), shard.version == 1 else { return [:] }
        return shard.manifests.filter { id, m in id.first == digit && m.version == 1 && isWellFormed(m, id: id) }
    }

    /// The shard `data` holds (at most 256 MiB), nil when it does not decode as one: damaged.
    private static func parseShard(_ data: Data) -> IndexShard? {
        guard data.count <= 256 << 20 else { return nil }
        return try? JSONDecoder.bissl().decode(IndexShard.self, from: data)
    }

    /// The shards `index/<hex digit>.json` that do not decode (garbage another tool wrote, a
    /// truncated copy): one read per shard, over parallel connections. `gc --remote` reports them and
    /// deletes them with `--remove-damaged`; readers treat them as empty, writers leave them alone.
    func damagedShards() throws -> [RemoteDamage] {
        let keys = Set(Self.shardDigits.map(Self.indexKey))
        let present = try list("index/").map(\.key).filter(keys.contains).sorted()
        let found = Locked<[RemoteDamage]>([])
        try parallel(present.count) { i, client in
            guard let (data, _) = try self.get(present[i], client: client), Self.parseShard(data) == nil else { return }
            found.update { $0.append(self.damage(.index, present[i], "not a manifest index shard {\"version\": 1, \"manifests\": {...}}")) }
        }
        return found.value.sorted { $0.key < $1.key }
    }

    /// Adds `manifests` to the shards they belong to: each shard is read, merged and written back
    /// only while unchanged (`If-Match` on the ETag read; `If-None-Match: *` for a new shard), up to
    /// 5 times when another writer got in between. Never fails: a shard left behind costs
    /// `list --remote` one read per manifest it lacks, nothing else. A shard that does not decode
    /// is left as it is (only `gc --remote --remove-damaged` deletes it).
    func updateIndex(_ manifests: [RemoteManifest]) {
        let groups = Dictionary(grouping: manifests) { $0.id.first ?? "0" }.filter { Self.shardDigits.contains($0.key) }
        let digits = Array(groups.keys).sorted()
        try? parallel(digits.count) { i, client in
            let digit = digits[i]
            let relative = Self.indexKey(digit)
            for _ in 0..<5 {
                let current = try self.get(relative, client: client)
                // A damaged shard is not written over: gc --remote reports it (`damagedShards`).
                if let current, Self.parseShard(current.data) == nil { return }
                var shard = current.map { Self.decodeShard($0.data, digit) } ?? [:]
                // New ids, and copies a manifest's backfilled `nonTensorSHA256` makes stale (`Zoo.push`).
                let new = groups[digit]!.filter { m in
                    shard[m.id].map { $0.object.nonTensorSHA256 == nil && m.object.nonTensorSHA256 != nil } ?? true
                }
                if new.isEmpty { return }
                for m in new { shard[m.id] = m }
                let body = try JSONEncoder.bissl().encode(IndexShard(version: 1, manifests: shard))
                let condition = current?.etag.map { ["If-Match": $0] } ?? ["If-None-Match": "*"]
                let r = try client.send("PUT", self.key(relative), headers: condition, body: .data(body))
                if r.status == 200 { return }
                guard r.status == 412 || r.status == 404 else { return }
            }
        }
    }
}
