import Checkpoint
import Crypto
import Foundation

/// What the remote records of one entry, `<prefix>/entries/<id>.json` (schemas/remote.md,
/// "Manifests"): enough for `list --remote` and `lineage --remote` without downloading the object.
public struct RemoteManifest: Codable, Equatable, Sendable {
    /// Layout version of the manifest (1).
    public var version: Int
    /// The entry's content id (64 hex, `ContentID`).
    public var id: String
    /// The entry's object: SHA-256 of its bytes (which names it), its size in bytes, and the
    /// SHA-256 of its bytes outside its tensors.
    public var object: ObjectRef
    /// The catalog row of the entry as the pushing zoo derived it from the object (schemas/catalog.md).
    public var summary: EntrySummary
    /// ISO 8601 UTC time of the push that wrote the manifest.
    public var pushedAt: String

    public struct ObjectRef: Codable, Equatable, Sendable {
        public var sha256: String
        public var size: Int64
        /// `ObjectDigests.nonTensorSHA256` (64 hex), for an object with a tensor index; absent in
        /// manifests of objects without one and of bissl versions before it (schemas/remote.md, "Versions").
        public var nonTensorSHA256: String?
    }
}

/// A label on a remote, `<prefix>/refs/<label>`: `{"id": "<64 hex>", "kind": "name"|"tag"}`.
public struct RemoteRef: Codable, Equatable, Sendable {
    public var id: String
    public var kind: LabelKind
    /// The ETag the server gave the ref object (used for `If-Match` compare-and-swap); not stored.
    public var etag: String?

    enum CodingKeys: String, CodingKey { case id, kind }

    /// The ref object's bytes: sorted keys, one line.
    var body: Data {
        Data("{\"id\":\"\(id)\",\"kind\":\"\(kind.rawValue)\"}\n".utf8)
    }
}

/// A ref or manifest on a remote that does not decode (garbage bytes, another entry's manifest), a
/// key under `refs/` that is no valid label, or an index shard that does not decode:
/// `list --remote`, `lineage --remote`, `pull` of other entries and `gc --remote` skip it and name
/// it; reading it on its own (pulling its entry or label) fails naming it; `gc --remote
/// --remove-damaged` deletes it (schemas/remote.md, "Damaged refs and manifests").
public struct RemoteDamage: Error, Codable, Equatable, Sendable, CustomStringConvertible {
    /// `index`: a shard of the manifest index (a cache; only `gc --remote` reads every shard).
    public enum Kind: String, Codable, Sendable { case ref, manifest, index }
    public var kind: Kind
    /// Key relative to the remote's prefix: `refs/<label>`, `entries/<id>.json` or `index/<digit>.json`.
    public var key: String
    /// `s3://BUCKET/PREFIX/<key>`, control characters escaped (`\n`, `\u{1B}`) for messages.
    public var url: String
    /// What is wrong with it.
    public var problem: String
    /// Name of the remote.
    public var remote: String

    /// `<kind> <url> is damaged (<problem>)`.
    public var summary: String { "\(kind.rawValue) \(url) is damaged (\(problem))" }
    /// The command that removes it.
    public var remedy: String { "bissl gc --remote \(remote) --remove-damaged removes it" }
    /// The error a read of it fails with: `summary` and `remedy`.
    public var description: String { "\(summary); \(remedy)" }
}

extension Result where Failure == RemoteDamage {
    /// The value read; for damage, `ZooError.corrupt` with its description.
    func checked() throws -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let damage): throw ZooError.corrupt(damage.description)
        }
    }
}

/// One key of a listing.
struct RemoteKey {
    /// Key relative to the remote's prefix.
    var key: String
    var size: Int64
    var lastModified: Date
    var etag: String
}

/// The objects of one remote (schemas/remote.md, "Layout"), on an `S3Client`:
///
/// ```
/// <prefix>/bissl-remote.json               {"format":"bissl-remote","version":1}
/// <prefix>/objects/<2 hex>/<62 hex>.h5     entry objects, named by the SHA-256 of their bytes
/// <prefix>/entries/<content id>.json       manifests (`RemoteManifest`); an entry is on the remote iff its manifest is
/// <prefix>/index/<hex digit>.json          copies of manifests by the id's first digit (`IndexShard`), a cache
/// <prefix>/refs/<label>                    names and tags (`RemoteRef`)
/// ```
final class RemoteStore: @unchecked Sendable {
    let config: RemoteConfig
    let bucket: String
    let prefix: String
    let credentials: S3Credentials?
    let client: S3Client
    /// Objects above this size go up in parts (S3 multipart upload) of `partSize` bytes and come
    /// down in ranges of as many (boto3's defaults, `TransferConfig`: 8 MiB and 8 MiB).
    var multipartThreshold: Int64 = 8 << 20
    var partSize: Int64 = 8 << 20
    /// Connections used for parallel part uploads and manifest/ref reads.
    var connections = 8
    /// Where an interrupted multipart upload leaves what lets it resume (`TransferRecords`): the
    /// pushing zoo's `tmp/`; nil for none (a failed multipart upload is then aborted).
    var scratch: URL?

