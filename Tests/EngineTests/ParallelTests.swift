import CKernels
import Dispatch
import XCTest
@testable import Engine

/// The engine's worker pool (Sources/CKernels/include/pool.h) and `Parallel` on top of it: every piece runs
/// exactly once, on two threads when the pool takes the job; the pool refuses what it must (more pieces than
/// threads, a call from inside a piece, a second caller while a job runs) and `Parallel` then still covers
/// every index once through Dispatch.
final class ParallelTests: XCTestCase {
    /// `counts[k] += 1` for piece k, and the thread that ran it.
    final class Record: @unchecked Sendable {
        var counts: [Int]
        var threads: [pthread_t?]
        init(_ n: Int) { counts = [Int](repeating: 0, count: n); threads = [pthread_t?](repeating: nil, count: n) }
    }

    func testThePoolRunsEachPieceOnceAndRefusesWhatItMust() {
        let threads = 2
        let record = Record(threads)
        let ran = withExtendedLifetime(record) {
            bissl_pool_run(threads, threads, { ctx, k in
                let r = Unmanaged<Record>.fromOpaque(ctx!).takeUnretainedValue()
                r.counts[k] += 1
                r.threads[k] = pthread_self()
            }, Unmanaged.passUnretained(record).toOpaque())
        }
        XCTAssertEqual(ran, 1, "the pool takes a job of 2 pieces on 2 threads")
        XCTAssertEqual(record.counts, [1, 1])
        XCTAssertNotEqual(record.threads[0].map { UInt($0) }, record.threads[1].map { UInt($0) }, "piece 1 on a worker")
        XCTAssertEqual(record.threads[0].map { UInt($0) }, UInt(pthread_self()), "piece 0 on the caller")
        XCTAssertEqual(bissl_pool_run(threads, threads + 1, { _, _ in }, nil), 0, "more pieces than threads")
        XCTAssertEqual(bissl_pool_run(1, 1, { _, _ in }, nil), 0, "one thread")
        // nested: a call from inside a piece (piece 0 on the caller, piece 1 on the worker) is refused
        let nested = Record(threads)
        _ = bissl_pool_run(threads, threads, { ctx, k in
            let r = Unmanaged<Record>.fromOpaque(ctx!).takeUnretainedValue()
            r.counts[k] = Int(bissl_pool_run(2, 2, { _, _ in }, nil)) + 10
        }, Unmanaged.passUnretained(nested).toOpaque())
        XCTAssertEqual(nested.counts, [10, 10], "nested calls refused on the caller's piece and the worker's")
    }

    /// `Parallel.forEachChunk` covers 0..<count once, with loops nested inside loops and two callers at once.
    func testParallelLoopsCoverEveryIndexOnceNestedAndConcurrent() {
        let n = 100_000
        for _ in 0..<50 {
            var hits = [Int32](repeating: 0, count: n)
            hits.withUnsafeMutableBufferPointer { h in
                let p = h.baseAddress!
                Parallel.forEachChunk(n) { r in for i in r { p[i] += 1 } }
                Parallel.forEachPiece(2) { half in
                    Parallel.forEachChunk(n / 2) { r in for i in r { p[half * (n / 2) + i] += 1 } }
                }
            }
            XCTAssertTrue(hits.allSatisfy { $0 == 2 }, "every index twice (a loop, then loops nested in pieces)")
        }
        let callers = 4
        /// One slot per caller (no shared array is mutated from two threads).
        struct Slots: @unchecked Sendable { let p = UnsafeMutablePointer<Int>.allocate(capacity: 4) }
        let totals = Slots()
        totals.p.initialize(repeating: 0, count: callers)
        defer { totals.p.deallocate() }
        DispatchQueue.concurrentPerform(iterations: callers) { c in
            for _ in 0..<20 {
                var hits = [Int32](repeating: 0, count: n)
                hits.withUnsafeMutableBufferPointer { h in
                    let p = h.baseAddress!
                    Parallel.forEachChunk(n) { r in for i in r { p[i] += 1 } }
                }
                totals.p[c] += hits.reduce(0) { $0 + Int($1) }
            }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: totals.p, count: callers)), [Int](repeating: 20 * n, count: callers), "concurrent callers, each index once per loop")
    }
}
