import Foundation

/// What a remote's URL holds, as `bissl remote add` reports it (`RemoteZoo.survey`).
public struct RemoteSurvey: Codable, Equatable, Sendable {
    /// True when the prefix holds a bissl zoo (its `bissl-remote.json`).
    public var isZoo: Bool
    /// Entries listed under `entries/` (0 when `isZoo` is false).
    public var entries: Int
    /// True when the prefix holds keys although it is no bissl zoo (not bissl's, or a push that
    /// died before its marker: see schemas/remote.md, "Layout").
    public var otherKeys: Bool
    /// Remote URLs near the prefix that hold a bissl zoo (`RemoteStore.nearbyZoos`), when it holds none.
    public var nearby: [String]
}

/// The marker that makes a key prefix a bissl zoo, `<prefix>/bissl-remote.json` (schemas/remote.md,
/// "Layout"): the first push writes it; readers (`list`, `lineage`, `pull`, `gc --remote`) refuse a
/// prefix without it, so that a mistyped prefix is told apart from an empty zoo, and name the
/// zoos they find near it.
extension RemoteStore {
    static let formatKey = "bissl-remote.json"
    static let formatBody = Data("{\"format\":\"bissl-remote\",\"version\":1}\n".utf8)

    /// Checks `bissl-remote.json` (a remote of a newer layout is refused); writes it when `create` and missing.
    /// - Returns: whether the marker was there already; false when it was missing (and then
    ///   written when `create`, unless another pusher wrote it first).
    /// - Throws: `ZooError.corrupt` for a marker that is not bissl's, `.unsupported` for a newer layout.
    @discardableResult
    func checkFormat(create: Bool) throws -> Bool {
        if let (data, _) = try get(Self.formatKey) {
            struct Format: Decodable { var format: String; var version: Int }
            guard let f = try? JSONDecoder().decode(Format.self, from: data), f.format == "bissl-remote" else {
                throw ZooError.corrupt("\(display)/\(Self.formatKey) is not a bissl remote marker")
            }
            guard f.version <= 1 else { throw ZooError.unsupported("remote \(config.name) has layout version \(f.version) > 1; upgrade bissl") }
            return true
        }
        guard create else { return false }
        // False when another pusher created it between the GET and this PUT: then it was there.
        return !(try self.create(Self.formatKey, Self.formatBody))
    }

    /// Fails unless the prefix holds a bissl zoo, naming the zoos near it (`nearbyZoos`).
    /// - Throws: `ZooError.invalid` for a prefix without `bissl-remote.json`; as `checkFormat`.
    func requireZoo() throws {
        guard try !checkFormat(create: false) else { return }
        let nearby = (try? nearbyZoos()) ?? []
        throw ZooError.invalid("remote \(config.name) (\(display)) holds no bissl zoo: there is no \(Self.formatKey), so nothing was ever pushed there"
            + (nearby.isEmpty ? "" : "; bissl zoos nearby: " + nearby.joined(separator: ", "))
            + "; check its URL (bissl remote list), or push an entry to start a zoo there")
    }

    /// URLs (`s3://BUCKET/PREFIX`) of bissl zoos near this remote's prefix: its parent prefix, the
    /// parent's other sub-prefixes (a mistyped last component), and its own sub-prefixes (a prefix
    /// given too short). One listing by `/` of the parent and one of the prefix (their first 1,000
    /// sub-prefixes), then a HEAD of `bissl-remote.json` under at most 64 of them, over parallel
    /// connections. Sorted.
    /// - Throws: `ZooError.io` for a failed request.
    func nearbyZoos() throws -> [String] {
        let own = prefix.isEmpty ? "" : prefix + "/"
        var candidates: [String] = []
        if !prefix.isEmpty {
            let parent = prefix.contains("/") ? String(prefix[...prefix.lastIndex(of: "/")!]) : ""
            candidates.append(parent)
            candidates += try subPrefixes(parent).filter { $0 != own }
        }
        candidates += try subPrefixes(own)
        let checked = Array(candidates.prefix(64))
        let found = Locked<[String]>([])
        try parallel(checked.count) { i, client in
            let r = try client.send("HEAD", checked[i] + Self.formatKey)
            if r.status == 200 { found.update { $0.append(checked[i]) } }
        }
        return found.value.map { "s3://\(bucket)" + ($0.isEmpty ? "" : "/" + $0.dropLast()) }.sorted()
    }

    /// The sub-prefixes of the full key prefix `full` (`""` or ending in `/`): a ListObjectsV2 by
    /// delimiter `/`, first page.
    private func subPrefixes(_ full: String) throws -> [String] {
        let r = try client.send("GET", nil, query: [("list-type", "2"), ("prefix", full), ("delimiter", "/")])
        guard r.status == 200 else { throw failure("LIST", nil, r) }
        return XMLRecords(r.body, record: "CommonPrefixes").records.compactMap { $0["Prefix"] }.filter { $0.hasPrefix(full) && $0.count > full.count }
    }

    /// What the prefix holds (`RemoteSurvey`): the marker, and the entries listed, or whether any
    /// key is there and which zoos are near.
    func survey() throws -> RemoteSurvey {
        if try checkFormat(create: false) {
            return RemoteSurvey(isZoo: true, entries: try entryIDs().count, otherKeys: false, nearby: [])
        }
        let r = try client.send("GET", nil, query: [("list-type", "2"), ("prefix", prefix.isEmpty ? "" : prefix + "/"), ("max-keys", "1")])
        guard r.status == 200 else { throw failure("LIST", nil, r) }
        let any = !XMLRecords(r.body, record: "Contents").records.isEmpty
        return RemoteSurvey(isZoo: false, entries: 0, otherKeys: any, nearby: try nearbyZoos())
    }
}
