/// This process's part of every global batch in data-parallel training: of a batch of `n` images,
/// shard `index` of `count` takes the contiguous positions `index·n/count ..< (index+1)·n/count`
/// (integer division), so the shards partition the batch in order and their sizes differ by at most
/// one. Every process draws the same global order from the seed (`DataLoader`), so the union of
/// the shards of one step is exactly the batch a single process would draw.
public struct DataShard: Sendable, Equatable {
    public let index: Int
    public let count: Int

    /// The whole batch (a single process).
    public static let whole = DataShard(index: 0, count: 1)

    /// - Precondition: `0 <= index < count`.
    public init(index: Int, count: Int) {
        precondition(count >= 1 && index >= 0 && index < count, "DataShard: index \(index) of \(count)")
        self.index = index
        self.count = count
    }

    /// The positions of a batch of `n` this shard takes.
    public func range(of n: Int) -> Range<Int> { (index * n / count)..<((index + 1) * n / count) }

    /// The smallest shard of a batch of `n`.
    public func smallest(of n: Int) -> Int { n / count }
}
