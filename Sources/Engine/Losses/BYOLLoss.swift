import Foundation

/// BYOL's loss (Grill et al., arXiv:2006.07733) as docs/bissl.md, "Pretext methods" states it:
/// `loss = mean_i [(2 - 2 cos(p1_i, t2_i)) + (2 - 2 cos(p2_i, t1_i))]`, with `p` the online
/// predictions and `t` the target projections (constants: no gradient flows into them).
/// Cosines use `F.normalize` (eps 1e-12).
public enum BYOLLoss {
    /// - Parameters: p1, p2 online predictions `[N, D]` of views 1 and 2; t1, t2 target projections `[N, D]`.
    /// - Returns: the loss and the gradients with respect to `p1` and `p2` (`[N, D]` each).
    public static func forward(p1: Matrix, p2: Matrix, t1: Matrix, t2: Matrix) -> (loss: Float, dp1: Matrix, dp2: Matrix) {
        precondition(p1.shape == p2.shape && p1.shape == t1.shape && p1.shape == t2.shape, "BYOLLoss: shapes differ")
        let (l1, d1) = term(p1, t2)
        let (l2, d2) = term(p2, t1)
        return (l1 + l2, d1, d2)
    }

    /// Tangent of the gradient with the target constant: `(R{dp1}, R{dp2})` `[N, D]` for directions
    /// `(ṗ1, ṗ2)`, the loss's share of an exact Hessian-vector product (docs/bissl.md). Per row, with
    /// p̂ = p/‖p‖, t̂ = t/‖t‖, c = p̂·t̂ and dp = −2 (t̂ − p̂ c)/(N ‖p‖):
    ///
    ///     ṅ = p̂·ṗ,  p̂̇ = (ṗ − p̂ ṅ)/‖p‖,  ċ = p̂̇·t̂,
    ///     R{dp} = (2/N) [(p̂̇ c + p̂ ċ)/‖p‖ + (t̂ − p̂ c) ṅ/‖p‖²]
    public static func gradientTangent(p1: Matrix, p2: Matrix, t1: Matrix, t2: Matrix, dotP1: Matrix, dotP2: Matrix) -> (Matrix, Matrix) {
        precondition(dotP1.shape == p1.shape && dotP2.shape == p2.shape, "BYOLLoss: tangent shapes differ")
        return (termTangent(p1, t2, dotP1), termTangent(p2, t1, dotP2))
    }

    static func termTangent(_ p: Matrix, _ t: Matrix, _ dp: Matrix) -> Matrix {
        let N = p.rows, D = p.cols
        var out = Matrix(rows: N, cols: D)
        for i in 0..<N {
            let (np, nt) = rowNorms(p, t, i)
            var cosine: Double = 0, ndot: Double = 0
            for d in 0..<D {
                cosine += Double(p.data[i * D + d]) / np * Double(t.data[i * D + d]) / nt
                ndot += Double(p.data[i * D + d]) / np * Double(dp.data[i * D + d])
            }
            var cdot: Double = 0
            for d in 0..<D {
                let ph = Double(p.data[i * D + d]) / np
                cdot += (Double(dp.data[i * D + d]) - ph * ndot) / np * Double(t.data[i * D + d]) / nt
            }
            for d in 0..<D {
                let ph = Double(p.data[i * D + d]) / np, th = Double(t.data[i * D + d]) / nt
                let phDot = (Double(dp.data[i * D + d]) - ph * ndot) / np
                out.data[i * D + d] = Float(2 / Double(N) * ((phDot * cosine + ph * cdot) / np + (th - ph * cosine) * ndot / (np * np)))
            }
        }
        return out
    }

    /// `mean_i (2 - 2 cos(p_i, t_i))` and its gradient with respect to `p`.
    static func term(_ p: Matrix, _ t: Matrix) -> (Float, Matrix) {
        let N = p.rows, D = p.cols
        var grad = Matrix(rows: N, cols: D)
        var total: Double = 0
        for i in 0..<N {
            let (np, nt) = rowNorms(p, t, i)
            var cosine: Double = 0
            for d in 0..<D { cosine += Double(p.data[i * D + d]) / np * Double(t.data[i * D + d]) / nt }
            total += 2 - 2 * cosine
            // d(-2 cos)/dp = -2 (t_hat - p_hat cos) / ||p||, divided by N for the mean
            for d in 0..<D {
                let ph = Double(p.data[i * D + d]) / np, th = Double(t.data[i * D + d]) / nt
                grad.data[i * D + d] = Float(-2 * (th - ph * cosine) / np / Double(N))
            }
        }
        return (Float(total / Double(N)), grad)
    }

    /// `(max(‖p_i‖, 1e-12), max(‖t_i‖, 1e-12))` of row `i` (`F.normalize`'s floor), summed in Double.
    @inline(__always) static func rowNorms(_ p: Matrix, _ t: Matrix, _ i: Int) -> (Double, Double) {
        let D = p.cols
        var pp: Double = 0, tt: Double = 0
        for d in 0..<D {
            let a = Double(p.data[i * D + d]), b = Double(t.data[i * D + d])
            pp += a * a; tt += b * b
        }
        return (max(pp.squareRoot(), 1e-12), max(tt.squareRoot(), 1e-12))
    }
}
