import CBLAS
import Foundation

/// OpenBLAS, opened by the engine itself at its first product, on the best kernel this CPU supports.
///
/// The engine does not link libopenblas: a linked library would pick its kernel in its constructor,
/// before any engine code runs, and a `DYNAMIC_ARCH` OpenBLAS older than the CPU silently picks a
/// generic one (`KernelChoice`). Instead the first `sgemm`/`dgemm` (or `kernel`) call:
/// 1. opens the library (`dlopen`) as it is, and reads `openblas_get_corename()`;
/// 2. decides with `KernelChoice.decide` (CPU features from CPUID, that kernel, the user's
///    `OPENBLAS_CORETYPE`, which is never overridden);
/// 3. on an upgrade, closes the library, sets `OPENBLAS_CORETYPE` in this process, opens it again (its
///    constructor reads the variable) and removes the variable, so child processes see the environment
///    as the user left it. When the switch does not take (another library of the process holds
///    OpenBLAS open, or it is not a `DYNAMIC_ARCH` build) the engine keeps what it has and says so on
///    stderr once.
/// This works the same in the `bissl` executable and in a test process. Both loads happen with
/// `OPENBLAS_NUM_THREADS=1` (the previous value restored afterwards): the engine runs OpenBLAS
/// single-threaded (`GEMM`), so no thread pool is started and the first library unloads cleanly.
/// Opening costs 30-70 ms once per process (measured on an Ice Lake Xeon), twice that on an upgrade.
/// The environment is modified only inside this one-time initialisation (a lazily initialised static).
public enum BLAS {
    /// The kernel the engine runs on and how it was chosen (`bissl doctor`, run provenance, benchmarks).
    public struct Kernel: Sendable {
        /// `openblas_get_corename()` of the library in use (`SkylakeX`, `Haswell`, `Prescott`, ...).
        public let name: String
        public let reason: KernelChoice.Reason
        /// The kernel bissl requested when the switch did not take (`name` is then OpenBLAS's own pick).
        public let notSwitchedTo: String?
        /// `openblas_get_config()`: version and build options.
        public let config: String
        /// Path of the shared library opened.
        public let library: String

        /// How the kernel was chosen, one phrase: `autodetected`, `upgraded from Prescott`,
        /// `set by user: OPENBLAS_CORETYPE=Haswell`, or `autodetected; could not switch to SkylakeX`.
        public var choice: String {
            switch reason {
            case .autodetected: return notSwitchedTo.map { "autodetected; could not switch to \($0)" } ?? "autodetected"
            case .upgraded(let from): return "upgraded from \(from)"
            case .setByUser(let value): return "set by user: OPENBLAS_CORETYPE=\(value)"
            }
        }
    }

    /// The kernel in use (opens the library if the engine has not yet).
    public static var kernel: Kernel { library.kernel }

    /// `cblas_sgemm(CblasRowMajor, ...)`, single-threaded (callers split work: `GEMM`).
    @inline(__always)
    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        library.sgemm(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, Int32(m), Int32(n), Int32(k),
                      alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `cblas_dgemm(CblasRowMajor, ...)`, single-threaded.
    @inline(__always)
    static func dgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
                      b: UnsafePointer<Double>, ldb: Int, beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        library.dgemm(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, Int32(m), Int32(n), Int32(k),
                      alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    // CBLAS enum values (cblas.h).
    private static let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112

    private struct Library: @unchecked Sendable {
        let sgemm: bissl_sgemm_fn
        let dgemm: bissl_dgemm_fn
        let kernel: Kernel
    }

    private static let library: Library = open()

    /// Shared-library names tried in order (the dynamic loader's search path applies, LD_LIBRARY_PATH included).
    #if os(macOS)
    static let candidates = ["libopenblas.0.dylib", "libopenblas.dylib", "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
                             "/usr/local/opt/openblas/lib/libopenblas.dylib"]
    #else
    static let candidates = ["libopenblas.so.0", "libopenblas.so"]
    #endif

    private static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        exit(1)
    }

    /// dlopen of the first candidate that opens: (handle, name it opened by).
    private static func openFirst() -> (UnsafeMutableRawPointer, String) {
        var errors: [String] = []
        for name in candidates {
            if let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) { return (handle, name) }
            errors.append(dlerror().map { String(cString: $0) } ?? name)
        }
        fail("cannot open OpenBLAS (\(errors.joined(separator: "; "))): install it (Debian, Ubuntu: apt-get install libopenblas0)")
    }

