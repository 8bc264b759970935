import Checkpoint
import Foundation

/// A remote a zoo knows: a name and an S3 location (schemas/remote.md, "Configuration"). Stored in
/// `<zoo>/remotes.json`; credentials never are (see `S3Credentials`).
public struct RemoteConfig: Codable, Equatable, Sendable {
    /// 1-64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
    public var name: String
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    public var url: String
    /// An S3-compatible server's base URL (`http://127.0.0.1:8333`); nil for AWS S3.
    public var endpoint: String?
    /// Signing region; nil means `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    public var region: String?

    /// Checks the name, URL and endpoint.
    /// - Throws: `ZooError.invalid` saying what is wrong.
    public init(name: String, url: String, endpoint: String? = nil, region: String? = nil) throws {
        let nameOK = name.utf8.count <= 64 && name.utf8.allSatisfy {
            (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D
        }
        guard nameOK, let first = name.unicodeScalars.first, CharacterSet.alphanumerics.contains(first), first.isASCII else {
            throw ZooError.invalid("invalid remote name '\(name)': use 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit")
        }
        self.name = name
        self.url = url
        self.endpoint = endpoint
        self.region = region
        _ = try location()
        if let endpoint {
            guard let u = URL(string: endpoint), ["http", "https"].contains(u.scheme?.lowercased() ?? ""), u.host != nil, u.query == nil else {
                throw ZooError.invalid("invalid endpoint '\(endpoint)': give an http:// or https:// URL such as http://127.0.0.1:8333")
            }
        }
        if let region, region.isEmpty || !region.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) {
            throw ZooError.invalid("invalid region '\(region)'")
        }
    }

    /// Bucket and key prefix (without slashes at either end; empty for the bucket root) of `url`.
    /// - Throws: `ZooError.invalid` for anything but `s3://BUCKET[/PREFIX]` with a valid bucket name
    ///   (3-63 characters of `a-z 0-9 . -`, as S3 bucket naming rules require).
    public func location() throws -> (bucket: String, prefix: String) {
        guard url.hasPrefix("s3://") else {
            throw ZooError.invalid("invalid remote URL '\(url)': use s3://BUCKET or s3://BUCKET/PREFIX")
        }
        let rest = url.dropFirst(5)
        let bucket = String(rest.prefix { $0 != "/" })
        let prefix = rest.dropFirst(bucket.count).split(separator: "/").joined(separator: "/")
        guard (3...63).contains(bucket.count), bucket.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "-" }),
              let f = bucket.first, f.isLetter || f.isNumber else {
            throw ZooError.invalid("invalid bucket in '\(url)': S3 bucket names are 3-63 characters of a-z 0-9 . -")
        }
        guard prefix.utf8.count <= 512, prefix.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw ZooError.invalid("invalid key prefix in '\(url)'")
        }
        return (bucket, prefix)
    }

    /// The signing region: `region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    public func signingRegion(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        region ?? [environment["AWS_REGION"], environment["AWS_DEFAULT_REGION"]].compactMap { $0 }.first { !$0.isEmpty } ?? "us-east-1"
    }
}

/// The remotes of one zoo: `<zoo>/remotes.json`, `{"version": 1, "remotes": [RemoteConfig...]}`,
/// replaced atomically on every change.
public enum Remotes {
    public static func file(_ layout: ZooLayout) -> URL { layout.root.appendingPathComponent("remotes.json") }

    struct File: Codable {
        var version: Int
        var remotes: [RemoteConfig]
    }

    /// The zoo's remotes in the order they were added (empty when none).
    /// - Throws: `ZooError.corrupt` for an unreadable file, `.unsupported` for a newer version.
    public static func load(_ layout: ZooLayout) throws -> [RemoteConfig] {
        let url = file(layout)
        guard let data = FileManager.default.contents(atPath: url.path) else { return [] }
        guard data.count <= 1 << 20, let decoded = try? JSONDecoder().decode(File.self, from: data) else {
            throw ZooError.corrupt("\(url.path) is not a remotes file; fix or remove it")
        }
        guard decoded.version == 1 else { throw ZooError.unsupported("\(url.path) has version \(decoded.version) > 1; upgrade bissl") }
        return decoded.remotes
    }

