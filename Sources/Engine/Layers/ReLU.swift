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
        if let patterns = ActivationPatterns.current {
            let mask = patterns.reluMask(x)
            pinnedMask = mask
            output = zip(x, mask).map { $1 ? $0 : 0 }
            return output
        }
        pinnedMask = nil
        var y = x
        y.withUnsafeMutableBufferPointer { p in
            Parallel.forEachChunk(p.count) { r in
                for i in r { p[i] = max(p[i], 0) }
            }
        }
        output = y
        return y
    }

    /// Backward: dy (shape of the forward output) -> dx = dy * (y > 0).
    public func backward(_ dy: [Float]) -> [Float] {
        precondition(dy.count == output.count, "ReLU: gradient of \(dy.count) values for \(output.count) outputs")
        var dx = dy
        if let mask = pinnedMask {
            for i in dx.indices where !mask[i] { dx[i] = 0 }
            return dx
        }
        dx.withUnsafeMutableBufferPointer { g in
            output.withUnsafeBufferPointer { y in
                Parallel.forEachChunk(g.count) { r in
                    for i in r { g[i] = y[i] > 0 ? g[i] : 0 }
                }
            }
        }
        return dx
    }

    public func forward(_ x: Tensor4) -> Tensor4 { Tensor4(n: x.n, c: x.c, h: x.h, w: x.w, data: forward(x.data)) }
    public func backward(_ dy: Tensor4) -> Tensor4 { Tensor4(n: dy.n, c: dy.c, h: dy.h, w: dy.w, data: backward(dy.data)) }
    public func forward(_ x: Matrix) -> Matrix { Matrix(rows: x.rows, cols: x.cols, data: forward(x.data)) }
    public func backward(_ dy: Matrix) -> Matrix { Matrix(rows: dy.rows, cols: dy.cols, data: backward(dy.data)) }
}
