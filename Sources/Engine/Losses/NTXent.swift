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
        let p = Pass(z, tau)
        return (Float(p.loss), Matrix(rows: p.R, cols: p.D, data: p.dz.map(Float.init)))
    }

    /// Tangent of the gradient: `R{dL/dz} = (∂²L/∂z²) ż` `[2N, D]`, the loss's share of an exact
    /// Hessian-vector product (forward-over-reverse; docs/bissl.md). With u_i = z_i/‖z_i‖, S = u·τ^-1/2,
    /// P the row softmax of the masked logits S Sᵀ, G = (P − onehot(pos))/2N, du = τ^-1/2 (G + Gᵀ) S:
    ///
    ///     u̇_i = (ż_i − u_i (u_i·ż_i)) / ‖z_i‖,   Ṡ = τ^-1/2 u̇,   ℓ̇ = Ṡ Sᵀ + S Ṡᵀ (diagonal 0)
    ///     Ṗ_ij = P_ij (ℓ̇_ij − Σ_k P_ik ℓ̇_ik),   R{du} = τ^-1/2 ((Ġ + Ġᵀ) S + (G + Gᵀ) Ṡ),  Ġ = Ṗ/2N
    ///     dz_i = (du_i − u_i q_i)/‖z_i‖, q_i = u_i·du_i:
    ///     R{dz_i} = (R{du_i} − u̇_i q_i − u_i (u̇_i·du_i + u_i·R{du_i}))/‖z_i‖ − dz_i (u_i·ż_i)/‖z_i‖
    ///
    /// (the 1e-12 floor of `F.normalize` is taken as inactive: rows of norm 0 have no derivative).
    public static func gradientTangent(_ z: Matrix, _ dotZ: Matrix, temperature tau: Float) -> Matrix {
        precondition(dotZ.shape == z.shape, "NTXent: tangent shape \(dotZ.shape) vs \(z.shape)")
        let p = Pass(z, tau)
        let R = p.R, D = p.D, scale = p.scale
        var dU = [Double](repeating: 0, count: R * D), dS = [Double](repeating: 0, count: R * D)
        var dn = [Double](repeating: 0, count: R)
        for i in 0..<R {
            var a: Double = 0
            for d in 0..<D { a += p.s[i * D + d] / scale * Double(dotZ.data[i * D + d]) }
            dn[i] = a
            for d in 0..<D {
                let u = p.s[i * D + d] / scale
                dU[i * D + d] = (Double(dotZ.data[i * D + d]) - u * a) / p.norms[i]
                dS[i * D + d] = dU[i * D + d] * scale
            }
        }
        // ℓ̇ = Ṡ Sᵀ + S Ṡᵀ
        var dl = [Double](repeating: 0, count: R * R)
        BLAS.dgemm(transA: false, transB: true, m: R, n: R, k: D, alpha: 1, a: dS, lda: D, b: p.s, ldb: D,
                   beta: 0, c: &dl, ldc: R)
        var dG = [Double](repeating: 0, count: R * R)
        for i in 0..<R {
            var mean: Double = 0
            for j in 0..<R where j != i { mean += p.P[i * R + j] * (dl[i * R + j] + dl[j * R + i]) }
            for j in 0..<R where j != i { dG[i * R + j] = p.P[i * R + j] * (dl[i * R + j] + dl[j * R + i] - mean) / Double(R) }
        }
        var symDot = dG
        for i in 0..<R { for j in 0..<R { symDot[i * R + j] = dG[i * R + j] + dG[j * R + i] } }
        // R{dS} = (Ġ + Ġᵀ) S + (G + Gᵀ) Ṡ
        var rdS = [Double](repeating: 0, count: R * D)
        BLAS.dgemm(transA: false, transB: false, m: R, n: D, k: R, alpha: 1, a: symDot, lda: R, b: p.s, ldb: D,
                   beta: 0, c: &rdS, ldc: D)
        BLAS.dgemm(transA: false, transB: false, m: R, n: D, k: R, alpha: 1, a: p.sym, lda: R, b: dS, ldb: D,
                   beta: 1, c: &rdS, ldc: D)
        var out = Matrix(rows: R, cols: D)
        for i in 0..<R {
            var q: Double = 0, qDot: Double = 0
            for d in 0..<D {
                let u = p.s[i * D + d] / scale, du = p.dS[i * D + d] * scale, rdu = rdS[i * D + d] * scale
                q += u * du
                qDot += dU[i * D + d] * du + u * rdu
            }
            for d in 0..<D {
                let u = p.s[i * D + d] / scale, rdu = rdS[i * D + d] * scale
                out.data[i * D + d] = Float((rdu - dU[i * D + d] * q - u * qDot) / p.norms[i] - p.dz[i * D + d] * dn[i] / p.norms[i])
            }
        }
        return out
    }

    /// The forward pass and its gradient in float64, kept for the tangent.
    private struct Pass {
        let R: Int, D: Int, scale: Double
        /// ‖z_i‖ (floored at 1e-12), S = u τ^-1/2 `[R, D]`, softmax P `[R, R]` (diagonal 0), G + Gᵀ, dS = (G + Gᵀ) S.
        var norms: [Double], s: [Double], P: [Double], sym: [Double], dS: [Double]
        var dz: [Double], loss: Double

        init(_ z: Matrix, _ tau: Float) {
            precondition(z.rows % 2 == 0 && z.rows >= 2, "NTXent: needs 2N rows, got \(z.rows)")
            R = z.rows; D = z.cols
            let R = self.R, D = self.D, N = R / 2
            scale = 1 / Double(tau).squareRoot()
            // s_i = u_i * scale, u_i = z_i / max(||z_i||, 1e-12)
            norms = [Double](repeating: 0, count: R)
            s = [Double](repeating: 0, count: R * D)
            for i in 0..<R {
                var sq: Double = 0
                for d in 0..<D { let v = Double(z.data[i * D + d]); sq += v * v }
                norms[i] = max(sq.squareRoot(), 1e-12)
                for d in 0..<D { s[i * D + d] = Double(z.data[i * D + d]) / norms[i] * scale }
            }
            // logits = S S^T (R x R), diagonal masked
            var logits = [Double](repeating: 0, count: R * R)
            BLAS.dgemm(transA: false, transB: true, m: R, n: R, k: D, alpha: 1, a: s, lda: D, b: s, ldb: D,
                   beta: 0, c: &logits, ldc: R)
            for i in 0..<R { logits[i * R + i] = -1e9 }
            // G = dL/dlogits = (softmax - onehot(pos)) / R, diagonal 0
            P = [Double](repeating: 0, count: R * R)
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
                for j in 0..<R where j != i { P[i * R + j] = exp(logits[i * R + j] - logZ); G[i * R + j] = P[i * R + j] / Double(R) }
                G[i * R + pos] -= 1 / Double(R)
            }
            loss = total / Double(R)
            // dS = (G + G^T) S; du = dS * scale; dz_i = (du_i - u_i (u_i . du_i)) / ||z_i||
            sym = G
            for i in 0..<R { for j in 0..<R { sym[i * R + j] = G[i * R + j] + G[j * R + i] } }
            dS = [Double](repeating: 0, count: R * D)
            BLAS.dgemm(transA: false, transB: false, m: R, n: D, k: R, alpha: 1, a: sym, lda: R, b: s, ldb: D,
                   beta: 0, c: &dS, ldc: D)
            dz = [Double](repeating: 0, count: R * D)
            for i in 0..<R {
                var dot: Double = 0
                for d in 0..<D { dot += s[i * D + d] * dS[i * D + d] }  // = u_i . du_i
                for d in 0..<D {
                    let u = s[i * D + d] / scale
                    dz[i * D + d] = (dS[i * D + d] * scale - u * dot) / norms[i]
                }
            }
        }
    }
}
