/// The residual connection of a ResNet block, `out + identity`
/// (He et al., arXiv:1512.03385). Backward sends `dy` unchanged to both branches.
public enum ResidualAdd {
    /// Forward: a `[N, C, H, W]` + b `[N, C, H, W]` -> `[N, C, H, W]`.
    public static func forward(_ a: Tensor4, _ b: Tensor4) -> Tensor4 {
        precondition(a.shape == b.shape, "ResidualAdd: shapes \(a.shape) and \(b.shape) differ")
        let y = [Float](count: a.count) { yp in
            a.data.withUnsafeBufferPointer { ap in
                b.data.withUnsafeBufferPointer { bp in
                    Parallel.forEachChunk(yp.count) { r in
                        for i in r { yp[i] = ap[i] + bp[i] }
                    }
                }
            }
        }
        return Tensor4(n: a.n, c: a.c, h: a.h, w: a.w, data: y)
    }

    /// Backward: dy -> (da, db) = (dy, dy).
    public static func backward(_ dy: Tensor4) -> (Tensor4, Tensor4) { (dy, dy) }

    /// Linear: ẏ = ȧ + ḃ, and R{dy} goes unchanged to both branches.
    public static func tangentForward(_ dotA: Tensor4, _ dotB: Tensor4) -> Tensor4 { forward(dotA, dotB) }
    public static func tangentBackward(_ rdy: Tensor4) -> (Tensor4, Tensor4) { (rdy, rdy) }

    /// `a += b` in place (gradient accumulation where two branches meet).
    static func accumulate(_ a: inout Tensor4, _ b: Tensor4) {
        precondition(a.shape == b.shape, "ResidualAdd: shapes \(a.shape) and \(b.shape) differ")
        a.data.withUnsafeMutableBufferPointer { ap in
            let dst = ap   // a copy of the pointer, not the inout binding: the loop vectorises
            b.data.withUnsafeBufferPointer { bp in
                Parallel.forEachChunk(dst.count) { r in
                    for i in r { dst[i] += bp[i] }
                }
            }
        }
    }
}
