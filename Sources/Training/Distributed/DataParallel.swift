import Checkpoint
import Datasets
import Engine
import Foundation

/// Data parallelism as PyTorch DDP and Horovod do it (docs/distributed.md): every rank draws the same
/// global batch from the seed and computes on its contiguous `DataShard`; gradients (and every
/// Hessian-vector product of BiSSL's implicit solve) are averaged over the ranks with an all-reduce
/// before anything reads them (clipping, the optimiser, CG), so every rank applies the same update
/// to the same parameters. BatchNorm uses each rank's own batch statistics (DDP without
/// SyncBatchNorm), or with `--sync-bn` (`syncBatchNorm`) the statistics of the whole global batch
/// (`torch.nn.SyncBatchNorm`); rank 0's running statistics are the ones saved.
///
/// This is the process-wide context of that scheme: `join()` (called by `TrainingJob.start` and
/// `resume`, the one path of every training command) initialises MPI when the process runs under
/// `mpirun`; without it `world` is `Communicator.single` and every function here leaves its input
/// exactly as it was, so single-process training is bit-identical to a build without MPI.
public enum DataParallel {
    nonisolated(unsafe) private static var joined: Communicator?

    /// The job's communicator: MPI's world after `join()` under `mpirun`, else the single process.
    public static var world: Communicator { joined ?? .single }

    /// Whether this process writes (the run directory, its log and state, the zoo entry): rank 0.
    public static var isLeader: Bool { world.rank == 0 }

    /// Initialises MPI once when started by `mpirun` with more than one rank (`OMPI_COMM_WORLD_SIZE`);
    /// otherwise does nothing (libmpi is then never opened).
    /// - Throws: `DistributedError.unavailable` (no usable libmpi), `.collective` (MPI cannot be initialised).
    @discardableResult
    public static func join(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Communicator {
        if let joined { return joined }
        guard Communicator.launchedByMPIRun(environment) else { return .single }
        let world = try Communicator.initializeMPI()
        joined = world
        return world
    }

    /// Uses `world` as the job's communicator (tests compare a reduced step with a single-process
    /// computation by switching to `.single` and back).
    public static func use(_ world: Communicator?) { joined = world }

    /// `--sync-bn`: the training steps normalise with the batch statistics of the whole global batch
    /// (`synchronizingBatchNorm`). Set by `TrainingJob.start` / `resume` from the run's config.
    nonisolated(unsafe) public static var syncBatchNorm = false

    /// Runs `body` (a training step's forward and backward passes) with every train-mode BatchNorm
    /// synchronised over the ranks (`BatchNorm2d.crossProcessSum`: its per-channel sums all-reduced,
    /// `torch.nn.SyncBatchNorm`) when `syncBatchNorm` is on and the job has several ranks; otherwise, or
    /// inside another `synchronizingBatchNorm`, just runs it. Every rank must run the same bodies in the
    /// same order (the training steps do); forwards outside one (validation, held-out losses, the align
    /// plan's measurement) keep per-rank statistics.
    public static func synchronizingBatchNorm<T>(_ body: () throws -> T) rethrows -> T {
        guard syncBatchNorm, world.size > 1, BatchNorm2d.crossProcessSum == nil else { return try body() }
        let world = self.world
        BatchNorm2d.crossProcessSum = { sums in
            do { try sums.withUnsafeMutableBufferPointer { try world.allReduceSum($0) } } catch { stopAfterCollectiveFailure(error) }
        }
        defer { BatchNorm2d.crossProcessSum = nil }
        return try body()
    }

    /// The part of every global batch this rank computes on.
    public static var shard: DataShard { DataShard(index: world.rank, count: world.size) }

    /// Refuses a global batch of `batchSize` whose smallest shard has fewer than 2 images
    /// (train-mode BatchNorm needs 2 per rank).
    /// - Throws: `DistributedError.invalid` naming `option`.
    public static func checkBatch(_ batchSize: Int, option: String) throws {
        let n = world.size
        guard n > 1, shard.smallest(of: batchSize) < 2 else { return }
        throw DistributedError.invalid("\(option) \(batchSize) gives \(shard.smallest(of: batchSize)) image(s) to some of the \(n) ranks; train-mode BatchNorm needs at least 2 per rank: use at least \(2 * n)")
    }

    /// Averages over the ranks, weighted by each rank's share of the global batch: every parameter's
    /// gradient (`Parameter.grad`) and `values`, computed by this rank on `count` images of the
    /// global batch, become `Σ_r count_r · x_r / Σ_r count_r` on every rank: the global batch's mean
    /// when the loss is a per-image mean. One all-reduce (bucketed) carries gradients, values and counts.
    /// Single process: nothing changes (not even rounding).
    /// - Returns: `values` averaged.
    @discardableResult
    public static func averageGradients(_ parameters: [Parameter], count: Int, values: [Float] = []) -> [Float] {
        guard world.size > 1 else { return values }
        let (sum, scale) = reduceWeighted(parameters.map(\.grad) + [values], count: count)
        var offset = 0
        for p in parameters {
            p.grad.withUnsafeMutableBufferPointer { g in
                for i in 0..<g.count { g[i] = sum[offset + i] * scale }
            }
            offset += p.count
        }
        return values.indices.map { sum[offset + $0] * scale }
    }

    /// `averageGradients` for plain arrays (Hessian-vector products): `arrays` computed on `count`
    /// images of the global batch, averaged with the same weights.
    public static func average(_ arrays: [[Float]], count: Int) -> [[Float]] {
        guard world.size > 1 else { return arrays }
        let (sum, scale) = reduceWeighted(arrays, count: count)
        var offset = 0
        return arrays.map { a in
            defer { offset += a.count }
            return [Float](unsafeUninitializedCapacity: a.count) { out, n in
                for i in 0..<a.count { out[i] = sum[offset + i] * scale }
                n = a.count
            }
        }
    }

    /// `count · x` of every part and `count` itself packed in one buffer, summed over the ranks (one
    /// bucketed all-reduce), and `1 / Σ count` to scale it by.
    private static func reduceWeighted(_ parts: [[Float]], count: Int) -> (sum: [Float], scale: Float) {
        let weight = Float(count)
        let total = parts.reduce(0) { $0 + $1.count } + 1
        var buffer = [Float](unsafeUninitializedCapacity: total) { out, n in
            var offset = 0
            for part in parts {
                part.withUnsafeBufferPointer { x in
                    for i in 0..<x.count { out[offset + i] = weight * x[i] }
                }
                offset += part.count
            }
            out[offset] = weight
            n = total
        }
        do { try buffer.withUnsafeMutableBufferPointer { try world.allReduceSum($0) } } catch { stopAfterCollectiveFailure(error) }
        return (buffer, 1 / buffer[total - 1])
    }

    // MARK: - failure

    /// What a rank says and does when a collective fails (a peer died): the job cannot go on, and the
    /// loops calling the collectives do not throw, so the run is marked failed (rank 0, resumable
    /// from its last saved state, no entry), one `error:` line is printed, and the process exits 1
    /// without `MPI_Finalize` (which would wait for the dead rank). `mpirun` then ends the others.
    static func stopAfterCollectiveFailure(_ error: Error) -> Never {
        RankFailure.report("\(error)")
        exit(1)
    }
}
