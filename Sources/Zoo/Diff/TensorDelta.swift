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
    ///
    /// Two float32 tensors are read straight from their bytes and widened lane by lane (the same
    /// exact Float64 values `Tensor.doubles()` gives, without the intermediate arrays); any other
    /// dtype pair goes through `Tensor.doubles()`.
    /// - Precondition: `a.count == b.count` (callers compare tensors of equal shape).
    public init(_ a: Tensor, _ b: Tensor) {
        precondition(a.count == b.count, "TensorDelta needs tensors with the same element count")
        #if _endian(little)
        if a.dtype == .float32, b.dtype == .float32 {
            self = a.data.withUnsafeBytes { ra in
                b.data.withUnsafeBytes { rb in
                    Self.accumulate(Float32Lanes(base: ra.baseAddress, count: a.count),
                                    Float32Lanes(base: rb.baseAddress, count: b.count))
                }
            }
            return
        }
        #endif
        self.init(a.doubles(), b.doubles())
    }

    /// Compares two Float64 vectors of equal length (the values of `a` and `b` in C order).
    public init(_ x: [Double], _ y: [Double]) {
        precondition(x.count == y.count, "TensorDelta needs vectors of the same length")
        self = x.withUnsafeBytes { rx in
            y.withUnsafeBytes { ry in
                Self.accumulate(Float64Lanes(base: rx.baseAddress, count: x.count),
                                Float64Lanes(base: ry.baseAddress, count: y.count))
            }
        }
    }

    /// The delta of a tensor with itself: zero change, `normA == normB == ||a||`, cosine 1 (nil for an
    /// all-zero tensor). One pass over `a` (used for bitwise-identical tensors).
    public init(identicalTo a: Tensor) {
        var norm = 0.0
        #if _endian(little)
        if a.dtype == .float32 {
            norm = a.data.withUnsafeBytes { Self.norm(Float32Lanes(base: $0.baseAddress, count: a.count)) }
        } else {
            let x = a.doubles()
            norm = x.withUnsafeBytes { Self.norm(Float64Lanes(base: $0.baseAddress, count: x.count)) }
        }
        #else
        let x = a.doubles()
        norm = x.withUnsafeBytes { Self.norm(Float64Lanes(base: $0.baseAddress, count: x.count)) }
        #endif
        self.init(count: a.count, l2: 0, normA: norm, normB: norm, relative: 0,
                  cosine: norm == 0 || norm.isNaN ? nil : 1, maxAbs: 0, changedElements: 0)
    }

    // MARK: - Kernels

    /// `||x||_2` in Float64.
    @inline(__always)
    static func norm<X: LaneSource>(_ x: X) -> Double {
        var acc0 = SIMD4<Double>(repeating: 0), acc1 = SIMD4<Double>(repeating: 0)
        let n = x.count
        var i = 0
        while i + 8 <= n {
            let v0 = x.lanes(i), v1 = x.lanes(i + 4)
            acc0 += v0 * v0
            acc1 += v1 * v1
            i += 8
        }
        while i < n { let v = x.scalar(i); acc0[0] += v * v; i += 1 }
        return (acc0 + acc1).sum().squareRoot()
    }

    /// One pass over both sources: sums of d^2, a^2, b^2, a*b, max |d|, count of a != b, with two
    /// independent sets of 4-lane accumulators so additions pipeline despite strict FP ordering.
    @inline(__always)
    static func accumulate<X: LaneSource, Y: LaneSource>(_ x: X, _ y: Y) -> TensorDelta {
        let n = x.count
        let zero = SIMD4<Double>(repeating: 0), one = SIMD4<Double>(repeating: 1)
        var dd0 = zero, aa0 = zero, bb0 = zero, ab0 = zero, mx0 = zero, ne0 = zero
        var dd1 = zero, aa1 = zero, bb1 = zero, ab1 = zero, mx1 = zero, ne1 = zero
        var i = 0
        while i + 8 <= n {
            let a0 = x.lanes(i), b0 = y.lanes(i)
            let a1 = x.lanes(i + 4), b1 = y.lanes(i + 4)
            let d0 = b0 - a0, d1 = b1 - a1
            let s0 = d0 * d0, s1 = d1 * d1
            dd0 += s0; dd1 += s1
            aa0 += a0 * a0; aa1 += a1 * a1
            bb0 += b0 * b0; bb1 += b1 * b1
            ab0 += a0 * b0; ab1 += a1 * b1
            // Running maximum of |d| (NaN lanes compare false; they are caught through `dd` below).
            let m0 = d0.replacing(with: -d0, where: d0 .< 0), m1 = d1.replacing(with: -d1, where: d1 .< 0)
            mx0.replace(with: m0, where: m0 .> mx0)
            mx1.replace(with: m1, where: m1 .> mx1)
            // `.!=` is true for NaN lanes too, as `changedElements` documents.
            ne0 += zero.replacing(with: one, where: a0 .!= b0)
            ne1 += zero.replacing(with: one, where: a1 .!= b1)
            i += 8
        }
        var dd = dd0 + dd1, aa = aa0 + aa1, bb = bb0 + bb1, ab = ab0 + ab1
        mx0.replace(with: mx1, where: mx1 .> mx0)
        var maxAbs = mx0.max()
        var changed = Int((ne0 + ne1).sum())
        while i < n {
            let a = x.scalar(i), b = y.scalar(i)
            let d = b - a
            dd[0] += d * d
            aa[0] += a * a
            bb[0] += b * b
            ab[0] += a * b
            if Swift.abs(d) > maxAbs { maxAbs = Swift.abs(d) }
            if a != b { changed += 1 }
            i += 1
        }
        let ddSum = dd.sum()
        let l2 = ddSum.squareRoot()
        let normA = aa.sum().squareRoot()
        let normB = bb.sum().squareRoot()
        let relative: Double?
        if normA > 0 || normA.isNaN {
            relative = l2 / normA
        } else {
            relative = l2 == 0 ? 0 : nil
        }
        // A NaN difference makes its d^2 NaN, and sums of non-negative terms keep it: NaN max |d| then.
        return TensorDelta(count: n, l2: l2, normA: normA, normB: normB, relative: relative,
                           cosine: (normA == 0 || normB == 0) ? nil : ab.sum() / (normA * normB),
                           maxAbs: ddSum.isNaN ? .nan : maxAbs, changedElements: changed)
    }
}

