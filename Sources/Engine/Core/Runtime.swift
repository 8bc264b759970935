import CBLAS

/// Process-wide settings the engine relies on, applied once, on the first GEMM (`Runtime.prepare()`);
/// OpenBLAS itself (single-threaded, on the chosen kernel) is set up by `BLAS` when it opens it.
///
/// - glibc malloc keeps freed activation buffers for reuse (`M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD`
///   at 1 GiB, https://man7.org/linux/man-pages/man3/mallopt.3.html). By default every buffer above
///   32 MiB (im2col matrices at 96x96) is a fresh `mmap` and smaller ones are trimmed back to the
///   kernel, so each training step page-faults its whole working set again; measured on a ResNet-50
///   step at 96x96, batch 32: 3.5 s of kernel time per two steps before, 1.0 s after, the same peak RSS.
enum Runtime {
    private static let prepared: Void = {
        #if os(Linux)
        _ = mallopt(M_MMAP_THRESHOLD, 1 << 30)
        _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)
        #endif
    }()

    /// Applies the settings (idempotent, thread-safe: a lazily initialised static).
    @inline(__always) static func prepare() { _ = prepared }
}
