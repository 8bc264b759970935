import Checkpoint
import XCTest
@testable import Zoo

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

    func testNaNIsReportedNotHidden() {
        let d = TensorDelta([1, 2, 3, 4, 5], [1, 2, .nan, 4, 5])
        XCTAssertTrue(d.maxAbs.isNaN)
        XCTAssertTrue(d.l2.isNaN)
        XCTAssertEqual(d.changedElements, 1)
    }
}
