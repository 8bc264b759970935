/// `torch.nn.ReLU`: `y = max(x, 0)` elementwise; backward passes `dy` where `y > 0`.
/// Works on flat float buffers, so it serves `Tensor4` and `Matrix` alike. `forward(_:adding:)` is a
/// ResNet block's residual add and output ReLU, `relu(a + b)`, in one pass (He et al., arXiv:1512.03385);
/// its backward is `backward`, whose dx goes unchanged to both addends. (A ReLU right after a
/// BatchNorm runs inside `BatchNorm2d.forward(_:mode:relu:)`.)
public final class ReLU {
    /// Output of the last forward pass (its sign is the backward mask).
    private var output: [Float] = []
    /// The mask of the last forward when `ActivationPatterns.current` was set (pinned kinks, used
    /// for finite-difference Hessian-vector products); nil otherwise.
    private var pinnedMask: [Bool]?

    public init() {}

    /// Forward: x (any shape) -> y (same shape). Inside `ActivationPatterns.record`/`replay` the
    /// mask is recorded/replayed: `y = mask ? x : 0`.
    public func forward(_ x: [Float]) -> [Float] { forward(x, plus: nil) }

    /// `max(x + addend, 0)` (addend nil: `max(x, 0)`; NaN stays NaN, as `torch.relu`); a pinned mask is taken on the sum.
    private func forward(_ x: [Float], plus addend: [Float]?) -> [Float] {
        precondition(addend.map { $0.count == x.count } ?? true, "ReLU: addends of \(x.count) and \(addend?.count ?? 0) values")
        if let patterns = ActivationPatterns.current {
            let sum = addend.map { zip(x, $0).map(+) } ?? x
            let mask = patterns.reluMask(sum)
            pinnedMask = mask
            output = ReLU.apply(sum, plus: nil, key: nil, pinned: mask)
        } else {
            pinnedMask = nil
            output = ReLU.apply(x, plus: addend, key: nil, pinned: nil)
        }
        return output
    }

    /// Backward: dy (shape of the forward output) -> dx = dy * (y > 0) (or dy * mask when pinned).
    public func backward(_ dy: [Float]) -> [Float] { masked(dy, plus: nil) }

    /// `(t + addend) * (y > 0)` (or the pinned mask) for the last forward's output y.
    private func masked(_ t: [Float], plus addend: [Float]?) -> [Float] {
        precondition(t.count == output.count && (addend.map { $0.count == t.count } ?? true),
                     "ReLU: gradient of \(t.count) values for \(output.count) outputs")
        return ReLU.apply(t, plus: addend, key: pinnedMask == nil ? output : nil, pinned: pinnedMask)
    }

    /// `out[i] = keep ? v : 0` with `v = t[i] (+ addend[i])` and `keep = pinned[i]`, else `key[i] > 0` (the
    /// backward's key, the forward's output, passes no gradient at NaN, as `threshold_backward`), else
    /// `reluRule(v)` (the forward); 8 lanes at a time, spread over the cores.
    private static func apply(_ t: [Float], plus addend: [Float]?, key: [Float]?, pinned: [Bool]?) -> [Float] {
        [Float](count: t.count) { out in
            t.withUnsafeBufferPointer { tp in
                (addend ?? t).withUnsafeBufferPointer { ap in
                    (key ?? t).withUnsafeBufferPointer { kp in
                        (pinned ?? []).withUnsafeBufferPointer { mp in
                            // Plain pointers (no inout bindings in the closure): the loops vectorise.
                            let s = UnsafeRawPointer(tp.baseAddress!), a = UnsafeRawPointer(ap.baseAddress!)
                            let k = UnsafeRawPointer(kp.baseAddress!), m = pinned == nil ? nil : mp.baseAddress, o = UnsafeMutableRawPointer(out.baseAddress!)
                            let add = addend != nil, keyed = key != nil
                            Parallel.forEachChunk(out.count, piecesPerThread: 4) { r in
                                var i = r.lowerBound
                                if let m {
                                    let (src, sum, dst) = (tp.baseAddress!, ap.baseAddress!, out.baseAddress!)
                                    for i in r { let v = add ? src[i] + sum[i] : src[i]; dst[i] = m[i] ? v : 0 }   // load first: a select
                                    return
                                }
                                while i + 8 <= r.upperBound {
                                    var v = s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                                    if add { v += a.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) }
                                    let y = keyed ? SIMD8<Float>.zero.replacing(with: v, where: k.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) .> 0)
                                                  : reluRule(v)
                                    o.storeBytes(of: y, toByteOffset: 4 * i, as: SIMD8<Float>.self)
                                    i += 8
                                }
                                while i < r.upperBound {
                                    var v = s.load(fromByteOffset: 4 * i, as: Float.self)
                                    if add { v += a.load(fromByteOffset: 4 * i, as: Float.self) }
                                    let y = keyed ? (k.load(fromByteOffset: 4 * i, as: Float.self) > 0 ? v : 0) : reluRule(v)
                                    o.storeBytes(of: y, toByteOffset: 4 * i, as: Float.self)
                                    i += 1
                                }
                            }
                        }
                    }
                }
            }
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

