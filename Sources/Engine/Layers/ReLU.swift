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
        output = [Float](count: x.count) { y in
            x.withUnsafeBufferPointer { xp in
                if let mask {
                    mask.withUnsafeBufferPointer { mp in ReLU.select(xp, where: mp, into: y) }
                } else {
                    ReLU.select(xp, wherePositive: xp, into: y)
                }
            }
        }
        return output
    }

    /// Backward: dy (shape of the forward output) -> dx = dy * (y > 0) (or dy * mask when pinned).
    public func backward(_ dy: [Float]) -> [Float] {
        precondition(dy.count == output.count, "ReLU: gradient of \(dy.count) values for \(output.count) outputs")
        return [Float](count: dy.count) { dx in
            dy.withUnsafeBufferPointer { g in
                if let mask = pinnedMask {
                    mask.withUnsafeBufferPointer { mp in ReLU.select(g, where: mp, into: dx) }
                } else {
                    output.withUnsafeBufferPointer { y in ReLU.select(g, wherePositive: y, into: dx) }
                }
            }
        }
    }

    /// `out[i] = key[i] > 0 ? src[i] : 0`, 8 lanes at a time, spread over the cores.
    private static func select(_ src: UnsafeBufferPointer<Float>, wherePositive key: UnsafeBufferPointer<Float>,
                               into out: UnsafeMutableBufferPointer<Float>) {
        let s = UnsafeRawPointer(src.baseAddress!), k = UnsafeRawPointer(key.baseAddress!)
        let o = UnsafeMutableRawPointer(out.baseAddress!)
        Parallel.forEachChunk(out.count) { r in
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                let v = s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                let keep = k.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) .> 0
                o.storeBytes(of: SIMD8<Float>.zero.replacing(with: v, where: keep), toByteOffset: 4 * i, as: SIMD8<Float>.self)
                i += 8
            }
            while i < r.upperBound { out[i] = key[i] > 0 ? src[i] : 0; i += 1 }
        }
    }

    /// `out[i] = mask[i] ? src[i] : 0`, spread over the cores.
    private static func select(_ src: UnsafeBufferPointer<Float>, where mask: UnsafeBufferPointer<Bool>,
                               into out: UnsafeMutableBufferPointer<Float>) {
        // Plain pointers (no inout bindings in the closure): the compiler vectorises this loop.
        let s = src.baseAddress!, m = mask.baseAddress!, o = out.baseAddress!
        Parallel.forEachChunk(out.count) { r in
            for i in r { let v = s[i]; o[i] = m[i] ? v : 0 }   // load first: a select, not a branch
        }
    }

    /// Tangent forward ẋ -> ẏ = mask ⊙ ẋ and tangent backward R{dy} -> R{dx} = mask ⊙ R{dy}, with the
    /// mask of the primal forward (ReLU'' = 0 away from the kink, as double backward takes it): the
    /// Jacobian is a diagonal 0/1 matrix, so all three passes are the same select as `backward`.
    public func tangentForward(_ dotX: [Float]) -> [Float] { backward(dotX) }
    public func tangentBackward(_ rdy: [Float]) -> [Float] { backward(rdy) }
    public func tangentForward(_ x: Tensor4) -> Tensor4 { backward(x) }
    public func tangentBackward(_ x: Tensor4) -> Tensor4 { backward(x) }
    public func tangentForward(_ x: Matrix) -> Matrix { backward(x) }
    public func tangentBackward(_ x: Matrix) -> Matrix { backward(x) }

    public func forward(_ x: Tensor4) -> Tensor4 { Tensor4(n: x.n, c: x.c, h: x.h, w: x.w, data: forward(x.data)) }
    public func backward(_ dy: Tensor4) -> Tensor4 { Tensor4(n: dy.n, c: dy.c, h: dy.h, w: dy.w, data: backward(dy.data)) }
    public func forward(_ x: Matrix) -> Matrix { Matrix(rows: x.rows, cols: x.cols, data: forward(x.data)) }
    public func backward(_ dy: Matrix) -> Matrix { Matrix(rows: dy.rows, cols: dy.cols, data: backward(dy.data)) }
}
