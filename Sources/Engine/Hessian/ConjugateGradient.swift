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
        // r_i·r_i of the current residual (the β numerator of one iteration is the next one's α numerator).
        var rr = b.map { dot($0, $0) }
        for _ in 0..<iterations {
            let Ad = A(d)
            for i in b.indices {
                let alpha = rr[i] / (dot(d[i], Ad[i]) + 1e-12)
                let rrNew = step(&x[i], &r[i], d[i], Ad[i], Float(alpha))
                let beta = rrNew / (rr[i] + 1e-12)
                rr[i] = rrNew
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
            let rrNew = b.indices.reduce(0.0) { $0 + step(&x[$1], &r[$1], d[$1], Ad[$1], Float(alpha)) }
            let beta = rrNew / (rr + 1e-12)
            rr = rrNew
            for i in b.indices { update(&d[i], r[i], Float(beta)) }
        }
        return x.map { $0.map(nanToNum) }
    }

    /// `(I + s H) d` from `Hd`: `d_i + s (Hd)_i` for every tensor i, in float32 (BiSSL's operator with
    /// `s = 1/(λ+δ)`), spread over the cores.
    public static func identityPlus(_ s: Float, times Hd: [[Float]], at d: [[Float]]) -> [[Float]] {
        precondition(d.count == Hd.count && zip(d, Hd).allSatisfy { $0.count == $1.count }, "CG: Hd is not shaped like d")
        return zip(d, Hd).map { a, b in
            [Float](count: a.count) { out in
                a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        let (o, x, y) = (out.baseAddress, ap.baseAddress, bp.baseAddress)
                        Parallel.forEachChunk(out.count) { r in for i in r { o![i] = x![i] + s * y![i] } }
                    }
                }
            }
        }
    }

    /// `a · b`, accumulated as `Norms.dot` (8-lane float blocks added in Double).
    static func dot(_ a: [Float], _ b: [Float]) -> Double {
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in Norms.dot(ap, bp) } }
    }

    /// One CG update in one pass over the four vectors: `x += α d`, `r −= α Ad`, and returns the new
    /// `r · r`, summed exactly as `Norms.dot(r, r)` would sum it afterwards (per block of
    /// `Norms.blockSize` in Double, the block sums added in order; each block updated, then summed, while
    /// in cache).
    static func step(_ x: inout [Float], _ r: inout [Float], _ d: [Float], _ Ad: [Float], _ alpha: Float) -> Double {
        precondition(x.count == r.count && r.count == d.count && d.count == Ad.count, "CG: vectors of different lengths")
        let count = x.count, size = Norms.blockSize, blocks = (count + size - 1) / size
        guard blocks > 0 else { return 0 }
        var partial = [Double](repeating: 0, count: blocks)
        x.withUnsafeMutableBufferPointer { xp in
            r.withUnsafeMutableBufferPointer { rp in
                d.withUnsafeBufferPointer { dp in
                    Ad.withUnsafeBufferPointer { qp in
                        partial.withUnsafeMutableBufferPointer { pp in
                            let (xs, rs, ds, qs, ps) = (xp.baseAddress!, rp.baseAddress!, dp.baseAddress!, qp.baseAddress!, pp.baseAddress!)
                            let minus = -alpha
                            Parallel.forEachChunk(blocks, workPerIndex: size) { range in
                                for k in range {
                                    let block = (k * size)..<min(count, (k + 1) * size)
                                    for i in block {
                                        xs[i] += alpha * ds[i]
                                        rs[i] += minus * qs[i]
                                    }
                                    ps[k] = Norms.blockDot(rs, rs, block)
                                }
                            }
                        }
                    }
                }
            }
        }
        return partial.reduce(0, +)
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
