import Datasets

/// Where a persistent data iterator stands: batch `position` of loader epoch `epoch` (docs/bissl.md, "The alternation loop",
/// "data-iterator bookkeeping"). Batches depend only on (loader seed, epoch, position), so saving the
/// cursor is enough to resume bit-exactly.
public struct PhaseCursor: Equatable, Sendable {
    public var epoch: Int
    public var position: Int

    public init(epoch: Int = 0, position: Int = 0) {
        self.epoch = epoch
        self.position = position
    }

    /// Runs `body` on exactly `count` consecutive batches, as the reference implementation does for one phase: when fewer than
    /// `count` batches remain in the current epoch, a fresh, reshuffled epoch is started first (the reference implementation
    /// re-creates its iterator); a loader with fewer batches than `count` is cycled through successive
    /// epochs until `count` batches have run. the reference implementation sets the sampler epoch to the alternation index when it
    /// re-creates the iterator; we number epochs consecutively (a different but equally fresh shuffle).
    /// - Throws: the loader's error for an unreadable image, or what `body` throws.
    /// - Precondition: `loader.batchesPerEpoch > 0`.
    public mutating func run(_ count: Int, on loader: DataLoader, _ body: (Batch) throws -> Void) throws {
        let per = loader.batchesPerEpoch
        precondition(per > 0, "PhaseCursor: the loader has no batches")
        if position > 0 && per - position < count {
            epoch += 1
            position = 0
        }
        var done = 0
        while done < count {
            let iterator = loader.epoch(epoch, startingAt: position)
            while done < count && position < per {
                guard let batch = try iterator.nextBatch() else { position = per; break }
                try body(batch)
                position += 1
                done += 1
            }
            if position >= per {
                epoch += 1
                position = 0
            }
        }
    }
}

/// `<prefix>/epoch` and `<prefix>/position`.
extension PhaseCursor: Resumable {
    public static var defaultPrefix: String { "cursor" }

    public func capture(into state: inout TrainingState, prefix: String) {
        state.integers["\(prefix)/epoch"] = Int64(epoch)
        state.integers["\(prefix)/position"] = Int64(position)
    }

    public mutating func restore(from state: TrainingState, prefix: String) throws {
        let e = Int(try state.integer("\(prefix)/epoch")), p = Int(try state.integer("\(prefix)/position"))
        epoch = e
        position = p
    }
}
