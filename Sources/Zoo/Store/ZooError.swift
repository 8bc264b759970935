import Checkpoint

/// Errors of the zoo: the store, its catalog, labels, lineage, diff and remotes (S3 transfers,
/// remote configuration, pushed and pulled objects). One line each, fit for `error: ...`.
/// Errors of the files themselves (a checkpoint that does not parse) stay `ZooError`s.
public enum ZooError: OneLineError, Equatable, Sendable {
    /// A request that does not fit the zoo: a bad or taken label, a REF that names no entry, a bad
    /// remote configuration or credentials profile.
    case invalid(String)
    /// A REF prefix that several entries share (the message lists them).
    case ambiguous(String)
    /// An operating-system or network failure: a missing or unwritable zoo, a locked catalog, a
    /// server that cannot be reached or refuses a request.
    case io(String)
    /// Stored data that is damaged: an object whose bytes are not its content id, an unreadable
    /// catalog, manifest or remote object.
    case corrupt(String)
    /// Data written by a newer bissl (catalog schema, remote configuration version).
    case unsupported(String)

    public var description: String {
        switch self {
        case .invalid(let m), .ambiguous(let m), .io(let m), .corrupt(let m), .unsupported(let m): m.escapingControlCharacters
        }
    }
}
