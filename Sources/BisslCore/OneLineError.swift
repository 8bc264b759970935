/// An error whose `description` is one line fit for the user: the CLI prints it as `error: <line>`
/// and exits non-zero. Each layer has its own type conforming to this: `CheckpointError` (format,
/// interchange, layout), `ZooError` (store, catalog, remotes), `ModelError` (the engine's networks),
/// `DatasetError`, `TrainingError`, `DistributedError`, `PublishError` (cards, hub folders, ONNX),
/// and the CLI's `CLIError`.
public protocol OneLineError: Error, CustomStringConvertible {}
