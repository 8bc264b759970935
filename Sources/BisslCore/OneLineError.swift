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
    /// Linear in the length: a message quoting a long name from a hostile file costs no more than
    /// copying it (appending to a `String.UnicodeScalarView` reallocated it on every append, so a
    /// 256 K-character message took 13 s).
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: \.isEscapedInErrorLines) else { return self }
        var out = ""
        out.reserveCapacity(utf8.count + 16)
        for scalar in unicodeScalars {
            guard scalar.isEscapedInErrorLines else {
                out.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }
}

extension String {
    /// A path as messages name it: as given, or between single quotes when it is empty or begins or
    /// ends with white space (`' '`, `'model.h5 '`), so the reader sees where it starts and ends. Every
    /// message that names a path the user gave (`cannot read PATH: no such file`, `cannot write PATH:
    /// ...`, `PATH is not a regular file`) writes it this way.
    public var quotedPathIfNeeded: String {
        guard let first = unicodeScalars.first, let last = unicodeScalars.last else { return "''" }
        return first.properties.isWhitespace || last.properties.isWhitespace ? "'" + self + "'" : self
    }
}

extension Unicode.Scalar {
    /// Whether `String.escapingControlCharacters` writes this scalar as an escape: Unicode categories
    /// Cc (control), Zl (line separator) and Zp (paragraph separator).
    public var isEscapedInErrorLines: Bool {
        switch properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }
}
