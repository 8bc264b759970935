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
        backgroundWorkers.enter()
        DispatchQueue.global(qos: .userInitiated).async {
            self.result = Result { try work() }
            self.done.signal()
            backgroundWorkers.leave()
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

/// Every `Background` worker that has started and not finished, process-wide.
private let backgroundWorkers = DispatchGroup()

/// What a process does with `Background` workers its callers left behind.
public enum BackgroundWork {
    /// Waits until every `Background` worker has finished, or `seconds` have passed; returns whether all
    /// finished. A process leaving on an error calls it before `exit`: `exit` runs the libraries'
    /// destructors (Foundation's ICU data, libcurl's and OpenSSL's state) while other threads go on, and
    /// a worker still inside one of them (a `pull` whose label listing was still on the network when the
    /// object check failed) would crash the process after its error line.
    @discardableResult
    public static func finish(within seconds: Double) -> Bool {
        backgroundWorkers.wait(timeout: .now() + seconds) == .success
    }
}
