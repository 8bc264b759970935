/// Errors raised by the checkpoint library. Every description is one line, fit for `error: ...`.
public enum CheckpointError: OneLineError, Equatable {
    /// The file is not what its name says (HTML page, Git LFS pointer, plain pickle, ...).
    case notACheckpoint(String)
    /// The file is damaged: truncated, CRC mismatch, offsets out of range.
    case corrupt(String)
    /// The file asks for something we refuse on principle (unknown pickle global behind a tensor).
    case unsafe(String)
    /// Well-formed input that we cannot map unambiguously (several candidate state dicts, partial prefix).
    case ambiguous(String)
    /// Structurally invalid data or arguments.
    case invalid(String)
    /// A feature of the file this version does not support.
    case unsupported(String)
    /// An operating-system level I/O failure.
    case io(String)

    public var description: String {
        switch self {
        case .notACheckpoint(let m), .corrupt(let m), .unsafe(let m), .ambiguous(let m),
             .invalid(let m), .unsupported(let m), .io(let m):
            return m.escapingControlCharacters
        }
    }
}
