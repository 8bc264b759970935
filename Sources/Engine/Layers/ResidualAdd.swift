/// The residual connection of a ResNet block, `out + identity` (He et al., arXiv:1512.03385): the
/// forward add runs inside the block's output ReLU (`ReLU.forward(_:adding:)`, its tangent
/// `ReLU.tangentForward(_:adding:)`); backward sends `dy` unchanged to both branches.
public enum ResidualAdd {
    /// Backward: dy -> (da, db) = (dy, dy).
    public static func backward(_ dy: Tensor4) -> (Tensor4, Tensor4) { (dy, dy) }

    /// Linear: R{dy} goes unchanged to both branches.
    public static func tangentBackward(_ rdy: Tensor4) -> (Tensor4, Tensor4) { (rdy, rdy) }

    /// `a += b` in place (gradient accumulation where two branches meet).
    static func accumulate(_ a: inout Tensor4, _ b: Tensor4) {
        precondition(a.shape == b.shape, "ResidualAdd: shapes \(a.shape) and \(b.shape) differ")
        a.data.withUnsafeMutableBufferPointer { ap in
            let dst = ap   // a copy of the pointer, not the inout binding: the loop vectorises
            b.data.withUnsafeBufferPointer { bp in
                Parallel.forEachChunk(dst.count, piecesPerThread: 4) { r in
                    for i in r { dst[i] += bp[i] }
                }
            }
        }
    }
}
