import Checkpoint
import Foundation
import XCTest
import Zoo
import TestSupport

final class DiffTensorDeltaTests: XCTestCase {
    /// a = [3, 4], b = [3, 0]: d = [0, -4], ||d|| = 4, ||a|| = 5, ||b|| = 3, <a,b> = 9 (by hand).
    func testHandComputedPair() {
        let a = Tensor(float32: [3, 4], shape: [2])
        let b = Tensor(float32: [3, 0], shape: [2])
        let d = TensorDelta(a, b)
        XCTAssertEqual(d.count, 2)
        XCTAssertEqual(d.l2, 4)
        XCTAssertEqual(d.normA, 5)
        XCTAssertEqual(d.normB, 3)
        XCTAssertEqual(d.relative, 0.8)
        XCTAssertEqual(d.cosine!, 0.6, accuracy: 1e-15)
        XCTAssertEqual(d.maxAbs, 4)
        XCTAssertEqual(d.changedElements, 1)
    }

    /// Lengths 0..9 exercise the SIMD body and the scalar tail; expectations from the closed forms
    /// for a_i = i + 1, b_i = a_i + (-1)^i * 0.5: ||d||^2 = n / 4, max |d| = 0.5, all elements change.
    func testTailLengths() {
        for n in 0..<10 {
            let a = (0..<n).map { Double($0 + 1) }
            let b = (0..<n).map { Double($0 + 1) + ($0 % 2 == 0 ? 0.5 : -0.5) }
            let d = TensorDelta(a, b)
            XCTAssertEqual(d.l2, (Double(n) / 4).squareRoot(), accuracy: 1e-12, "n = \(n)")
            XCTAssertEqual(d.maxAbs, n == 0 ? 0 : 0.5, "n = \(n)")
            XCTAssertEqual(d.changedElements, n)
            let sumSquares = Double(n * (n + 1) * (2 * n + 1)) / 6
            XCTAssertEqual(d.normA, sumSquares.squareRoot(), accuracy: 1e-12)
        }
    }

    func testZeroReferenceHasNoRelativeOrCosine() {
        let zero = [Double](repeating: 0, count: 5)
        let d = TensorDelta(zero, [0, 0, 1, 0, 0])
        XCTAssertNil(d.relative)
        XCTAssertNil(d.cosine)
        XCTAssertEqual(d.l2, 1)
        let same = TensorDelta(zero, zero)
        XCTAssertEqual(same.relative, 0)
        XCTAssertNil(same.cosine)
        XCTAssertEqual(same.changedElements, 0)
    }

    /// NaN inside the 8-lane body: max |d| and L2 are NaN, the element counts as changed.
    func testNaNInVectorBody() {
        var a = (0..<19).map { Double($0) }
        var b = a
        b[9] = .nan
        b[2] += 1
        a[17] = 3
        let d = TensorDelta(a, b)
        XCTAssertTrue(d.maxAbs.isNaN)
        XCTAssertTrue(d.l2.isNaN)
        XCTAssertEqual(d.changedElements, 3, "indices 2, 9 (NaN) and 17")
    }

    /// The float32 fast path and the Float64 path (float16 tensors via `Tensor.doubles()`) against a
    /// plain scalar loop over the same values, on lengths around the 8-lane blocks.
    func testFastPathsMatchAScalarReference() throws {
        var rng = SplitMix(seed: 65)   // seeded: the same values on every run
        for n in [1, 7, 8, 9, 31, 1000] {
            let x = (0..<n).map { _ in Float.random(in: -2...2, using: &rng) }
            var y = x.map { $0 + Float.random(in: -0.1...0.1, using: &rng) }
            y[n / 2] = x[n / 2]
            let a = Tensor(float32: x, shape: [n]), b = Tensor(float32: y, shape: [n])
            var dd = 0.0, aa = 0.0, bb = 0.0, ab = 0.0, mx = 0.0, ne = 0
            for i in 0..<n {
                let p = Double(x[i]), q = Double(y[i])
                dd += (q - p) * (q - p); aa += p * p; bb += q * q; ab += p * q
                mx = max(mx, Swift.abs(q - p)); ne += p != q ? 1 : 0
            }
            let d = TensorDelta(a, b)
            XCTAssertEqual(d.l2, dd.squareRoot(), accuracy: 1e-12 * max(1, dd.squareRoot()))
            XCTAssertEqual(d.normA, aa.squareRoot(), accuracy: 1e-12 * aa.squareRoot())
            XCTAssertEqual(d.normB, bb.squareRoot(), accuracy: 1e-12 * bb.squareRoot())
            XCTAssertEqual(d.cosine!, ab / (aa.squareRoot() * bb.squareRoot()), accuracy: 1e-12)
            XCTAssertEqual(d.maxAbs, mx)
            XCTAssertEqual(d.changedElements, ne)
            XCTAssertEqual(TensorDelta(identicalTo: a).normA, aa.squareRoot(), accuracy: 1e-12 * aa.squareRoot())

            // float16 copies take the Float64 path: compare with the same reference on their values.
            let ha = try Tensor(dtype: .float16, shape: [n], data: Data(x.flatMap { halfBytes($0) }))
            let hb = try Tensor(dtype: .float16, shape: [n], data: Data(y.flatMap { halfBytes($0) }))
            let hx = ha.doubles(), hy = hb.doubles()
            var hdd = 0.0, hmx = 0.0
            for i in 0..<n { hdd += (hy[i] - hx[i]) * (hy[i] - hx[i]); hmx = max(hmx, Swift.abs(hy[i] - hx[i])) }
            let hd = TensorDelta(ha, hb)
            XCTAssertEqual(hd.l2, hdd.squareRoot(), accuracy: 1e-12 * max(1, hdd.squareRoot()))
            XCTAssertEqual(hd.maxAbs, hmx)
        }
    }

    /// Little-endian IEEE binary16 bytes of `x` rounded to nearest even (Swift's `Float16`).
    private func halfBytes(_ x: Float) -> [UInt8] {
        let bits = Float16(x).bitPattern
        return [UInt8(bits & 0xff), UInt8(bits >> 8)]
    }

    func testNaNIsReportedNotHidden() {
        let d = TensorDelta([1, 2, 3, 4, 5], [1, 2, .nan, 4, 5])
        XCTAssertTrue(d.maxAbs.isNaN)
        XCTAssertTrue(d.l2.isNaN)
        XCTAssertEqual(d.changedElements, 1)
    }
}
