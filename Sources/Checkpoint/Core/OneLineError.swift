/// An error whose `description` is one line fit for the user: the CLI prints it as `error: <line>`
/// and exits non-zero. Each layer has its own type conforming to this (`CheckpointError` here).
public protocol OneLineError: Error, CustomStringConvertible {}

extension CheckpointError: OneLineError {}
