/// Single-precision GEMM for the engine, `C = alpha * op(A) * op(B) + beta * C` in row-major storage,
/// the semantics of `cblas_sgemm(CblasRowMajor, ...)` (https://www.netlib.org/blas/sgemm.f).
///
/// The engine does its own threading (`Parallel.threads`): large products are split into column
/// blocks of `C` (or row blocks, when `C` has more rows than columns), each block one single-threaded
/// `cblas_sgemm` call on its own core. OpenBLAS's pthreads pool is switched off (`BLAS`): its idle workers otherwise spin in `sched_yield` while the engine's own loops
/// (im2col, BatchNorm, ReLU) run, taking a core from them on a 2-core machine. Measured on a ResNet-50
/// training step at 32x32, batch 32: a fifth of all CPU samples went to that spinning on an idle
/// machine, and with other processes running (load average 4) a step took 2.3-4.4 s instead of 0.34-0.40 s.
/// The split never divides `K`: every element of `C` is the same dot product whatever the core count.
public enum GEMM {
    /// Below this many multiply-adds (`M*N*K`) a product stays on the calling thread.
    static let minimumParallelWork = 1 << 21

    /// `C[M, N] = alpha * op(A)[M, K] * op(B)[K, N] + beta * C[M, N]`, row-major.
    ///
    /// - Parameters:
    ///   - transA: `op(A) = A^T` when true; `A` is then stored `[K, M]` with leading dimension `lda`.
    ///   - transB: `op(B) = B^T` when true; `B` is then stored `[N, K]` with leading dimension `ldb`.
    ///   - a, b: float32 buffers; `c`: float32 buffer `[M, ldc]`, read when `beta != 0`.
    ///   - parallel: false keeps the product on the calling thread (callers that already spread
    ///     independent products over the cores).
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool = true) {
        Runtime.prepare()
        guard m > 0, n > 0 else { return }
        func block(rows: Range<Int>, cols: Range<Int>) {
            // Row block of op(A): rows i of A (lda stride) or columns i of A^T's storage.
            let aBlock = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
            // Column block of op(B): columns j of B or rows j of B^T's storage.
            let bBlock = transB ? b + cols.lowerBound * ldb : b + cols.lowerBound
            BLAS.sgemm(transA: transA, transB: transB, m: rows.count, n: cols.count, k: k, alpha: alpha, a: aBlock, lda: lda,
                       b: bBlock, ldb: ldb, beta: beta, c: c + rows.lowerBound * ldc + cols.lowerBound, ldc: ldc)
        }
        let threads = parallel && m * n * k >= minimumParallelWork ? Parallel.threads : 1
        if threads == 1 || k == 0 {
            block(rows: 0..<m, cols: 0..<n)
            return
        }
        // Split the longer side of C, in multiples of 16 (a whole micro-kernel tile) where possible.
        let splitColumns = n >= m
        let length = splitColumns ? n : m
        let pieces = min(threads, max(1, length / 16))
        Parallel.forEachPiece(pieces) { piece in
            let lo = (length * piece / pieces) & ~15, hi = piece == pieces - 1 ? length : (length * (piece + 1) / pieces) & ~15
            guard lo < hi else { return }
            if splitColumns { block(rows: 0..<m, cols: lo..<hi) } else { block(rows: lo..<hi, cols: 0..<n) }
        }
    }
}
