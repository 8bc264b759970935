import CBLAS
import Foundation

/// SimCLR's NT-Xent loss (Chen et al., arXiv:2002.05709) as docs/bissl.md, "Pretext methods" states it:
/// rows of `z` `[2N, D]` are the projections of view 1 (rows `0..<N`) then view 2; each row is
/// L2-normalised (`F.normalize`, eps 1e-12) and divided by `sqrt(tau)`; logits `S S^T` with the
/// diagonal masked out (-1e9); the positive of row `i` is row `(i + N) mod 2N`;
/// `loss = mean over 2N rows of -log softmax(logits_i)[positive(i)]`.
public enum NTXent {
    /// - Parameters: z `[2N, D]`, temperature `tau > 0` (0.5 in BiSSL).
    /// - Returns: the loss and `dL/dz` `[2N, D]`.
    public static func forward(_ z: Matrix, temperature tau: Float) -> (loss: Float, gradient: Matrix) {
        precondition(z.rows % 2 == 0 && z.rows >= 2, "NTXent: needs 2N rows, got \(z.rows)")
        let R = z.rows, D = z.cols, N = R / 2
        let scale = 1 / Double(tau).squareRoot()
        // s_i = u_i * scale, u_i = z_i / max(||z_i||, 1e-12)
        var norms = [Double](repeating: 0, count: R)
        var s = [Double](repeating: 0, count: R * D)
        for i in 0..<R {
            var sq: Double = 0
            for d in 0..<D { let v = Double(z.data[i * D + d]); sq += v * v }
            norms[i] = max(sq.squareRoot(), 1e-12)
            for d in 0..<D { s[i * D + d] = Double(z.data[i * D + d]) / norms[i] * scale }
        }
        // logits = S S^T (R x R), diagonal masked
        var logits = [Double](repeating: 0, count: R * R)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(R), Int32(R), Int32(D), 1, s, Int32(D), s, Int32(D),
                    0, &logits, Int32(R))
        for i in 0..<R { logits[i * R + i] = -1e9 }
        // G = dL/dlogits = (softmax - onehot(pos)) / R, diagonal 0
        var G = [Double](repeating: 0, count: R * R)
        var total: Double = 0
        for i in 0..<R {
            let pos = (i + N) % R
            var m = -Double.infinity
            for j in 0..<R where j != i { m = max(m, logits[i * R + j]) }
            var sum: Double = 0
            for j in 0..<R where j != i { sum += exp(logits[i * R + j] - m) }
            let logZ = m + log(sum)
            total += logZ - logits[i * R + pos]
            for j in 0..<R where j != i { G[i * R + j] = exp(logits[i * R + j] - logZ) / Double(R) }
            G[i * R + pos] -= 1 / Double(R)
        }
        // dS = (G + G^T) S; du = dS * scale; dz_i = (du_i - u_i (u_i . du_i)) / ||z_i||
        var sym = G
        for i in 0..<R { for j in 0..<R { sym[i * R + j] = G[i * R + j] + G[j * R + i] } }
        var dS = [Double](repeating: 0, count: R * D)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(R), Int32(D), Int32(R), 1, sym, Int32(R), s, Int32(D),
                    0, &dS, Int32(D))
        var grad = Matrix(rows: R, cols: D)
        for i in 0..<R {
            var dot: Double = 0
            for d in 0..<D { dot += s[i * D + d] * dS[i * D + d] }  // = u_i . du_i
            for d in 0..<D {
                let u = s[i * D + d] / scale
                grad.data[i * D + d] = Float((dS[i * D + d] * scale - u * dot) / norms[i])
            }
        }
        return (Float(total / Double(R)), grad)
    }
}
