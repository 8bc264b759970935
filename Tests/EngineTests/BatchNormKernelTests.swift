import CKernels
import TestSupport
import XCTest
@testable import Engine

/// The C kernels of BatchNorm2d (Sources/CKernels/include/batchnorm.h) at every vector level this CPU has
/// (set through `BatchNorm2d.kernelLevel`'s values; on an AVX-512 machine all three run), against float64
/// definitions on odd sizes: planes of 1, 4, 5, 15, 16, 31, 37 and 70 values (not multiples of 16 or 32, so the vector
/// loops, the pairwise lane sums, the scalar tails and the 16-planes-at-a-time path of small planes all run),
/// 3 to 35 planes per channel, channels 1 and 3
/// (channel c's planes at stride C·plane). Every level must give the same bits (the header's contract:
/// one order of operations, no fused multiply-add), and each result must be within its float32 bound.
final class BatchNormKernelTests: XCTestCase {
    /// Unit roundoff of float32.
    let u = Double(Float.ulpOfOne) / 2
    /// 3 planes per channel, and 19 and 35 for the small planes (16 at a time across planes, then one at a time).
    let shapes = [(channels: 1, plane: 37, n: 3), (channels: 3, plane: 37, n: 3), (channels: 3, plane: 70, n: 3),
                  (channels: 3, plane: 5, n: 3), (channels: 1, plane: 1, n: 3), (channels: 3, plane: 1, n: 3),
                  (channels: 3, plane: 5, n: 19), (channels: 1, plane: 4, n: 35), (channels: 3, plane: 15, n: 19),
                  (channels: 3, plane: 16, n: 17), (channels: 1, plane: 31, n: 16)]

    /// The levels this machine can run: the baseline, and up to the widest it has.
    var levels: [Int32] {
        let widest = BatchNorm2d.kernelLevel
        let all = [Int32(BISSL_LEVEL_BASELINE), Int32(BISSL_LEVEL_AVX2), Int32(BISSL_LEVEL_AVX512)]
        return all.filter { $0 <= widest }
    }

