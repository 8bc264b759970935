/// Errors raised while opening or reading a dataset. Every description is one line, fit for
/// `error: ...` (the CLI prints it as is).
public enum DatasetError: OneLineError, Equatable, Sendable {
    /// The dataset URI does not parse (unknown scheme, bad fragment option).
    case badURI(String)
    /// A file or folder the dataset needs does not exist or cannot be read.
    case missing(String)
    /// A file exists but its content is not what its format says (bad magic, truncated, sizes that
    /// disagree, an image libpng/libjpeg cannot decode).
    case corrupt(String)
    /// Content that is well-formed but not something this library reads (CMYK JPEG, float images).
    case unsupported(String)
    /// The dataset is consistent but unusable as asked (empty class folder, label count not equal to
    /// image count, split index out of range).
    case invalid(String)

    public var description: String {
        switch self {
        case .badURI(let m), .missing(let m), .corrupt(let m), .unsupported(let m), .invalid(let m): return m.escapingControlCharacters
        }
    }
}
