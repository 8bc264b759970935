import CKernels
import Dispatch
import Foundation
import XCTest
@testable import Engine

/// The engine's worker pool (Sources/CKernels/include/pool.h) and `Parallel` on top of it: every piece runs
/// exactly once, piece 0 on the caller, the others on whichever thread takes them (a worker while the caller is
/// busy, the caller while the worker is); the pool refuses what it must (no pieces or too many, a call from
/// inside a piece, a second caller while a job runs) and `Parallel` then still covers
/// every index once through Dispatch.
final class ParallelTests: XCTestCase {
    /// `counts[k] += 1` for piece k, and the thread that ran it.
    final class Record: @unchecked Sendable {
        var counts: [Int]
        var threads: [pthread_t?]
        let lock = NSLock()
        init(_ n: Int) { counts = [Int](repeating: 0, count: n); threads = [pthread_t?](repeating: nil, count: n) }
    }

    func testThePoolRunsEachPieceOnceAndRefusesWhatItMust() {
        let threads = 2
        // Piece 0 (the caller's) waits until piece 1 has returned, so piece 1 must run on a worker.
        let record = Record(threads)
        let ran = withExtendedLifetime(record) {
            bissl_pool_run(threads, threads, { ctx, k in
                let r = Unmanaged<Record>.fromOpaque(ctx!).takeUnretainedValue()
                if k == 0 { XCTAssertTrue(ParallelTests.waitFor(r, piece: 1), "piece 1 ran while piece 0 waited") }
                ParallelTests.mark(r, piece: k)
            }, Unmanaged.passUnretained(record).toOpaque())
        }
        XCTAssertEqual(ran, 1, "the pool takes a job of 2 pieces on 2 threads")
        XCTAssertEqual(record.counts, [1, 1])
        XCTAssertNotEqual(record.threads[0].map { UInt($0) }, record.threads[1].map { UInt($0) }, "piece 1 on a worker")
        XCTAssertEqual(record.threads[0].map { UInt($0) }, UInt(pthread_self()), "piece 0 on the caller")
        // More pieces than threads: whichever thread takes piece 1 waits for piece 2, which the other thread
        // must then take (the caller when the worker holds piece 1: a piece the worker has not taken).
        for pieces in [3, 7, 64] {
            for _ in 0..<20 {
                let many = Record(pieces)
                XCTAssertEqual(withExtendedLifetime(many) {
                    bissl_pool_run(threads, pieces, { ctx, k in
                        let r = Unmanaged<Record>.fromOpaque(ctx!).takeUnretainedValue()
                        if k == 1 { XCTAssertTrue(ParallelTests.waitFor(r, piece: 2), "piece 2 ran while piece 1 waited") }
                        ParallelTests.mark(r, piece: k)
                    }, Unmanaged.passUnretained(many).toOpaque())
                }, 1, "the pool takes \(pieces) pieces")
                XCTAssertEqual(many.counts, [Int](repeating: 1, count: pieces), "each of \(pieces) pieces once")
                XCTAssertEqual(many.threads[0].map { UInt($0) }, UInt(pthread_self()), "piece 0 on the caller")
            }
        }
        XCTAssertEqual(bissl_pool_run(threads, 0, { _, _ in }, nil), 0, "no pieces")
        XCTAssertEqual(bissl_pool_run(threads, Int(BISSL_POOL_MAX_PIECES) + 1, { _, _ in }, nil), 0, "too many pieces")
        XCTAssertEqual(bissl_pool_run(1, 1, { _, _ in }, nil), 0, "one thread")
        // nested: a call from inside a piece (piece 0 on the caller, piece 1 on the worker) is refused
        let nested = Record(threads)
        _ = bissl_pool_run(threads, threads, { ctx, k in
            let r = Unmanaged<Record>.fromOpaque(ctx!).takeUnretainedValue()
            r.counts[k] = Int(bissl_pool_run(2, 2, { _, _ in }, nil)) + 10
        }, Unmanaged.passUnretained(nested).toOpaque())
        XCTAssertEqual(nested.counts, [10, 10], "nested calls refused on the caller's piece and the worker's")
    }

    /// `counts[piece] += 1` and the thread running it, published to a thread that `waitFor`s it.
    static func mark(_ r: Record, piece k: Int) {
        r.lock.lock(); r.counts[k] += 1; r.threads[k] = pthread_self(); r.lock.unlock()
    }

    /// Waits (at most 10 s) until `piece` has been marked; false on time-out.
    static func waitFor(_ r: Record, piece k: Int) -> Bool {
        let deadline = DispatchTime.now() + .seconds(10)
        while DispatchTime.now() < deadline {
            r.lock.lock(); let seen = r.counts[k] > 0; r.lock.unlock()
            if seen { return true }
            sched_yield()
        }
        return false
    }

    /// `Parallel.forEachChunk` covers 0..<count once, with loops nested inside loops and two callers at once.
    func testParallelLoopsCoverEveryIndexOnceNestedAndConcurrent() {
        let n = 100_000
        for _ in 0..<50 {
            var hits = [Int32](repeating: 0, count: n)
            hits.withUnsafeMutableBufferPointer { h in
                let p = h.baseAddress!
                Parallel.forEachChunk(n) { r in for i in r { p[i] += 1 } }
                Parallel.forEachChunk(n, piecesPerThread: 4) { r in for i in r { p[i] += 1 } }
                Parallel.forEachPiece(2) { half in
                    Parallel.forEachChunk(n / 2, piecesPerThread: 4) { r in for i in r { p[half * (n / 2) + i] += 1 } }
                }
            }
            XCTAssertTrue(hits.allSatisfy { $0 == 3 }, "every index three times (a loop, one in smaller pieces, then loops nested in pieces)")
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