    /// Adds a remote.
    /// - Throws: `ZooError.invalid` when the name is taken.
    public static func add(_ remote: RemoteConfig, _ layout: ZooLayout) throws {
        var remotes = try load(layout)
        if remotes.contains(where: { $0.name == remote.name }) {
            throw ZooError.invalid("remote '\(remote.name)' exists already (bissl remote remove \(remote.name) first)")
        }
        remotes.append(remote)
        try save(remotes, layout)
    }

    /// Removes a remote from the zoo's list (nothing on the remote changes).
    /// - Throws: `ZooError.invalid` when there is no such remote.
    @discardableResult
    public static func remove(_ name: String, _ layout: ZooLayout) throws -> RemoteConfig {
        var remotes = try load(layout)
        guard let index = remotes.firstIndex(where: { $0.name == name }) else { throw unknown(name, remotes, layout) }
        let removed = remotes.remove(at: index)
        try save(remotes, layout)
        return removed
    }

    /// The remote `name`, or the zoo's only remote when `name` is nil.
    /// - Throws: `ZooError.invalid` when there is no such remote, or none/several and no name.
    public static func select(_ name: String?, _ layout: ZooLayout) throws -> RemoteConfig {
        let remotes = try load(layout)
        if let name {
            guard let remote = remotes.first(where: { $0.name == name }) else { throw unknown(name, remotes, layout) }
            return remote
        }
        guard remotes.count == 1 else {
            throw ZooError.invalid(remotes.isEmpty
                ? { let n = noRemote(layout); return "\(n.reason) (\(n.advice))" }()
                : "the zoo has \(remotes.count) remotes (\(remotes.map(\.name).joined(separator: ", "))); choose one with --remote NAME")
        }
        return remotes[0]
    }

    static func unknown(_ name: String, _ remotes: [RemoteConfig], _ layout: ZooLayout) -> ZooError {
        if remotes.isEmpty && !Zoo.isZoo(layout) {
            let n = noRemote(layout, name: name)
            return .invalid("no remote '\(name)': \(n.reason) (\(n.advice))")
        }
        return .invalid("no remote '\(name)' in this zoo" + (remotes.isEmpty ? " (bissl remote add \(name) s3://BUCKET/PREFIX)" : " (remotes: \(remotes.map(\.name).joined(separator: ", ")))"))
    }

    /// Why a zoo that has no remote has none, and the way out: `the zoo at P has no remote`, or, when
    /// `P` holds no zoo (no catalog and no objects, `Zoo.isZoo`) and no remote list, `there is no zoo
    /// at P, so no remote`, with `--zoo` and `BISSL_ZOO` named too (a wrong folder is the likelier cause).
    /// - Parameter name: the remote's name in the advice (`NAME` when not known).
    public static func noRemote(_ layout: ZooLayout, name: String = "NAME") -> (reason: String, advice: String) {
        let add = "bissl remote add \(name) s3://BUCKET/PREFIX"
        if Zoo.isZoo(layout) || FileManager.default.fileExists(atPath: file(layout).path) {
            return ("the zoo at \(layout.root.path) has no remote", add)
        }
        return ("there is no zoo at \(layout.root.path), so no remote", "choose the zoo with --zoo DIR or BISSL_ZOO, or start one there with \(add)")
    }

    static func save(_ remotes: [RemoteConfig], _ layout: ZooLayout) throws {
        try Zoo.makeDirectories(layout.root, zoo: layout.root)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try encoder.encode(File(version: 1, remotes: remotes)) + Data("\n".utf8), to: file(layout))
    }
}
