import CMPI
import Foundation

/// The processes of one data-parallel job and the collectives the training loops need: Open MPI's
/// `MPI_COMM_WORLD` when the process was started by `mpirun` (the environment holds
/// `OMPI_COMM_WORLD_SIZE`), else this process alone (`size == 1`, every collective a no-op, MPI never
/// initialised). docs/distributed.md describes the scheme.
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
    public let usesMPI: Bool
    /// Floats per all-reduce call: PyTorch DDP's default bucket (`bucket_cap_mb=25`, 25 MiB of float32).
    public static let bucketElements = 25 * 1024 * 1024 / MemoryLayout<Float>.stride
    private var finalized = false

    /// The single-process communicator (what every run without `mpirun` uses).
    public static let single = Communicator(rank: 0, size: 1, usesMPI: false)

    private init(rank: Int, size: Int, usesMPI: Bool) {
        self.rank = rank
        self.size = size
        self.usesMPI = usesMPI
    }

    /// Whether `environment` says this process was started by Open MPI's `mpirun` with more than one rank.
    public static func launchedByMPIRun(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        (environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) ?? 1) > 1
    }

    /// `MPI_Init_thread` + `MPI_COMM_WORLD`'s rank and size, with `MPI_ERRORS_RETURN` installed.
    /// - Throws: `DistributedError.collective` when MPI cannot be initialised.
    public static func initializeMPI() throws -> Communicator {
        var provided: Int32 = 0
        try check(MPI_Init_thread(nil, nil, bissl_mpi_thread_funneled(), &provided), "MPI_Init_thread")
        let world = bissl_mpi_comm_world()
        try check(MPI_Comm_set_errhandler(world, bissl_mpi_errors_return()), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0, size: Int32 = 0
        try check(MPI_Comm_rank(world, &rank), "MPI_Comm_rank")
        try check(MPI_Comm_size(world, &size), "MPI_Comm_size")
        return Communicator(rank: Int(rank), size: Int(size), usesMPI: true)
    }

    // MARK: - collectives

    /// Sums `buffer` element-wise over every rank, in place (`MPI_Allreduce` with `MPI_IN_PLACE`, `MPI_SUM`),
    /// in calls of at most `bucketElements` floats. The order in which Open MPI adds the ranks'
    /// values depends on its algorithm (ring, recursive doubling, ...): results agree with a
    /// sequential sum up to float32 reordering (docs/distributed.md), and are identical on every rank.
    /// - Throws: `DistributedError.collective` when a rank cannot take part (it died).
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard usesMPI, size > 1, let base = buffer.baseAddress else { return }
        var offset = 0
        while offset < buffer.count {
            let n = min(Self.bucketElements, buffer.count - offset)
            try Self.check(MPI_Allreduce(bissl_mpi_in_place(), base + offset, Int32(n), bissl_mpi_float(), bissl_mpi_sum(),
                                         bissl_mpi_comm_world()), "MPI_Allreduce")
            offset += n
        }
    }

    /// Rank `root`'s `bytes` on every rank (`MPI_Bcast` of the length, then of the bytes).
    /// - Throws: `DistributedError.collective`.
    public func broadcast(_ bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        guard usesMPI, size > 1 else { return bytes }
        var count = Int64(rank == root ? bytes.count : 0)
        try Self.check(MPI_Bcast(&count, 1, bissl_mpi_long_long(), Int32(root), bissl_mpi_comm_world()), "MPI_Bcast")
        guard count >= 0, count <= Int64(Int32.max) else { throw DistributedError.collective("MPI_Bcast: length \(count) out of range") }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        if count > 0 {
            try Self.check(MPI_Bcast(&out, Int32(count), bissl_mpi_byte(), Int32(root), bissl_mpi_comm_world()), "MPI_Bcast")
        }
        return out
    }

    /// Waits until every rank calls it (`MPI_Barrier`).
    public func barrier() throws {
        guard usesMPI, size > 1 else { return }
        try Self.check(MPI_Barrier(bissl_mpi_comm_world()), "MPI_Barrier")
    }

    /// `MPI_Finalize` (collective: call it only when every rank reached the end, never after a failure,
    /// where the ranks still running would wait for this one forever). Idempotent.
    public func finalize() {
        guard usesMPI, !finalized else { return }
        finalized = true
        MPI_Finalize()
    }

    private static func check(_ code: Int32, _ call: String) throws {
        guard code != bissl_mpi_success() else { return }
        var text = [CChar](repeating: 0, count: Int(bissl_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &text, &length)
        throw DistributedError.collective("\(call) failed (\(String(cString: text))): a rank of the job stopped or cannot be reached")
    }
}
