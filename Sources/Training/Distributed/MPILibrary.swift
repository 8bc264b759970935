import Foundation

/// Open MPI's C library, opened at run time (`dlopen`) only by a process that `mpirun` started: bissl
/// neither needs MPI's headers to build nor libmpi to run on one process.
///
/// The functions the communicator calls are resolved with `dlsym`, as are Open MPI's predefined handles,
/// which `mpi.h` defines as the addresses of global objects (`MPI_COMM_WORLD` is `&ompi_mpi_comm_world`,
/// `MPI_FLOAT` is `&ompi_mpi_float`, `MPI_SUM` is `&ompi_mpi_op_sum`, ...). The constants below are
/// `mpi.h`'s values for Open MPI (the ABI of its `libmpi.so.40`, versions 3.0 to 5.x). The library is
/// opened with `RTLD_GLOBAL`: Open MPI's plugins (`mca_*.so`), which it opens itself during
/// `MPI_Init`, resolve their symbols from it.
struct MPILibrary: @unchecked Sendable {
    /// Handles: `MPI_Comm`, `MPI_Datatype`, `MPI_Op`, `MPI_Errhandler` are pointers in Open MPI.
    typealias Handle = UnsafeMutableRawPointer

    typealias InitThread = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutablePointer<Int32>) -> Int32
    typealias CommSetErrhandler = @convention(c) (Handle, Handle) -> Int32
    typealias CommQuery = @convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32
    /// `MPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm)`.
    typealias Allreduce = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle, Handle, Handle) -> Int32
    /// `MPI_Bcast(buffer, count, datatype, root, comm)`.
    typealias Bcast = @convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Handle) -> Int32
    typealias Barrier = @convention(c) (Handle) -> Int32
    typealias Finalize = @convention(c) () -> Int32
    typealias ErrorString = @convention(c) (Int32, UnsafeMutablePointer<CChar>, UnsafeMutablePointer<Int32>) -> Int32

    let initThread: InitThread, commSetErrhandler: CommSetErrhandler, commRank: CommQuery, commSize: CommQuery
    let allreduce: Allreduce, bcast: Bcast, barrier: Barrier, finalize: Finalize, errorString: ErrorString
    let commWorld: Handle, float: Handle, double: Handle, byte: Handle, longLong: Handle, sum: Handle, errorsReturn: Handle

    /// `MPI_SUCCESS`, `MPI_MAX_ERROR_STRING`, `MPI_THREAD_FUNNELED` (Open MPI's mpi.h).
    static let success: Int32 = 0, maxErrorString = 256, threadFunneled: Int32 = 1
    /// `MPI_IN_PLACE`: `(void *) 1` in Open MPI's mpi.h.
    static var inPlace: UnsafeRawPointer? { UnsafeRawPointer(bitPattern: 1) }

    /// Shared-library names tried in order (the dynamic loader's search path applies, LD_LIBRARY_PATH included).
    #if os(macOS)
    static let candidates = ["libmpi.40.dylib", "libmpi.dylib", "/opt/homebrew/lib/libmpi.dylib", "/usr/local/lib/libmpi.dylib"]
    #else
    static let candidates = ["libmpi.so.40", "libmpi.so"]
    #endif

    /// Opens the first candidate and resolves every function and handle.
    /// - Throws: `DistributedError.unavailable` naming what the loader said, or the symbol missing.
    static func open() throws -> MPILibrary {
        var errors: [String] = []
        for name in candidates {
            if let handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL) { return try MPILibrary(handle: handle, name: name) }
            errors.append(dlerror().map { String(cString: $0) } ?? name)
        }
        throw DistributedError.unavailable("started by mpirun, but Open MPI's library cannot be opened (\(errors.joined(separator: "; "))): "
            + "install it on every node (Debian, Ubuntu: apt-get install libopenmpi3 or openmpi-bin) or run without mpirun")
    }

    private init(handle: UnsafeMutableRawPointer, name: String) throws {
        func address(_ symbol: String) throws -> UnsafeMutableRawPointer {
            guard let p = dlsym(handle, symbol) else {
                throw DistributedError.unavailable("\(name) has no \(symbol): bissl needs Open MPI's libmpi (another MPI's library was found)")
            }
            return p
        }
        func function<T>(_ symbol: String, _ type: T.Type) throws -> T { unsafeBitCast(try address(symbol), to: type) }
        initThread = try function("MPI_Init_thread", InitThread.self)
        commSetErrhandler = try function("MPI_Comm_set_errhandler", CommSetErrhandler.self)
        commRank = try function("MPI_Comm_rank", CommQuery.self)
        commSize = try function("MPI_Comm_size", CommQuery.self)
        allreduce = try function("MPI_Allreduce", Allreduce.self)
        bcast = try function("MPI_Bcast", Bcast.self)
        barrier = try function("MPI_Barrier", Barrier.self)
        finalize = try function("MPI_Finalize", Finalize.self)
        errorString = try function("MPI_Error_string", ErrorString.self)
        commWorld = try address("ompi_mpi_comm_world")
        float = try address("ompi_mpi_float")
        double = try address("ompi_mpi_double")
        byte = try address("ompi_mpi_byte")
        longLong = try address("ompi_mpi_long_long_int")
        sum = try address("ompi_mpi_op_sum")
        errorsReturn = try address("ompi_mpi_errors_return")
    }
}
