import Checkpoint

/// Errors of the training layer: options and configs that do not fit, runs that cannot be created,
/// opened or resumed, training states that do not match, data that changed. One line each.
public enum TrainingError: OneLineError, Equatable, Sendable {
    /// A setting, config, state or request that does not fit (the message names it).
    case invalid(String)
    /// An operating-system level failure on a run directory.
    case io(String)
    /// A run or training-state file that is damaged.
    case corrupt(String)

    public var description: String {
        switch self {
        case .invalid(let m), .io(let m), .corrupt(let m): m.escapingControlCharacters
        }
    }
}
