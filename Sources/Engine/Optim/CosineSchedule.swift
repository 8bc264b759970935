import Foundation

/// BiSSL's learning-rate schedule (the reference implementation, docs/bissl.md, "Optimisers and schedule"): linear warmup then
/// cosine decay to `0.001 * base`. A counter `s` starts at 1; after each optimiser step, `step()`
/// returns the LR for the next one and increments `s`:
///
///     lr(s) = base * s / W                                  if s < W
///     lr(s) = base * q + 0.001 * base * (1 - q),  q = (1 + cos(pi * (s - W) / (T - W))) / 2   otherwise
///
/// The optimiser is created with `base`, so the first step runs at the full base LR (as in the reference implementation).
/// With `W = 0` there is no warmup. For `s >= T` the LR stays at `0.001 * base`.
public struct CosineSchedule: Sendable {
    public let base: Float, warmup: Int, total: Int
    /// The next value of `s` (settable to restore a saved run).
    public var counter: Int = 1

    public init(base: Float, warmup: Int, total: Int) {
        precondition(total > warmup && warmup >= 0, "CosineSchedule: needs total > warmup >= 0")
        self.base = base; self.warmup = warmup; self.total = total
    }

    /// `lr(s)` of the formula.
    public func lr(at s: Int) -> Float {
        if s < warmup { return base * Float(s) / Float(warmup) }
        let t = min(Double(s - warmup) / Double(total - warmup), 1)
        let q = (1 + cos(Double.pi * t)) / 2
        return Float(Double(base) * q + 0.001 * Double(base) * (1 - q))
    }

    /// Call after an optimiser step: returns the LR for the next step.
    public mutating func step() -> Float {
        defer { counter += 1 }
        return lr(at: counter)
    }
}
