import Checkpoint

/// An error of the command line itself: options that contradict each other, bad values, a request
/// the command cannot serve (the message says what to do instead). One line, printed as `error: ...`.
struct CLIError: OneLineError {
    let description: String
    init(_ message: String) { description = message.escapingControlCharacters }
}
