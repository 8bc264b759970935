@_exported import BisslCore

extension CheckpointError: OneLineError {}
