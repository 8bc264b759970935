/// `torch.nn.ReLU`: `y = max(x, 0)` elementwise; backward passes `dy` where `y > 0`.
/// Works on flat float buffers, so it serves `Tensor4` and `Matrix` alike.
public final class ReLU {
    /// Output of the last forward pass (its sign is the backward mask).
    private var output: [Float] = []
    /// The mask of the last forward when `ActivationPatterns.current` was set (pinned kinks, used
    /// for finite-difference Hessian-vector products); nil otherwise.
    private var pinnedMask: [Bool]?

    public init() {}

    /// Forward: x (any shape) -> y (same shape). Inside `ActivationPatterns.record`/`replay` the
    /// mask is recorded/replayed: `y = mask ? x : 0`.
    public func forward(_ x: [Float]) -> [Float] {
        let mask = ActivationPatterns.current?.reluMask(x)
        pinnedMask = mask
        output = [Float](unsafeUninitializedCapacity: x.count) { y, initialized in
            x.withUnsafeBufferPointer { xp in
                if let mask {
                    mask.withUnsafeBufferPointer { mp in
                        Parallel.forEachChunk(xp.count) { r in for i in r { y[i] = mp[i] ? xp[i] : 0 } }
                    }
                } else {
                    Parallel.forEachChunk(xp.count) { r in for i in r { y[i] = max(xp[i], 0) } }
                }
            }
            initialized = x.count
        }
        return output
    }

    /// Backward: dy (shape of the forward output) -> dx = dy * (y > 0) (or dy * mask when pinned).
    public func backward(_ dy: [Float]) -> [Float] {
        precondition(dy.count == output.count, "ReLU: gradient of \(dy.count) values for \(output.count) outputs")
        return [Float](unsafeUninitializedCapacity: dy.count) { dx, initialized in
            dy.withUnsafeBufferPointer { g in
                if let mask = pinnedMask {
                    mask.withUnsafeBufferPointer { mp in
                        Parallel.forEachChunk(g.count) { r in for i in r { dx[i] = mp[i] ? g[i] : 0 } }
                    }
                } else {
                    output.withUnsafeBufferPointer { y in
                        Parallel.forEachChunk(g.count) { r in for i in r { dx[i] = y[i] > 0 ? g[i] : 0 } }
                    }
                }
            }
            initialized = dy.count
        }
    }

    public func forward(_ x: Tensor4) -> Tensor4 { Tensor4(n: x.n, c: x.c, h: x.h, w: x.w, data: forward(x.data)) }
    public func backward(_ dy: Tensor4) -> Tensor4 { Tensor4(n: dy.n, c: dy.c, h: dy.h, w: dy.w, data: backward(dy.data)) }
    public func forward(_ x: Matrix) -> Matrix { Matrix(rows: x.rows, cols: x.cols, data: forward(x.data)) }
    public func backward(_ dy: Matrix) -> Matrix { Matrix(rows: dy.rows, cols: dy.cols, data: backward(dy.data)) }
}
