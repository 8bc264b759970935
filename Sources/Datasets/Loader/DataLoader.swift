import BisslCore
import Foundation

/// One batch: `views` tensors of shape N x 3 x H x W (float32, C order, one per view: 1 for
/// supervised transforms, 2 for the pretext pair), the labels and the dataset indices of its images.
public struct Batch: Sendable {
    public var views: [[Float]]
    public var labels: [Int]
    public var indices: [Int]
    public var height: Int
    public var width: Int
    /// Images of the whole global batch this batch is a shard of (`count` for an unsharded loader).
    public var globalCount: Int
    public var count: Int { labels.count }
}

/// Turns one decoded image into one or more CHW float32 tensors of 3 x height x width, drawing any
/// randomness from the generator it is given (seeded per image, see `DataLoader`).
public typealias SampleTransform = @Sendable (RGBImage, inout SeededGenerator) -> [[Float]]

/// Seeded, reproducible mini-batches over an `ImageDataset`, built on background threads ahead of
/// the consumer (like a PyTorch `DataLoader` with workers and prefetching).
///
/// Order: epoch `e` visits the images in a permutation drawn from `SeededGenerator(seed: mix(seed, e))`
/// (identity order when `shuffle` is false); the last short batch is dropped when `dropLast`.
/// Randomness of image `k` in epoch `e` comes from its own generator seeded by (seed, e, k), so
/// batches are identical whatever the number of worker threads or their timing. At most `prefetch`
/// finished batches wait in memory. A decode or transform error is thrown by `next()` for the batch
/// holding the image, naming the file; later batches are not built.
///
/// Data parallelism (`shard`): every process walks the same global batches and builds only its
/// `DataShard` of each (contiguous positions), with the same per-image randomness as a single
/// process; `batchSize` stays the global batch size.
public final class DataLoader: Sendable {
    public let dataset: ImageDataset
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    public let workers: Int
    public let prefetch: Int
    public let height: Int
    public let width: Int
    public let transform: SampleTransform
    /// The part of each global batch this loader builds (`.whole`: all of it).
    public let shard: DataShard

    /// - Parameters:
    ///   - height, width: the size every transform output has (checked per image).
    ///   - workers: threads decoding and augmenting in parallel inside a batch (default: all cores).
    ///   - prefetch: finished batches kept ahead of the consumer (at least 1).
    public init(dataset: ImageDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64,
                height: Int, width: Int, workers: Int = ProcessorCount.available, prefetch: Int = 2,
                shard: DataShard = .whole, transform: @escaping SampleTransform) {
        precondition(batchSize > 0, "batch size must be positive")
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.workers = max(1, workers)
        self.prefetch = max(1, prefetch)
        self.height = height
        self.width = width
        self.transform = transform
        self.shard = shard
    }

    /// Number of batches in one epoch.
    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// The dataset positions visited in epoch `epoch`, in order.
    public func order(epoch: Int) -> [Int] {
        var order = Array(0..<dataset.count)
        if shuffle {
            var rng = SeededGenerator(seed: Self.mix(seed, UInt64(epoch), 0x5EED))
            order.shuffle(using: &rng)
        }
        return order
    }

    /// Starts building the batches of `epoch` in the background, from batch `startingAt` on (a
    /// resumed run skips the batches it already used without decoding them; the batches are the
    /// same as those of an iterator started at 0).
    public func epoch(_ epoch: Int, startingAt start: Int = 0) -> EpochIterator {
        EpochIterator(loader: self, epoch: epoch, start: start)
    }