    /// Seeded values in [-2, 3) (a non-zero mean, both signs for the ReLU gate).
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var g = SplitMix(seed: seed)
        return (0..<count).map { _ in Float.random(in: -2..<3, using: &g) }
    }

    /// Roundings along the longest path of a value through one plane's float sum (the header's order):
    /// `plane / 32 - 1` additions in its lane, 1 (lanes 0-15 + 16-31), 4 pairwise levels, `plane % 32` tail
    /// additions; plus one spare u for the float64 additions of the planes' sums.
    func depth(_ plane: Int) -> Double { Double(plane / 32 + 6 + plane % 32) }

    func testSumsAndSquaredDeviationsWithinTheirBoundsAndEqualAtEveryLevel() {
        for (C, plane, n) in shapes {
            let x = values(n * C * plane, seed: UInt64(C * 1000 + plane))
            for c in 0..<C {
                let idx = (0..<n).flatMap { s in (0..<plane).map { (s * C + c) * plane + $0 } }
                let exact = idx.reduce(0.0) { $0 + Double(x[$1]) }
                let magnitude = idx.reduce(0.0) { $0 + abs(Double(x[$1])) }
                let mean = Float(exact / Double(idx.count))
                let deviations = idx.reduce(0.0) { $0 + (Double(x[$1]) - Double(mean)) * (Double(x[$1]) - Double(mean)) }
                var first: (Double, Double)?
                for level in levels {
                    let (s, d) = x.withUnsafeBufferPointer { p in
                        (bissl_bn_sum(level, p.baseAddress! + c * plane, n, C * plane, plane),
                         bissl_bn_squared_deviation(level, p.baseAddress! + c * plane, n, C * plane, plane, mean))
                    }
                    // Σx: each plane's float sum has at most depth(plane) roundings on any value's path, each
                    // relative u: |error| <= depth·u·Σ|x| (γ_k ≈ k·u for k·u << 1); the float64 additions of
                    // the n plane sums add < n·2^-53·Σ|x|, inside the one extra u counted in depth.
                    XCTAssertLessThanOrEqual(abs(s - exact), depth(plane) * u * magnitude, "Σx, C \(C) plane \(plane) level \(level)")
                    // Σ(x − μ)²: each term rounds three times (x − μ, the square: (1+δ)²(1+δ') <= 1 + 3u), then
                    // the sum as above: |error| <= (depth + 3)·u·Σ(x − μ)².
                    XCTAssertLessThanOrEqual(abs(d - deviations), (depth(plane) + 3) * u * deviations,
                                             "Σ(x-μ)², C \(C) plane \(plane) level \(level)")
                    if let first { XCTAssertTrue(first == (s, d), "level \(level) differs from the baseline: \((s, d)) vs \(first)") }
                    first = first ?? (s, d)
                }
            }
        }
    }

    func testScaleShiftWithinTwoRoundingsAndReLUKeepsNaN() {
        for (C, plane, n) in shapes {
            var x = values(n * C * plane, seed: UInt64(7 + C * 100 + plane))
            x[x.count / 2] = .nan
            let (a, b): (Float, Float) = (0.7310, -0.4129)
            for relu in [false, true] {
                var first: [Float]?
                for level in levels {
                    var y = [Float](repeating: 0, count: x.count)
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            for c in 0..<C {
                                bissl_bn_scale_shift(level, xp.baseAddress! + c * plane, n, C * plane, plane, a, b, relu ? 1 : 0,
                                                     yp.baseAddress! + c * plane)
                            }
                        }
                    }
                    for i in x.indices {
                        if x[i].isNaN { XCTAssertTrue(y[i].isNaN, "NaN in, NaN out (relu \(relu))"); continue }
                        let exact = Double(x[i]) * Double(a) + Double(b)
                        // fl(fl(x·a) + b): |error| <= u|x·a| + u(1+u)(|x·a| + |b|) <= 2u(1+u)(|x·a| + |b|); ReLU's
                        // max(·, 0) does not increase a difference.
                        let bound = 2 * u * (1 + u) * (abs(Double(x[i]) * Double(a)) + abs(Double(b)))
                        XCTAssertLessThanOrEqual(abs(Double(y[i]) - (relu ? max(exact, 0) : exact)), bound, "y[\(i)] relu \(relu) level \(level)")
                        if relu { XCTAssertGreaterThanOrEqual(y[i], 0) }
                    }
                    if let first { XCTAssertTrue(zip(first, y).allSatisfy { $0.bitPattern == $1.bitPattern }, "level \(level) differs") }
                    first = first ?? y
                }
            }
        }
    }

    func testBackwardSumsAndInputGradientWithinTheirBounds() {
        for (C, plane, n) in shapes {
            let x = values(n * C * plane, seed: UInt64(11 + C * 100 + plane))
            let dy = values(n * C * plane, seed: UInt64(13 + C * 100 + plane))
            let (a, b, mean, invStd, k): (Float, Float, Float, Float, Float) = (1.3, -0.21, 0.47, 0.83, 0.61)
            for gate in [false, true] {
                for batch in [true, false] {
                    var first: [Float]?
                    for level in levels {
                        var dx = [Float](repeating: 0, count: x.count)
                        for c in 0..<C {
                            var sums = [Double](repeating: 0, count: 2)
                            // The gate: ReLU's backward with the pre-activation fl(fl(x·a) + b) (Swift does not fuse),
                            // so the reference keeps exactly the same values (checked through eval mode's dx = k·g).
                            let idx = (0..<n).flatMap { s in (0..<plane).map { (s * C + c) * plane + $0 } }
                            let gated = idx.map { gate ? (x[$0] * a + b > 0 ? dy[$0] : 0) : dy[$0] }
                            let sumG = gated.reduce(0.0) { $0 + Double($1) }
                            let magG = gated.reduce(0.0) { $0 + abs(Double($1)) }
                            let terms = zip(gated, idx).map { Double($0) * (Double(x[$1]) - Double(mean)) }
                            let sumGX = terms.reduce(0, +) * Double(invStd), magGX = terms.reduce(0) { $0 + abs($1) } * Double(invStd)
                            let (meanDy, meanDyXhat) = (Float(sumG) / Float(idx.count), Float(sumGX) / Float(idx.count))
                            x.withUnsafeBufferPointer { xp in
                                dy.withUnsafeBufferPointer { gp in
                                    dx.withUnsafeMutableBufferPointer { dp in
                                        let (x0, g0) = (xp.baseAddress! + c * plane, gp.baseAddress! + c * plane)
                                        bissl_bn_gate_sums(level, g0, C * plane, x0, C * plane, n, plane, gate ? 1 : 0, a, b, mean, invStd, &sums)
                                        bissl_bn_input_gradient(level, g0, C * plane, x0, C * plane, n, plane, gate ? 1 : 0, a, b, mean, invStd,
                                                                k, meanDy, meanDyXhat, batch ? 1 : 0, dp.baseAddress! + c * plane)
                                    }
                                }
                            }
                            // Σg: depth(plane)·u·Σ|g| (as Σx). Σ g(x − μ)·s: each term rounds twice (x − μ, the
                            // product), the plane's sum depth(plane) times, the product with s once:
                            // (depth + 3)·u·Σ|g(x − μ)|·s.
                            XCTAssertLessThanOrEqual(abs(sums[1] - sumG), depth(plane) * u * magG, "Σg level \(level)")
                            XCTAssertLessThanOrEqual(abs(sums[0] - sumGX), (depth(plane) + 3) * u * magGX, "Σg·x̂ level \(level)")
                            for (j, i) in idx.enumerated() {
                                let xhat = (Double(x[i]) - Double(mean)) * Double(invStd)
                                if batch {
                                    // k((g − a) − ((x − μ)s)b): six roundings, each at most u times a partial result
                                    // whose size times |k| is at most |k|S(1 + O(u)), S = |g| + |a| + |x̂b| (those of
                                    // x − μ, ·s and ·b through |x̂b|): |error| <= 6u|k|S(1 + O(u)) <= 7u|k|S.
                                    let exact = Double(k) * ((Double(gated[j]) - Double(meanDy)) - xhat * Double(meanDyXhat))
                                    let s = abs(Double(gated[j])) + abs(Double(meanDy)) + abs(xhat * Double(meanDyXhat))
                                    XCTAssertLessThanOrEqual(abs(Double(dx[i]) - exact), 7 * u * abs(Double(k)) * s, "dx[\(i)] level \(level)")
                                } else {
                                    // k·g: one rounding, the same in Swift; so the gate kept exactly the reference's values.
                                    XCTAssertEqual(dx[i], k * gated[j], "eval dx[\(i)] level \(level)")
                                }
                            }
                        }
                        if let first { XCTAssertTrue(zip(first, dx).allSatisfy { $0.bitPattern == $1.bitPattern }, "level \(level) differs") }
                        first = first ?? dx
                    }
                }
            }
        }
    }

    /// The layer through each level: a train-mode forward with the fused ReLU and its backward on an odd
    /// shape give the same bits at every level (the kernels' contract, so models do not depend on the CPU).
    func testBatchNormLayerGivesTheSameBitsAtEveryLevel() {
        let saved = BatchNorm2d.kernelLevel
        defer { BatchNorm2d.kernelLevel = saved }
        let (N, C, H, W) = (3, 3, 5, 7)
        let x = Tensor4(n: N, c: C, h: H, w: W, data: values(N * C * H * W, seed: 21))
        let dy = Tensor4(n: N, c: C, h: H, w: W, data: values(N * C * H * W, seed: 22))
        var first: [Float]?
        for level in levels {
            BatchNorm2d.kernelLevel = level
            let bn = BatchNorm2d(name: "bn.", channels: C)
            bn.weight.value = [0.9, 1.2, -0.4]
            bn.bias.value = [0.1, -0.3, 0.2]
            let y = bn.forward(x, mode: .train, relu: true)
            let dx = bn.backward(dy)
            let all = y.data + dx.data + bn.weight.grad + bn.bias.grad + bn.runningMean + bn.runningVar
            if let first { XCTAssertTrue(zip(first, all).allSatisfy { $0.bitPattern == $1.bitPattern }, "level \(level) differs") }
            first = first ?? all
        }
        print("BatchNormKernelTests: levels run \(levels)")
    }
}
