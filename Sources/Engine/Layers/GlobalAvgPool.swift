/// `torch.nn.AdaptiveAvgPool2d(1)` followed by `torch.flatten(x, 1)`: the mean of each channel plane.
public final class GlobalAvgPool {
    private var inputShape: [Int] = []

    public init() {}

    /// Forward: x `[N, C, H, W]` -> `[N, C]`.
    public func forward(_ x: Tensor4) -> Matrix {
        inputShape = x.shape
        var y = Matrix(rows: x.n, cols: x.c)
        let HW = x.h * x.w
        x.data.withUnsafeBufferPointer { xp in
            for i in 0..<(x.n * x.c) { y.data[i] = sumFloat(xp.baseAddress! + i * HW, HW) / Float(HW) }
        }
        return y
    }

    /// The pool is linear: the tangent forward is the forward of ẋ, the tangent backward the backward of R{dy}.
    public func tangentForward(_ dotX: Tensor4) -> Matrix { forward(dotX) }
    public func tangentBackward(_ rdy: Matrix) -> Tensor4 { backward(rdy) }

    /// Backward: dy `[N, C]` -> dx `[N, C, H, W]` = dy / (H*W) broadcast over each plane.
    public func backward(_ dy: Matrix) -> Tensor4 {
        var dx = Tensor4(n: inputShape[0], c: inputShape[1], h: inputShape[2], w: inputShape[3])
        let HW = dx.h * dx.w
        dx.data.withUnsafeMutableBufferPointer { dxp in
            for i in 0..<(dx.n * dx.c) {
                let g = dy.data[i] / Float(HW)
                for j in 0..<HW { dxp[i * HW + j] = g }
            }
        }
        return dx
    }
}
