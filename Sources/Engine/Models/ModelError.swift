import BisslCore

/// Errors of building a network and loading its weights: an architecture the engine has no model
/// of, a state dict whose tensors do not fit the network. One line each, fit for `error: ...`.
public enum ModelError: OneLineError, Equatable, Sendable {
    /// A tensor or size that does not fit the network (missing, extra, mis-shaped, not floating point).
    case invalid(String)
    /// An architecture the engine does not build (another family, depth or stem).
    case unsupported(String)

    public var description: String {
        switch self {
        case .invalid(let m), .unsupported(let m): m.escapingControlCharacters
        }
    }
}
