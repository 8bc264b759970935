import Checkpoint

/// How far tensor `b` is from tensor `a` of the same element count, in Float64.
///
/// Both tensors are widened exactly to Float64 with `Tensor.doubles()` (any dtype, so an f16 tensor
/// can be compared with its f32 original), then one pass accumulates the change `d = b - a`:
/// - `l2 = ||d||_2` (`torch.linalg.vector_norm(b - a)` on the flattened tensors),
/// - `relative = ||d|| / ||a||`, nil when `||a|| == 0` and `d != 0` (undefined), 0 when both are 0,
/// - `cosine = <a, b> / (||a|| ||b||)` (`torch.nn.functional.cosine_similarity` on the flattened
///   tensors, without its epsilon clamp), nil when either norm is 0,
/// - `maxAbs = max |d_i|` (`(b - a).abs().max()`), 0 for empty tensors,
/// - `changedElements`: number of `i` with `a_i != b_i` (NaN compares unequal, as in IEEE 754).
/// Non-finite inputs propagate into the sums as IEEE 754 says (a NaN gives NaN norms).
public struct TensorDelta: Codable, Equatable, Sendable {
    /// Number of elements compared.
    public var count: Int
    /// `||b - a||_2`.
    public var l2: Double
    /// `||a||_2` and `||b||_2`.
    public var normA: Double
    public var normB: Double
    /// `||b - a|| / ||a||`; nil when undefined (`||a|| == 0` while `b != a`).
    public var relative: Double?
    /// Cosine similarity of the flattened tensors; nil when either is all zeros.
    public var cosine: Double?
    /// `max_i |b_i - a_i|`.
    public var maxAbs: Double
    /// Number of elements whose value differs.
    public var changedElements: Int

    public init(count: Int, l2: Double, normA: Double, normB: Double, relative: Double?, cosine: Double?,
                maxAbs: Double, changedElements: Int) {
        self.count = count
        self.l2 = l2
        self.normA = normA
        self.normB = normB
        self.relative = relative
        self.cosine = cosine
        self.maxAbs = maxAbs
        self.changedElements = changedElements
    }

    /// Compares two tensors element by element in C order.
    /// - Precondition: `a.count == b.count` (shapes may differ only in how the same count is split;
    ///   callers compare tensors of equal shape).
    public init(_ a: Tensor, _ b: Tensor) {
        precondition(a.count == b.count, "TensorDelta needs tensors with the same element count")
        self.init(a.doubles(), b.doubles())
    }

    /// The delta of a tensor with itself: zero change, `normA == normB == ||a||`, cosine 1 (nil for an
    /// all-zero tensor). Costs one pass over `a` (used for bitwise-identical tensors).
    public init(identicalTo a: Tensor) {
        let x = a.doubles()
        var acc = SIMD4<Double>(repeating: 0)
        x.withUnsafeBufferPointer { xp in
            var i = 0
            let vectorEnd = xp.count - xp.count % 4
            while i < vectorEnd {
                let v = SIMD4<Double>(xp[i], xp[i + 1], xp[i + 2], xp[i + 3])
                acc += v * v
                i += 4
            }
            while i < xp.count { acc[0] += xp[i] * xp[i]; i += 1 }
        }
        let norm = acc.sum().squareRoot()
        self.init(count: x.count, l2: 0, normA: norm, normB: norm, relative: 0,
                  cosine: norm == 0 || norm.isNaN ? nil : 1, maxAbs: 0, changedElements: 0)
    }

    /// Compares two Float64 vectors of equal length (the values of `a` and `b` in C order).
    public init(_ x: [Double], _ y: [Double]) {
        precondition(x.count == y.count, "TensorDelta needs vectors of the same length")
        let n = x.count
        // Four independent SIMD accumulators per sum so the loop vectorises despite strict FP order.
        var dd = SIMD4<Double>(repeating: 0), aa = SIMD4<Double>(repeating: 0)
        var bb = SIMD4<Double>(repeating: 0), ab = SIMD4<Double>(repeating: 0)
        var mx = SIMD4<Double>(repeating: 0)
        var nanSeen = false
        var changed = 0
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                let xb = xp.baseAddress, yb = yp.baseAddress
                var i = 0
                let vectorEnd = n - n % 4
                while i < vectorEnd {
                    let a = SIMD4<Double>(xb![i], xb![i + 1], xb![i + 2], xb![i + 3])
                    let b = SIMD4<Double>(yb![i], yb![i + 1], yb![i + 2], yb![i + 3])
                    let d = b - a
                    dd += d * d
                    aa += a * a
                    bb += b * b
                    ab += a * b
                    let m = pointwiseMax(d, -d)
                    mx = pointwiseMax(mx, m)
                    // `.!=` is true for NaN lanes too, as `changedElements` documents.
                    let ne = a .!= b
                    changed &+= (ne[0] ? 1 : 0) &+ (ne[1] ? 1 : 0) &+ (ne[2] ? 1 : 0) &+ (ne[3] ? 1 : 0)
                    if any(d .!= d) { nanSeen = true }
                    i += 4
                }
                while i < n {
                    let a = xb![i], b = yb![i]
                    let d = b - a
                    dd[0] += d * d
                    aa[0] += a * a
                    bb[0] += b * b
                    ab[0] += a * b
                    let m = Swift.abs(d)
                    if m.isNaN { nanSeen = true } else if m > mx[0] { mx[0] = m }
                    if a != b { changed += 1 }
                    i += 1
                }
            }
        }
        let l2 = dd.sum().squareRoot()
        let normA = aa.sum().squareRoot()
        let normB = bb.sum().squareRoot()
        self.count = n
        self.l2 = l2
        self.normA = normA
        self.normB = normB
        if normA > 0 || normA.isNaN {
            self.relative = l2 / normA
        } else {
            self.relative = l2 == 0 ? 0 : nil
        }
        self.cosine = (normA == 0 || normB == 0) ? nil : ab.sum() / (normA * normB)
        self.maxAbs = nanSeen ? .nan : mx.max()
        self.changedElements = changed
    }
}