    /// Builds one batch synchronously (used by the iterator's producer thread).
    func build(_ global: ArraySlice<Int>, epoch: Int) throws -> Batch {
        let part = shard.range(of: global.count)
        let positions = Array(global.dropFirst(part.lowerBound).prefix(part.count))
        let n = positions.count
        let results = UnsafeMutableBufferPointer<Result<[[Float]], Error>?>.allocate(capacity: n)
        results.initialize(repeating: nil)
        defer { results.deinitialize(); results.deallocate() }
        let box = UncheckedBox(results)
        let chunk = (n + workers - 1) / workers
        DispatchQueue.concurrentPerform(iterations: min(workers, n)) { w in
            for k in (w * chunk)..<min(n, (w + 1) * chunk) {
                let position = positions[k]
                box.value[k] = Result {
                    let image = try dataset.image(position)
                    var rng = SeededGenerator(seed: Self.mix(seed, UInt64(epoch), UInt64(position) &+ 1))
                    return transform(image, &rng)
                }
            }
        }
        let plane = 3 * height * width
        var views: [[Float]] = []
        for k in 0..<n {
            let out = try results[k]!.get()
            if views.isEmpty { views = Array(repeating: [], count: out.count).map { _ in { var a = [Float](); a.reserveCapacity(n * plane); return a }() } }
            guard out.count == views.count, out.allSatisfy({ $0.count == plane }) else {
                throw DatasetError.invalid("transform of \(dataset.name(positions[k])) gave \(out.map(\.count)) values, expected \(views.count) x \(plane) (3x\(height)x\(width))")
            }
            for v in 0..<out.count { views[v] += out[v] }
        }
        return Batch(views: views, labels: positions.map(dataset.label), indices: positions, height: height, width: width,
                     globalCount: global.count)
    }

    /// SplitMix-style mixing of three words into one seed.
    static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
        var g = SeededGenerator(seed: a ^ 0x243F_6A88_85A3_08D3)
        var h = g.next() ^ b
        g = SeededGenerator(seed: h)
        h = g.next() ^ c
        g = SeededGenerator(seed: h)
        return g.next()
    }
}

/// A mutable pointer shared by the worker closures; each index is written by exactly one worker.
private final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// The batches of one epoch, produced by a background thread at most `prefetch` ahead. Dropping
/// the iterator stops the producer after the batch it is building.
public final class EpochIterator: IteratorProtocol, @unchecked Sendable {
    /// State shared with the producer thread (which never holds the iterator itself).
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        var ready: [Int: Result<Batch, Error>] = [:]
        var nextToReturn = 0
        var cancelled = false
    }

    private let shared = Shared()
    private let total: Int

    init(loader: DataLoader, epoch: Int, start: Int) {
        let order = loader.order(epoch: epoch)
        let total = loader.batchesPerEpoch
        self.total = total
        let shared = self.shared
        shared.nextToReturn = min(max(0, start), total)
        let first = shared.nextToReturn
        let thread = Thread {
            for b in first..<total {
                shared.condition.lock()
                while !shared.cancelled && b - shared.nextToReturn >= loader.prefetch { shared.condition.wait() }
                let stop = shared.cancelled
                shared.condition.unlock()
                if stop { return }
                let start = b * loader.batchSize
                let slice = order[start..<min(order.count, start + loader.batchSize)]
                let result = Result { try loader.build(slice, epoch: epoch) }
                shared.condition.lock()
                shared.ready[b] = result
                shared.condition.broadcast()
                shared.condition.unlock()
                if case .failure = result { return }
            }
        }
        thread.name = "bissl-loader"
        thread.start()
    }

    deinit {
        shared.condition.lock()
        shared.cancelled = true
        shared.condition.broadcast()
        shared.condition.unlock()
    }

    /// The next batch, waiting for the producer if needed; nil after the last one.
    /// - Throws: the `DatasetError` of the first failing image of this batch (later batches are not built).
    public func nextBatch() throws -> Batch? {
        shared.condition.lock()
        defer { shared.condition.unlock() }
        guard shared.nextToReturn < total else { return nil }
        while shared.ready[shared.nextToReturn] == nil { shared.condition.wait() }
        let result = shared.ready.removeValue(forKey: shared.nextToReturn)!
        shared.nextToReturn += 1
        shared.condition.broadcast()
        if case .failure = result { shared.nextToReturn = total }
        return try result.get()
    }

    /// `IteratorProtocol`: like `nextBatch()` but ends (nil) at an error; use `nextBatch()` to see it.
    public func next() -> Batch? { try? nextBatch() }
}
