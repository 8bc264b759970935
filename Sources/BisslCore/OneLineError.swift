/// An error whose `description` is one line fit for the user: the CLI prints it as `error: <line>`
/// and exits non-zero. Each layer has its own type conforming to this: `CheckpointError` (format,
/// interchange, layout), `ZooError` (store, catalog, remotes), `ModelError` (the engine's networks),
/// `DatasetError`, `TrainingError`, `DistributedError`, `PublishError` (cards, hub folders, ONNX),
/// and the CLI's `CLIError`.
public protocol OneLineError: Error, CustomStringConvertible {}

extension String {
    /// The string with every line break and other control character written as an escape (`\n`,
    /// `\r`, `\t`, else `\u{1B}`-style; Unicode categories Cc, Zl and Zp), so that a name, path or value
    /// quoted from a file or the command line can neither split a `OneLineError`'s line nor send
    /// terminal control sequences. Every `OneLineError` type's `description` passes through it.
    public var escapingControlCharacters: String {
        var out = String.UnicodeScalarView()
        for scalar in unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator:
                let escape: String
                switch scalar {
                case "\n": escape = "\\n"
                case "\r": escape = "\\r"
                case "\t": escape = "\\t"
                default: escape = "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                }
                out.append(contentsOf: escape.unicodeScalars)
            default:
                out.append(scalar)
            }
        }
        return String(out)
    }
}
