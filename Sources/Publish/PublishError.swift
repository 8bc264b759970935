import Checkpoint

/// Errors of publishing an entry (model card, Hugging Face-style hub folder, ONNX export): a folder
/// that is taken or incomplete, an entry that lacks what the output needs, a file that cannot be
/// written. One line each, fit for `error: ...`.
public enum PublishError: OneLineError, Equatable, Sendable {
    /// A request or input that does not fit (the message names it and what to do).
    case invalid(String)
    /// An operating-system level failure writing the output.
    case io(String)

    public var description: String {
        switch self {
        case .invalid(let m), .io(let m): m.escapingControlCharacters
        }
    }
}
