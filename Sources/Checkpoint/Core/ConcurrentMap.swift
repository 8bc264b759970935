import Foundation

/// `(0..<count).map(transform)` with the calls spread over the machine's cores
/// (`DispatchQueue.concurrentPerform`), results in index order. `transform` must not mutate state
/// shared between indices; it runs on several threads at once.
public func concurrentMap<T>(_ count: Int, _ transform: (Int) -> T) -> [T] {
    guard count > 1 else { return count == 1 ? [transform(0)] : [] }
    let results = UnsafeMutableBufferPointer<T?>.allocate(capacity: count)
    results.initialize(repeating: nil)
    defer { _ = results.deinitialize(); results.deallocate() }
    withoutActuallyEscaping(transform) { transform in
        let work = UncheckedBox((transform, results))
        DispatchQueue.concurrentPerform(iterations: count) { i in work.value.1[i] = work.value.0(i) }
    }
    return results.map { $0! }
}

/// Hands a closure and its disjoint output slots to the worker threads of `concurrentMap`.
private struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
