/// An error whose `description` is one line fit for the user: the CLI prints it as `error: <line>`
/// and exits non-zero. Each layer has its own type conforming to this: `CheckpointError` (format,
/// interchange, zoo, engine), `DatasetError`, `TrainingError`, and the CLI's `CLIError`.
public protocol OneLineError: Error, CustomStringConvertible {}