    /// `relu(a + b)` for a, b `[N, C, H, W]` (a block's residual add and output ReLU), one pass.
    public func forward(_ a: Tensor4, adding b: Tensor4) -> Tensor4 {
        precondition(a.shape == b.shape, "ReLU: addends of shapes \(a.shape) and \(b.shape)")
        return Tensor4(n: a.n, c: a.c, h: a.h, w: a.w, data: forward(a.data, plus: b.data))
    }

    /// Takes `y`, `relu(a + b)` computed by a fused producer (`BatchNorm2d.forward(_:mode:adding:)`, the same
    /// values as `forward(a, adding: b)`), as this ReLU's forward output: its backward and tangent rules then
    /// use y's mask. Not inside `ActivationPatterns` (nothing is pinned).
    public func record(output y: Tensor4) {
        precondition(ActivationPatterns.current == nil, "ReLU: a fused output under activation patterns")
        pinnedMask = nil
        output = y.data
    }

    /// Backward of `relu(·)` for an output that two gradients reach: `(dy + pending) ⊙ mask`, one pass (the
    /// residual branch's gradient `pending` added here rather than where the branches meet; the sum is that of
    /// `ResidualAdd.accumulate`, so the same values as summing first).
    public func backward(_ dy: Tensor4, adding pending: Tensor4) -> Tensor4 {
        precondition(dy.shape == pending.shape, "ReLU: gradients of shapes \(dy.shape) and \(pending.shape)")
        return Tensor4(n: dy.n, c: dy.c, h: dy.h, w: dy.w, data: masked(dy.data, plus: pending.data))
    }

    /// Tangent of `forward(_:adding:)`: ẏ = mask ⊙ (ȧ + ḃ), one pass.
    public func tangentForward(_ dotA: Tensor4, adding dotB: Tensor4) -> Tensor4 {
        precondition(dotA.shape == dotB.shape, "ReLU: tangents of shapes \(dotA.shape) and \(dotB.shape)")
        return Tensor4(n: dotA.n, c: dotA.c, h: dotA.h, w: dotA.w, data: masked(dotA.data, plus: dotB.data))
    }
}

/// ReLU's forward rule in every lane: `v <= 0 ? 0 : v`, so NaN stays NaN (as `torch.relu`). The one
/// definition of the rule: `ReLU`'s forward, `BatchNorm2d`'s fused ReLU and `Conv2d.infer`'s epilogue call it.
/// (On `SIMD8<Float>`, not generic over `SIMD`: the generic form was not vectorised, 3x slower passes.)
@inline(__always) func reluRule(_ v: SIMD8<Float>) -> SIMD8<Float> { v.replacing(with: 0, where: v .<= 0) }

/// `reluRule` of one value (the tails of the 8-lane loops).
@inline(__always) func reluRule(_ v: Float) -> Float { reluRule(SIMD8(repeating: v))[0] }