    private static func symbol<T>(_ handle: UnsafeMutableRawPointer, _ name: String, as type: T.Type) -> T {
        guard let pointer = dlsym(handle, name) else { fail("the OpenBLAS library opened has no \(name)") }
        return unsafeBitCast(pointer, to: type)
    }

    /// The string an OpenBLAS string function returns ("" for none).
    private static func string(_ handle: UnsafeMutableRawPointer, _ function: String) -> String {
        symbol(handle, function, as: bissl_string_fn.self)().map { String(cString: $0) } ?? ""
    }

    private static func corename(_ handle: UnsafeMutableRawPointer) -> String { string(handle, "openblas_get_corename") }

    /// The file the loader mapped for `name` (Linux: from /proc/self/maps), else `name` itself.
    private static func path(of name: String) -> String {
        let maps = (try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)) ?? ""
        let stem = name.split(separator: "/").last.map { String($0.prefix { $0 != "." }) } ?? name
        for line in maps.split(separator: "\n") {
            if let slash = line.firstIndex(of: "/"), line[slash...].split(separator: "/").last?.hasPrefix(stem) == true {
                return String(line[slash...])
            }
        }
        return name
    }

    private static func open() -> Library {
        let threads = getenv("OPENBLAS_NUM_THREADS").map { String(cString: $0) }
        setenv("OPENBLAS_NUM_THREADS", "1", 1)
        defer { if let threads { setenv("OPENBLAS_NUM_THREADS", threads, 1) } else { unsetenv("OPENBLAS_NUM_THREADS") } }

        var (handle, name) = openFirst()
        let detected = corename(handle)
        let decision = KernelChoice.decide(cpu: .current, detected: detected,
                                           userSetting: getenv("OPENBLAS_CORETYPE").map { String(cString: $0) })
        var reason = decision.reason, notSwitchedTo: String? = nil
        if let request = decision.request {
            dlclose(handle)
            if let still = dlopen(name, RTLD_NOW | RTLD_NOLOAD) {
                handle = still  // held open elsewhere: its constructor will not run again
            } else {
                setenv("OPENBLAS_CORETYPE", request, 1)
                (handle, name) = openFirst()
                unsetenv("OPENBLAS_CORETYPE")
            }
            if corename(handle).lowercased() != request.lowercased() {
                reason = .autodetected
                notSwitchedTo = request
                FileHandle.standardError.write(Data(("warning: OpenBLAS runs its \(corename(handle)) kernel on this CPU, which supports "
                    + "\(request); bissl could not switch it (OpenBLAS already loaded, or not a DYNAMIC_ARCH build). "
                    + "Set OPENBLAS_CORETYPE=\(request) to try.\n").utf8))
            }
        }
        symbol(handle, "openblas_set_num_threads", as: bissl_set_threads_fn.self)(1)
        let sgemm = symbol(handle, "cblas_sgemm", as: bissl_sgemm_fn.self)
        let kernel = Kernel(name: corename(handle), reason: reason, notSwitchedTo: notSwitchedTo,
                            config: string(handle, "openblas_get_config"), library: path(of: name))
        return Library(sgemm: sgemm, dgemm: symbol(handle, "cblas_dgemm", as: bissl_dgemm_fn.self), kernel: kernel)
    }
}
