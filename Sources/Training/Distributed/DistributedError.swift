import Checkpoint

/// Errors of a data-parallel job. One line each.
public enum DistributedError: OneLineError, Equatable, Sendable {
    /// An MPI call failed: a peer rank died or cannot be reached (the message names the call).
    case collective(String)
    /// A setting that cannot be split over the ranks (a batch too small for its shards).
    case invalid(String)
    /// Started by `mpirun`, but no usable Open MPI library (`MPILibrary`): every rank meets it alike.
    case unavailable(String)
    /// Rank 0 failed at a step every rank waits for (creating or finishing the run); it reports the
    /// reason itself, the other ranks stop quietly.
    case leaderFailed

    public var description: String {
        switch self {
        case .collective(let m), .invalid(let m), .unavailable(let m): m.escapingControlCharacters
        case .leaderFailed: "rank 0 failed (it printed the reason)"
        }
    }
}
