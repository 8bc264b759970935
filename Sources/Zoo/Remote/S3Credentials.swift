import Checkpoint
import Foundation

/// AWS credentials, found where the AWS CLI and SDKs look (never stored in the zoo):
/// 1. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN` when set);
/// 2. else the profile `AWS_PROFILE` (default `default`) of the shared credentials file
///    `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`): keys `aws_access_key_id`,
///    `aws_secret_access_key`, `aws_session_token`.
/// Without either, requests go unsigned (a public bucket can still be read).
public struct S3Credentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// The credentials of `environment` (see the type's documentation), nil when none are set.
    /// - Throws: `ZooError.invalid` when `AWS_PROFILE` names a profile the file lacks, or a
    ///   profile lacks one of the two keys.
    public static func find(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Credentials? {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let id = value("AWS_ACCESS_KEY_ID"), let secret = value("AWS_SECRET_ACCESS_KEY") {
            return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN"))
        }
        let explicitProfile = value("AWS_PROFILE")
        let profile = explicitProfile ?? "default"
        let home = value("HOME") ?? NSHomeDirectory()
        let path = value("AWS_SHARED_CREDENTIALS_FILE") ?? home + "/.aws/credentials"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            if explicitProfile != nil { throw ZooError.invalid("AWS_PROFILE is \(profile) but \(path) cannot be read") }
            return nil
        }
        guard let section = parseINI(text)[profile] else {
            if explicitProfile != nil { throw ZooError.invalid("no profile [\(profile)] in \(path)") }
            return nil
        }
        guard let id = section["aws_access_key_id"], let secret = section["aws_secret_access_key"] else {
            throw ZooError.invalid("profile [\(profile)] in \(path) lacks aws_access_key_id or aws_secret_access_key")
        }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: section["aws_session_token"])
    }

    /// Sections of an INI file (`[name]`, `key = value`, `#`/`;` comments) as the AWS CLI reads them.
    static func parseINI(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                current = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                sections[current!, default: [:]] = sections[current!] ?? [:]
            } else if let current, let eq = line.firstIndex(of: "=") {
                let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
                sections[current]![key] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return sections
    }
}