/// Float64 values of a tensor's elements, read 4 at a time (`lanes`) or one at a time (`scalar`).
protocol LaneSource {
    var count: Int { get }
    func lanes(_ i: Int) -> SIMD4<Double>
    func scalar(_ i: Int) -> Double
}

/// Little-endian float32 bytes, widened exactly to Float64.
struct Float32Lanes: LaneSource {
    let base: UnsafeRawPointer?
    let count: Int
    @inline(__always) func lanes(_ i: Int) -> SIMD4<Double> {
        SIMD4<Double>(base!.loadUnaligned(fromByteOffset: i &* 4, as: SIMD4<Float>.self))
    }
    @inline(__always) func scalar(_ i: Int) -> Double {
        Double(base!.loadUnaligned(fromByteOffset: i &* 4, as: Float.self))
    }
}

/// Native Float64 values (an array from `Tensor.doubles()`).
struct Float64Lanes: LaneSource {
    let base: UnsafeRawPointer?
    let count: Int
    @inline(__always) func lanes(_ i: Int) -> SIMD4<Double> {
        base!.loadUnaligned(fromByteOffset: i &* 8, as: SIMD4<Double>.self)
    }
    @inline(__always) func scalar(_ i: Int) -> Double {
        base!.loadUnaligned(fromByteOffset: i &* 8, as: Double.self)
    }
}
