/// Conjugate-gradient solvers for `A x = b` with `A` given as an operator on lists of tensors (one
/// array per parameter tensor), started at `x = 0`. BiSSL solves `(I + H/(λ+δ)) u = g` with them
/// (docs/bissl.md, "Problem and hypergradient").
public enum ConjugateGradient {
    /// The "layer-wise" solver BiSSL runs (the reference implementation, `layerwise_solve=True`, after
    /// iMAML): `x = 0, r = b, d = b`; each iteration forms `Ad` with one operator call on the whole
    /// list, then **for each tensor i separately**
    ///
    ///     α_i = (r_i·r_i) / (d_i·Ad_i + 1e-12);  x_i += α_i d_i;  r_i −= α_i Ad_i
    ///     β_i = (r_i,new·r_i,new) / (r_i,old·r_i,old + 1e-12);  d_i = r_i + β_i d_i
    ///
    /// and finally replaces NaN/Inf in `x` (`torch.nan_to_num`: NaN → 0, ±Inf → ±Float.greatestFiniteMagnitude).
    public static func solveLayerwise(_ A: ([[Float]]) -> [[Float]], b: [[Float]], iterations: Int) -> [[Float]] {
        var x = b.map { [Float](repeating: 0, count: $0.count) }
        var r = b, d = b
        for _ in 0..<iterations {
            let Ad = A(d)
            for i in b.indices {
                let rr = dot(r[i], r[i])
                let alpha = rr / (dot(d[i], Ad[i]) + 1e-12)
                axpy(&x[i], Float(alpha), d[i])
                axpy(&r[i], Float(-alpha), Ad[i])
                let beta = dot(r[i], r[i]) / (rr + 1e-12)
                update(&d[i], r[i], Float(beta))
            }
        }
        return x.map { $0.map(nanToNum) }
    }

    /// Textbook CG with one global `α` and `β` over the whole concatenated vector (the reference implementation's
    /// `layerwise_solve=False` variant; Hestenes & Stiefel 1952): same start and the same 1e-12
    /// guards, NaN/Inf replaced at the end.
    public static func solveGlobal(_ A: ([[Float]]) -> [[Float]], b: [[Float]], iterations: Int) -> [[Float]] {
        var x = b.map { [Float](repeating: 0, count: $0.count) }
        var r = b, d = b
        var rr = b.indices.reduce(0.0) { $0 + dot(r[$1], r[$1]) }
        for _ in 0..<iterations {
            let Ad = A(d)
            let dAd = b.indices.reduce(0.0) { $0 + dot(d[$1], Ad[$1]) }
            let alpha = rr / (dAd + 1e-12)
            for i in b.indices {
                axpy(&x[i], Float(alpha), d[i])
                axpy(&r[i], Float(-alpha), Ad[i])
            }
            let rrNew = b.indices.reduce(0.0) { $0 + dot(r[$1], r[$1]) }
            let beta = rrNew / (rr + 1e-12)
            rr = rrNew
            for i in b.indices { update(&d[i], r[i], Float(beta)) }
        }
        return x.map { $0.map(nanToNum) }
    }

    /// `a · b`, accumulated as `Norms.dot` (8-lane float blocks added in Double).
    static func dot(_ a: [Float], _ b: [Float]) -> Double {
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in Norms.dot(ap, bp) } }
    }

    /// `y += a x`.
    static func axpy(_ y: inout [Float], _ a: Float, _ x: [Float]) {
        y.withUnsafeMutableBufferPointer { yp in
            let y = yp
            x.withUnsafeBufferPointer { xp in
                Parallel.forEachChunk(y.count) { r in for k in r { y[k] += a * xp[k] } }
            }
        }
    }

    /// `d = r + beta d` (the new search direction).
    static func update(_ d: inout [Float], _ r: [Float], _ beta: Float) {
        d.withUnsafeMutableBufferPointer { dp in
            let d = dp
            r.withUnsafeBufferPointer { rp in
                Parallel.forEachChunk(d.count) { range in for k in range { d[k] = rp[k] + beta * d[k] } }
            }
        }
    }

    static func nanToNum(_ v: Float) -> Float {
        if v.isNaN { return 0 }
        if v == .infinity { return .greatestFiniteMagnitude }
        if v == -.infinity { return -.greatestFiniteMagnitude }
        return v
    }
}
