/// Pins the piecewise-linear choices of a network (each ReLU's on/off mask and each max pool's
/// argmax) so that finite differences of gradients see the same Hessian that double backward computes.
///
/// Why: a ReLU network's gradient jumps wherever a perturbation moves a ReLU input (or a max-pool
/// winner) across its kink. PyTorch's double backward differentiates the gradient with the masks of
/// the current point held fixed (ReLU'' = 0 almost everywhere), while a finite-difference probe at
/// θ + εv re-decides every mask. On BiSSL's narrow parity network (ResNet-18 width 2, 16x16, SimCLR on
/// 4+4 images) a probe of size 1e-5·(1+‖θ‖) along g crossed a kink at 36 of 37 random Hessian batches,
/// and the CG directions cross kinks even when g does not, so the products were off by factors of
/// 0.4-130. With the patterns recorded at θ and replayed in every probe the probed function is smooth
/// (BatchNorm, softmax and normalisation are), and the difference quotient converges to the exact
/// product (see Training/BiSSL/ImplicitGradient.swift and docs/bissl.md for the measured accuracy).
///
/// Use: `patterns.record { forward at θ }`, then `patterns.replay { forward + backward at θ + εv }`
/// (the layers consult `ActivationPatterns.current`, a task-local value, so nothing changes for code
/// that never sets it). Replay requires the same sequence of ReLU / max-pool calls with the same
/// sizes as the recording (the same network on the same batch); a mismatch is a programming error.
public final class ActivationPatterns: @unchecked Sendable {
    public enum Phase: Sendable { case record, replay }

    /// The patterns the layers consult in the current task/thread; nil outside `record`/`replay`.
    @TaskLocal public static var current: ActivationPatterns?

    public private(set) var phase: Phase = .record
    private var reluMasks: [[Bool]] = []
    private var poolArgmax: [[Int32]] = []
    private var reluCursor = 0, poolCursor = 0

    public init() {}

    /// Number of ReLU and max-pool calls recorded.
    public var recordedCalls: (relu: Int, maxPool: Int) { (reluMasks.count, poolArgmax.count) }

    /// Runs `body` while recording (previous recordings are discarded).
    public func record<T>(_ body: () throws -> T) rethrows -> T {
        phase = .record
        reluMasks = []
        poolArgmax = []
        return try Self.$current.withValue(self, operation: body)
    }

    /// Runs `body` replaying the recording from its first call.
    public func replay<T>(_ body: () throws -> T) rethrows -> T {
        phase = .replay
        reluCursor = 0
        poolCursor = 0
        return try Self.$current.withValue(self, operation: body)
    }

    /// The ReLU mask for input `x`: `x > 0` (recorded) when recording, the next recorded mask when replaying.
    func reluMask(_ x: [Float]) -> [Bool] {
        switch phase {
        case .record:
            let m = x.map { $0 > 0 }
            reluMasks.append(m)
            return m
        case .replay:
            precondition(reluCursor < reluMasks.count && reluMasks[reluCursor].count == x.count,
                         "ActivationPatterns: replayed ReLU call \(reluCursor) does not match the recording")
            defer { reluCursor += 1 }
            return reluMasks[reluCursor]
        }
    }

    /// Max pool: stores `argmax` when recording; returns the recorded one (same count) when replaying.
    func maxPoolArgmax(_ computed: [Int32]) -> [Int32] {
        switch phase {
        case .record:
            poolArgmax.append(computed)
            return computed
        case .replay:
            precondition(poolCursor < poolArgmax.count && poolArgmax[poolCursor].count == computed.count,
                         "ActivationPatterns: replayed max-pool call \(poolCursor) does not match the recording")
            defer { poolCursor += 1 }
            return poolArgmax[poolCursor]
        }
    }
}