    /// - Throws: `ZooError.invalid` for a bad configuration or an unreadable credentials profile.
    init(_ config: RemoteConfig, credentials: S3Credentials? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.config = config
        let location = try config.location()
        bucket = location.bucket
        prefix = location.prefix
        self.credentials = try credentials ?? S3Credentials.find(environment)
        client = try S3Client(bucket: bucket, region: config.signingRegion(environment), endpoint: config.endpoint, credentials: self.credentials)
    }

    /// Bytes per second each connection moves at most; nil for no limit.
    var maxRate: Int64? {
        get { client.maxRate }
        set { client.maxRate = newValue }
    }

    /// A second client to the same bucket (one per parallel connection).
    func newClient() throws -> S3Client {
        let c = try S3Client(bucket: bucket, region: client.region, endpoint: config.endpoint, credentials: credentials)
        c.maxRate = client.maxRate
        c.attempts = client.attempts
        return c
    }

    /// `s3://bucket/prefix` for messages.
    var display: String { "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)") }

    /// Bytes of a ref and of a manifest read at most (schemas/remote.md, "Damaged refs and manifests"):
    /// a longer one is damaged, and its reader stops there, so a huge object under `refs/` or
    /// `entries/` costs no memory.
    static let maxRefBytes = 4096
    static let maxManifestBytes = 16 << 20

    /// The bytes and ETag of a ref or manifest (at most `limit` bytes), nil when it does not exist;
    /// `data` is nil when it holds more than `limit` bytes.
    func getDocument(_ relative: String, limit: Int, client: S3Client? = nil) throws -> (data: Data?, etag: String?)? {
        do {
            guard let (data, etag) = try get(relative, client: client, maxBody: limit) else { return nil }
            return (data, etag)
        } catch is S3Client.BodyTooLarge {
            return (nil, nil)
        }
    }

    func key(_ relative: String) -> String { prefix.isEmpty ? relative : prefix + "/" + relative }
    static func objectKey(sha256: String) -> String { "objects/\(sha256.prefix(2))/\(sha256.dropFirst(2)).h5" }
    static func manifestKey(_ id: String) -> String { "entries/\(id).json" }
    static func refKey(_ label: String) -> String { "refs/\(label)" }

    // MARK: - requests

    /// Fails with one line for a status the caller did not expect.
    func failure(_ method: String, _ relative: String?, _ r: HTTPResponse) -> ZooError {
        let where_ = relative.map { "\(display)/\($0)" } ?? display
        switch (r.status, r.errorCode) {
        case (_, "NoSuchBucket"?):
            return .io("bucket \(bucket) does not exist\(config.endpoint.map { " at \($0)" } ?? "") (remote \(config.name))")
        case (403, _), (401, _):
            return .io("access denied to \(where_) (\(r.errorCode ?? "HTTP \(r.status)")): check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) for remote \(config.name)")
        default:
            return .io("\(method) \(where_) failed: HTTP \(r.status)\(r.errorCode.map { " \($0)" } ?? "")\(r.errorMessage.map { ": \($0)" } ?? "")")
        }
    }

    /// The object's bytes and ETag, nil when it does not exist.
    /// - Throws: `S3Client.BodyTooLarge` when it holds more than `maxBody` bytes (not read past them).
    func get(_ relative: String, client: S3Client? = nil, maxBody: Int? = nil) throws -> (data: Data, etag: String?)? {
        let r = try (client ?? self.client).send("GET", key(relative), maxBody: maxBody)
        if r.status == 404 && r.errorCode != "NoSuchBucket" { return nil }
        guard r.status == 200 else { throw failure("GET", relative, r) }
        return (r.body, r.etag)
    }

    /// True when the object exists. (HEAD answers carry no error body, so a missing bucket reads as a
    /// missing key here: every command reads `bissl-remote.json` with GET first, which tells them apart.)
    func exists(_ relative: String) throws -> Bool {
        let r = try client.send("HEAD", key(relative))
        if r.status == 404 { return false }
        guard r.status == 200 else { throw failure("HEAD", relative, r) }
        return true
    }

    /// Writes the object only when no object has its key (`If-None-Match: *`).
    /// - Returns: true when written, false when the key existed already (HTTP 412).
    func create(_ relative: String, _ body: Data) throws -> Bool {
        let r = try client.send("PUT", key(relative), headers: ["If-None-Match": "*"], body: .data(body))
        if r.status == 412 { return false }
        guard r.status == 200 else { throw failure("PUT", relative, r) }
        return true
    }

    /// Replaces the object only while its ETag is `etag` (`If-Match`).
    /// - Returns: false when the object changed or vanished meanwhile (HTTP 412).
    func replace(_ relative: String, _ body: Data, etag: String) throws -> Bool {
        let r = try client.send("PUT", key(relative), headers: ["If-Match": etag], body: .data(body))
        if r.status == 412 || r.status == 404 { return false }
        guard r.status == 200 else { throw failure("PUT", relative, r) }
        return true
    }

    func delete(_ relative: String) throws {
        let r = try client.send("DELETE", key(relative))
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw failure("DELETE", relative, r) }
    }

    /// Every key under `relativePrefix` (ListObjectsV2, 1,000 keys a page), keys relative to the remote's prefix.
    func list(_ relativePrefix: String) throws -> [RemoteKey] {
        var out: [RemoteKey] = []
        var token: String?
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        var progress = ListingProgress("listing \(display)/\(relativePrefix)")
        repeat {
            // Keys come URL-encoded (decoded by `XMLRecords.listed`): XML cannot carry a control
            // character, and a key altered on the way would make a DELETE target another key.
            var query = [("list-type", "2"), ("prefix", key(relativePrefix)), ("encoding-type", "url")]
            if let token { query.append(("continuation-token", token)) }
            let r = try client.send("GET", nil, query: query)
            guard r.status == 200 else { throw failure("LIST", relativePrefix, r) }
            let parsed = XMLRecords(r.body, record: "Contents")
            let strip = prefix.isEmpty ? 0 : prefix.count + 1
            let pageStart = out.count
            for c in parsed.records {
                guard let k = c["Key"].map(parsed.listed), k.count > strip else { continue }
                let stamp = c["LastModified"] ?? ""
                out.append(RemoteKey(key: String(k.dropFirst(strip)), size: Int64(c["Size"] ?? "") ?? 0,
                                     lastModified: formatter.date(from: stamp) ?? plain.date(from: stamp) ?? Date(),
                                     etag: c["ETag"] ?? ""))
            }
            let next = parsed.top["IsTruncated"] == "true" ? parsed.top["NextContinuationToken"] : nil
            // A page that says more follow must advance (a server that loops would hold the command forever).
            guard try progress.next(after: out[pageStart...].map(\.key), token: next) else { break }
            token = next
        } while token != nil
        return out
    }

    /// Runs `body(index, client)` for every index in `0..<count` on up to `connections` connections,
    /// one thread each. (Threads of their own, not `DispatchQueue.concurrentPerform`, which runs at
    /// most one iteration per CPU core at a time: requests wait on the network, not on a core.)
    /// - Throws: the first error any call threw.
    func parallel(_ count: Int, _ body: @escaping @Sendable (Int, S3Client) throws -> Void) throws {
        guard count > 0 else { return }
        let workers = min(connections, count)
        let state = ParallelState()
        let clients = try (0..<workers).map { $0 == 0 ? client : try newClient() }
        let group = DispatchGroup()
        for w in 0..<workers {
            group.enter()
            let client = clients[w]
            let thread = Thread {
                while let i = state.next(count) {
                    do { try body(i, client) } catch { state.fail(error) }
                }
                group.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        if let error = state.error { throw error }
    }

    /// The manifest of entry `id`, nil when the remote does not hold the entry.
    /// - Throws: `ZooError.corrupt` naming the key for a manifest that does not decode or names
    ///   another id (`RemoteDamage`).
    func manifest(_ id: String, client: S3Client? = nil) throws -> RemoteManifest? {
        try manifestWithETag(id, client: client)?.manifest
    }

    /// The manifest of entry `id` and the ETag it was read with, nil when the remote does not hold the entry.
    /// - Throws: as `manifest(_:client:)`.
    func manifestWithETag(_ id: String, client: S3Client? = nil) throws -> (manifest: RemoteManifest, etag: String?)? {
        guard let (data, etag) = try getDocument(Self.manifestKey(id), limit: Self.maxManifestBytes, client: client) else { return nil }
        return (try decodeManifest(data, id: id).checked(), etag)
    }

    /// The manifest of entry `id` or its damage (`decodeManifest`), nil when the remote does not hold the entry.
    func manifestOrDamage(_ id: String, client: S3Client? = nil) throws -> Result<RemoteManifest, RemoteDamage>? {
        guard let (data, _) = try getDocument(Self.manifestKey(id), limit: Self.maxManifestBytes, client: client) else { return nil }
        return try decodeManifest(data, id: id)
    }

    /// The manifest `data` holds, or the damage when it is not a well-formed manifest of entry `id`
    /// or is nil (more than `maxManifestBytes`).
    /// - Throws: `ZooError.unsupported` for a manifest of a later layout version.
    func decodeManifest(_ data: Data?, id: String) throws -> Result<RemoteManifest, RemoteDamage> {
        guard let data, data.count <= Self.maxManifestBytes else {
            return .failure(damage(.manifest, Self.manifestKey(id), "more than \(Self.maxManifestBytes >> 20) MiB, more than any manifest"))
        }
        guard let m = try? JSONDecoder.bissl().decode(RemoteManifest.self, from: data), Self.isWellFormed(m, id: id) else {
            return .failure(damage(.manifest, Self.manifestKey(id), "not a version-1 manifest of entry \(id.prefix(12))"))
        }
        guard m.version == 1 else { throw ZooError.unsupported("manifest of \(id.prefix(12)) has version \(m.version) > 1; upgrade bissl") }
        return .success(m)
    }

    /// A `RemoteDamage` of the key `relative` on this remote.
    func damage(_ kind: RemoteDamage.Kind, _ relative: String, _ problem: String) -> RemoteDamage {
        RemoteDamage(kind: kind, key: relative, url: "\(display)/\(relative)".escapingControlCharacters, problem: problem, remote: config.name)
    }

    /// True when `m` describes entry `id` and names an object by a SHA-256 and a size (and, if it
    /// has one, gives a well-formed `nonTensorSHA256`).
    static func isWellFormed(_ m: RemoteManifest, id: String) -> Bool {
        m.id == id && m.summary.id == id && isDigest(m.object.sha256) && m.object.size >= 0 && (m.object.nonTensorSHA256.map(isDigest) ?? true)
    }

    private static func isDigest(_ hex: String) -> Bool { hex.count == 64 && ZooLayout.isHex(hex) }

    static func encodeManifest(_ m: RemoteManifest) throws -> Data {
        try JSONEncoder.bissl().encode(m) + Data("\n".utf8)
    }

    /// Ids of every entry on the remote (keys `entries/<64 hex>.json`), sorted.
    func entryIDs() throws -> [String] {
        try list("entries/").compactMap { k -> String? in
            let name = k.key.dropFirst("entries/".count)
            guard name.hasSuffix(".json") else { return nil }
            let id = String(name.dropLast(5))
            return ZooLayout.isFullID(id) ? id : nil
        }.sorted()
    }

    /// The manifests of `ids`, read over parallel connections (ids whose manifest vanished meanwhile
    /// are left out), and the manifests among them that do not decode (by id order).
    func manifests(_ ids: [String]) throws -> (manifests: [RemoteManifest], damaged: [RemoteDamage]) {
        let results = Locked<[Int: Result<RemoteManifest, RemoteDamage>]>([:])
        try parallel(ids.count) { i, client in
            if let read = try self.manifestOrDamage(ids[i], client: client) { results.update { $0[i] = read } }
        }
        let all = results.value
        var manifests: [RemoteManifest] = [], damaged: [RemoteDamage] = []
        for i in ids.indices {
            switch all[i] {
            case .success(let m)?: manifests.append(m)
            case .failure(let d)?: damaged.append(d)
            case nil: break
            }
        }
        return (manifests, damaged)
    }

    /// The ref of `label`, nil when the remote has none.
    /// - Throws: `ZooError.corrupt` naming the key for a ref that does not decode (`RemoteDamage`).
    func ref(_ label: String, client: S3Client? = nil) throws -> RemoteRef? {
        guard let (data, etag) = try getDocument(Self.refKey(label), limit: Self.maxRefBytes, client: client) else { return nil }
        var ref = try decodeRef(data, label: label).checked()
        ref.etag = etag
        return ref
    }

    /// The ref `data` holds, or the damage when it does not decode or is nil (more than `maxRefBytes`).
    func decodeRef(_ data: Data?, label: String) -> Result<RemoteRef, RemoteDamage> {
        guard let data, data.count <= Self.maxRefBytes else {
            return .failure(damage(.ref, Self.refKey(label), "more than \(Self.maxRefBytes) bytes, more than any ref"))
        }
        guard let ref = try? JSONDecoder().decode(RemoteRef.self, from: data), ZooLayout.isFullID(ref.id) else {
            return .failure(damage(.ref, Self.refKey(label), "not {\"id\": <64 hex>, \"kind\": name|tag}"))
        }
        return .success(ref)
    }

    /// Every label on the remote, and the refs that do not decode or whose key is no valid label
    /// (`LabelRules`: a key another tool wrote, which no command could name), by key. A ref whose
    /// listed ETag is the MD5 of the canonical body for one of `knownIDs` (S3's ETag of a
    /// single-part upload) is recognised without being read; others are read over parallel connections.
    func refs(knownIDs: [String] = []) throws -> (refs: [String: RemoteRef], damaged: [RemoteDamage]) {
        var invalid: [RemoteDamage] = []
        let keys = try list("refs/").filter { k in
            guard (try? LabelRules.validate(String(k.key.dropFirst(5)))) == nil else { return true }
            invalid.append(damage(.ref, k.key, "not a valid label: labels are 1-100 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit, not 6 or more hex digits alone"))
            return false
        }
        var candidates: [String: RemoteRef] = [:]
        for id in knownIDs {
            for kind in LabelKind.allCases {
                let ref = RemoteRef(id: id, kind: kind, etag: nil)
                candidates["\"" + lowercaseHex(Insecure.MD5.hash(data: ref.body)) + "\""] = ref
            }
        }
        var out: [String: RemoteRef] = [:]
        var unread: [String] = []
        for k in keys {
            let label = String(k.key.dropFirst(5))
            if var ref = candidates[k.etag] {
                ref.etag = k.etag
                out[label] = ref
            } else {
                unread.append(label)
            }
        }
        let read = Locked<[String: Result<RemoteRef, RemoteDamage>]>([:])
        let labels = unread
        try parallel(labels.count) { i, client in
            guard let (data, etag) = try self.getDocument(Self.refKey(labels[i]), limit: Self.maxRefBytes, client: client) else { return }
            let decoded = self.decodeRef(data, label: labels[i]).map { r in
                var r = r
                r.etag = etag
                return r
            }
            read.update { $0[labels[i]] = decoded }
        }
        var damaged = invalid
        for (label, result) in read.value.sorted(by: { $0.key < $1.key }) {
            switch result {
            case .success(let r): out[label] = out[label] ?? r
            case .failure(let d): damaged.append(d)
            }
        }
        return (out, damaged.sorted { $0.key < $1.key })
    }

    /// Resolves REF against the remote as `Zoo.resolve` does locally: a full id with a manifest, a
    /// label, or a unique id prefix of at least 6 hex digits.
    /// - Throws: `ZooError.invalid` naming the remote when nothing matches, `.ambiguous` for a shared prefix.
    func resolve(_ ref: String) throws -> String {
        let lower = ref.lowercased()
        if ZooLayout.isFullID(lower), try exists(Self.manifestKey(lower)) { return lower }
        if (try? LabelRules.validate(ref)) != nil, let r = try self.ref(ref) { return r.id }
        if lower.count >= Zoo.minimumPrefixLength, ZooLayout.isHex(lower) {
            let matches = try list("entries/" + lower).map { String($0.key.dropFirst("entries/".count).prefix(64)) }.filter(ZooLayout.isFullID)
            if matches.count == 1 { return matches[0] }
            if matches.count > 1 {
                throw ZooError.ambiguous("'\(ref)' is ambiguous on remote \(config.name): \(matches.count) entries start with it: \(matches.prefix(10).map { String($0.prefix(16)) }.joined(separator: ", ")); give more digits")
            }
        }
        throw ZooError.invalid("no entry, name or tag '\(ref)' on remote \(config.name) (\(display)); bissl list --remote \(config.name) shows what is there")
    }
}

/// A value shared between threads behind a lock.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.withLock { stored } }
    func update<R>(_ body: (inout T) throws -> R) rethrows -> R { try lock.withLock { try body(&stored) } }
}

/// Work distribution of `RemoteStore.parallel`: the next index, and the first error.
private final class ParallelState: @unchecked Sendable {
    private let lock = NSLock()
    private var index = 0
    private(set) var error: Error?
    func next(_ count: Int) -> Int? {
        lock.withLock {
            guard error == nil, index < count else { return nil }
            defer { index += 1 }
            return index
        }
    }
    func fail(_ e: Error) { lock.withLock { if error == nil { error = e } } }
}
