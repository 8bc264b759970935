import CKernels
import Dispatch
import BisslCore
import Foundation

/// Splitting the engine's work across the cores: its own loops (im2col, BatchNorm, ReLU, residual adds,
/// norms) and the pieces of each GEMM (`GEMM.sgemm`, one single-threaded BLAS call per piece).
///
/// Every caller partitions work so that each index is written by exactly one thread and every
/// reduction happens inside one index, so results are bit-identical whatever the thread count.
/// OpenBLAS's own thread pool is off (`Runtime`), so threads never nest inside a BLAS call. The pieces run
/// on the engine's worker pool (Sources/CKernels/include/pool.h), whose workers spin briefly between loops
/// instead of sleeping (measured: the small model's training step up to 44% faster, docs/performance.md) and
/// take pieces rather than being handed them (the caller runs the pieces of a worker that has not started);
/// loops nested in a piece, or started while another thread's loop runs, go to Dispatch.
enum Parallel {
    /// Threads used for engine loops: the processors this process may run on (its affinity mask, so
    /// `taskset -c 0` or `mpirun --bind-to core` gives one thread per process).
    static let threads = ProcessorCount.available

    /// Below this many elements of work a loop stays on the calling thread (the dispatch costs more).
    static let minimumWork = 32_768

    /// Calls `body(range)` for contiguous sub-ranges covering `0..<count`, in parallel when
    /// `count * workPerIndex` is at least `minimumWork`: `threads` ranges, or with `piecesPerThread` k > 1 up
    /// to `k * threads` smaller ones that the threads take as they become free (a thread that is descheduled
    /// or finishes late then holds up a smaller share). Only for bodies whose result for an index does not
    /// depend on the range it falls in (elementwise or per-channel loops).
    @inline(__always)
    static func forEachChunk(_ count: Int, workPerIndex: Int = 1, piecesPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        let chunks = count * workPerIndex >= minimumWork ? min(threads * piecesPerThread, count) : 1
        if chunks <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        forEachPiece(chunks) { k in
            let lo = count * k / chunks, hi = count * (k + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Calls `body(k)` for `k` in `0..<pieces` on up to `pieces` threads (one call per piece, piece 0 on the
    /// calling thread, the others on whichever thread takes them first).
    static func forEachPiece(_ pieces: Int, _ body: (Int) -> Void) {
        if pieces <= 1 {
            if pieces == 1 { body(0) }
            return
        }
        withoutActuallyEscaping(body) { body in
            // The engine's worker pool (Sources/CKernels/include/pool.h: workers that spin briefly for the next
            // loop instead of sleeping); Dispatch when the pool cannot take the job (nested loops, another caller).
            var job = body
            let ran = withUnsafeMutablePointer(to: &job) { jp in
                bissl_pool_run(threads, pieces, { ctx, k in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(k)
                }, jp)
            }
            if ran != 0 { return }
            let work = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: pieces) { k in work.value(k) }
        }
    }

    /// A reduction over `0..<count` (chunks of a batch) into `length` floats at `result`, the same
    /// additions on any number of cores: two fixed halves, one per thread, `body(range, target, alone)` adding
    /// the first half's contributions into `result` and the second's into a zeroed buffer that is added
    /// to `result` last (`alone`: the only piece, when `count < 2`; its products may use every core).
    static func accumulateInHalves(_ count: Int, into result: UnsafeMutablePointer<Float>, length: Int,
                                   _ body: (_ range: Range<Int>, _ target: UnsafeMutablePointer<Float>, _ alone: Bool) -> Void) {
        let halves = count >= 2 ? 2 : 1
        let upper = UnsafeMutablePointer<Float>.allocate(capacity: halves == 2 ? length : 0)
        defer { upper.deallocate() }
        if halves == 2 { upper.initialize(repeating: 0, count: length) }
        forEachPiece(halves) { half in
            body(half == 0 ? 0..<(count / halves) : (count / halves)..<count, half == 0 ? result : upper, halves == 1)
        }
        if halves == 2 { for i in 0..<length { result[i] += upper[i] } }
    }
}

/// The loop body handed to the workers; `forEachChunk` callers guarantee disjoint writes.
private struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
