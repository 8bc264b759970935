import Foundation

/// The processes of one data-parallel job and the collectives the training loops need: Open MPI's
/// `MPI_COMM_WORLD` when the process was started by `mpirun` (the environment holds
/// `OMPI_COMM_WORLD_SIZE`), else this process alone (`size == 1`, every collective a no-op, MPI never
/// initialised, libmpi never opened: `MPILibrary`). docs/distributed.md describes the scheme.
///
/// Threading: `MPI_Init_thread(MPI_THREAD_FUNNELED)`; every call is made from the thread that
/// created the communicator (the training loop's). Errors: the communicator's error handler is
/// `MPI_ERRORS_RETURN`, so a failed collective (a peer rank that died, a broken connection) comes back
/// here as `DistributedError.collective` instead of aborting inside the library.
public final class Communicator: @unchecked Sendable {
    /// This process's rank, `0..<size`.
    public let rank: Int
    /// Number of processes in the job.
    public let size: Int
    /// Whether MPI was initialised (false for the single-process communicator).
    public var usesMPI: Bool { mpi != nil }
    private let mpi: MPILibrary?
    /// Floats per all-reduce call: PyTorch DDP's default bucket (`bucket_cap_mb=25`, 25 MiB of float32).
    public static let bucketElements = 25 * 1024 * 1024 / MemoryLayout<Float>.stride
    private var finalized = false

    /// The single-process communicator (what every run without `mpirun` uses).
    public static let single = Communicator(rank: 0, size: 1, mpi: nil)

    private init(rank: Int, size: Int, mpi: MPILibrary?) {
        self.rank = rank
        self.size = size
        self.mpi = mpi
    }

    /// Whether `environment` says this process was started by Open MPI's `mpirun` with more than one rank.
    public static func launchedByMPIRun(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        (environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) ?? 1) > 1
    }

    /// Opens libmpi (`MPILibrary`), then `MPI_Init_thread` + `MPI_COMM_WORLD`'s rank and size, with
    /// `MPI_ERRORS_RETURN` installed.
    /// - Throws: `DistributedError.unavailable` when libmpi cannot be opened, `.collective` when MPI cannot
    ///   be initialised.
    public static func initializeMPI() throws -> Communicator {
        let mpi = try MPILibrary.open()
        var provided: Int32 = 0
        try check(mpi, mpi.initThread(nil, nil, MPILibrary.threadFunneled, &provided), "MPI_Init_thread")
        try check(mpi, mpi.commSetErrhandler(mpi.commWorld, mpi.errorsReturn), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0, size: Int32 = 0
        try check(mpi, mpi.commRank(mpi.commWorld, &rank), "MPI_Comm_rank")
        try check(mpi, mpi.commSize(mpi.commWorld, &size), "MPI_Comm_size")
        return Communicator(rank: Int(rank), size: Int(size), mpi: mpi)
    }

    // MARK: - collectives

    /// Sums `buffer` element-wise over every rank, in place (`MPI_Allreduce` with `MPI_IN_PLACE`, `MPI_SUM`),
    /// in calls of at most `bucketElements` floats. The order in which Open MPI adds the ranks'
    /// values depends on its algorithm (ring, recursive doubling, ...): results agree with a
    /// sequential sum up to float32 reordering (docs/distributed.md), and are identical on every rank.
    /// - Throws: `DistributedError.collective` when a rank cannot take part (it died).
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let mpi, size > 1 else { return }
        try allReduceSum(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, stride: 4, datatype: mpi.float)
    }

    /// `allReduceSum` of float64 values (BatchNorm's synchronised statistics, `SyncBatchNorm`).
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard let mpi, size > 1 else { return }
        try allReduceSum(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, stride: 8, datatype: mpi.double)
    }

    /// In-place `MPI_SUM` all-reduce of `count` elements of `datatype` (`stride` bytes each), in buckets of
    /// at most 25 MiB.
    private func allReduceSum(_ base: UnsafeMutableRawPointer?, count: Int, stride: Int, datatype: MPILibrary.Handle) throws {
        guard let mpi, let base else { return }
        let bucket = Self.bucketElements * MemoryLayout<Float>.stride / stride
        var offset = 0
        while offset < count {
            let n = min(bucket, count - offset)
            try Self.check(mpi, mpi.allreduce(MPILibrary.inPlace, base + offset * stride, Int32(n), datatype, mpi.sum, mpi.commWorld),
                           "MPI_Allreduce")
            offset += n
        }
    }

    /// Rank `root`'s `bytes` on every rank (`MPI_Bcast` of the length, then of the bytes).
    /// - Throws: `DistributedError.collective`.
    public func broadcast(_ bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        guard let mpi, size > 1 else { return bytes }
        var count = Int64(rank == root ? bytes.count : 0)
        try Self.check(mpi, mpi.bcast(&count, 1, mpi.longLong, Int32(root), mpi.commWorld), "MPI_Bcast")
        guard count >= 0, count <= Int64(Int32.max) else { throw DistributedError.collective("MPI_Bcast: length \(count) out of range") }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        if count > 0 {
            try Self.check(mpi, mpi.bcast(&out, Int32(count), mpi.byte, Int32(root), mpi.commWorld), "MPI_Bcast")
        }
        return out
    }

    /// Waits until every rank calls it (`MPI_Barrier`).
    public func barrier() throws {
        guard let mpi, size > 1 else { return }
        try Self.check(mpi, mpi.barrier(mpi.commWorld), "MPI_Barrier")
    }

    /// `MPI_Finalize` (collective: call it only when every rank reached the end, never after a failure,
    /// where the ranks still running would wait for this one forever). Idempotent.
    public func finalize() {
        guard let mpi, !finalized else { return }
        finalized = true
        _ = mpi.finalize()
    }

    private static func check(_ mpi: MPILibrary, _ code: Int32, _ call: String) throws {
        guard code != MPILibrary.success else { return }
        var text = [CChar](repeating: 0, count: MPILibrary.maxErrorString + 1)
        var length: Int32 = 0
        _ = mpi.errorString(code, &text, &length)
        let message = String(decoding: text.prefix(max(0, min(Int(length), MPILibrary.maxErrorString))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw DistributedError.collective("\(call) failed (\(message)): a rank of the job stopped or cannot be reached")
    }
}
