import Foundation

/// A value computed on a thread of its own from creation until `value()` returns it: hashing that
/// overlaps with reading or writing (`CheckpointFile.write`, `Interchange.load`). A caller that
/// leaves early (an error) does not wait; the worker keeps itself alive until it finishes.
public final class Background<T: Sendable>: @unchecked Sendable {
    // @unchecked: `result` is written once by the worker before `done` is signalled and read only
    // after `done.wait()`; `joined` is touched by the owning thread only.
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, Error>?
    private var joined = false

    /// Starts `work` now on a global queue.
    public init(_ work: @escaping @Sendable () throws -> T) {
        DispatchQueue.global(qos: .userInitiated).async {
            self.result = Result { try work() }
            self.done.signal()
        }
    }

    /// Waits for the value (only the first call waits) and returns it, or rethrows what `work` threw.
    public func value() throws -> T {
        if !joined {
            done.wait()
            joined = true
        }
        return try result!.get()
    }
}
