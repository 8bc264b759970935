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

    /// `mean_i (2 - 2 cos(p_i, t_i))` and its gradient with respect to `p`.
    static func term(_ p: Matrix, _ t: Matrix) -> (Float, Matrix) {
        let N = p.rows, D = p.cols
        var grad = Matrix(rows: N, cols: D)
        var total: Double = 0
        for i in 0..<N {
            var pp: Double = 0, tt: Double = 0
            for d in 0..<D {
                let a = Double(p.data[i * D + d]), b = Double(t.data[i * D + d])
                pp += a * a; tt += b * b
            }
            let np = max(pp.squareRoot(), 1e-12), nt = max(tt.squareRoot(), 1e-12)
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
}
