import CKernels
import XCTest
@testable import Engine

/// The fused residual passes of a ResNet block's training step against the separate layers, with tolerance 0:
/// the last BatchNorm + residual add + output ReLU in one pass (`bissl_bn_scale_shift_add_relu`,
/// `BatchNorm2d.forward(_:mode:adding:)`) performs the same float operations in the same order as
/// `BatchNorm2d.forward` then `ReLU.forward(_:adding:)`, and the identity gradient added inside the previous
/// block's ReLU backward (`ReLU.backward(_:adding:)`) is the same float sum as `ResidualAdd.accumulate`; so
/// every output, input gradient, parameter gradient and running statistic must have the same bits.
final class ResidualFusionTests: XCTestCase {
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<count).map { _ in rng.uniform(-1, 1) }
    }

    /// The levels this machine can run: the baseline, and up to the widest it has.
    var levels: [Int32] {
        [Int32(BISSL_LEVEL_BASELINE), Int32(BISSL_LEVEL_AVX2), Int32(BISSL_LEVEL_AVX512)].filter { $0 <= BatchNorm2d.kernelLevel }
    }

    func assertSameBits(_ a: [Float], _ b: [Float], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, message, file: file, line: line)
        let differing = zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(message): \(differing) of \(a.count) values differ", file: file, line: line)
    }

    /// The kernel at every level against its scalar definition in Swift (which does not fuse multiply-adds):
    /// `v = (x·a + b) + r`, `v <= 0 ? 0 : v`, on planes of 1 to 37 values (vector loop and tail), NaN in x and
    /// in r kept, −0 and the exact cancellations to 0 mapped to +0 as the rule does.
    func testScaleShiftAddReLUIsItsDefinitionAtEveryLevel() {
        for (C, plane, n) in [(1, 1, 3), (3, 5, 4), (2, 16, 3), (3, 37, 2), (1, 33, 5)] {
            var x = values(n * C * plane, seed: UInt64(31 + plane)), r = values(x.count, seed: UInt64(32 + plane))
            let (a, b): (Float, Float) = (0.8125, -0.25)
            x[0] = .nan
            r[x.count - 1] = .nan
            if x.count > 4 { x[2] = 0; r[2] = 0.25; x[3] = -0.0; r[3] = 0.25 }   // (0·a + b) + r = 0 exactly
            let expected = (0..<x.count).map { i -> Float in let v = (x[i] * a + b) + r[i]; return v <= 0 ? 0 : v }
            for level in levels {
                var y = [Float](repeating: 7, count: x.count)
                x.withUnsafeBufferPointer { xp in
                    r.withUnsafeBufferPointer { rp in
                        y.withUnsafeMutableBufferPointer { yp in
                            for c in 0..<C {
                                bissl_bn_scale_shift_add_relu(level, xp.baseAddress! + c * plane, n, C * plane, plane, a, b,
                                                              rp.baseAddress! + c * plane, yp.baseAddress! + c * plane)
                            }
                        }
                    }
                }
                assertSameBits(y, expected, "C \(C) plane \(plane) n \(n) level \(level)")
                XCTAssertTrue(y[0].isNaN && y[x.count - 1].isNaN, "NaN kept, level \(level)")
                if x.count > 4 { XCTAssertEqual(y[2].bitPattern, Float(0).bitPattern, "+0 from an exact 0, level \(level)") }
            }
        }
    }

    /// Two blocks with the same weights: one through `forward`/`backward` (the fused passes), the other through
    /// its layers one by one as the separate definition (BatchNorm, then `ReLU.forward(_:adding:)`; backward
    /// `ReLU.backward`, then the branches, then `ResidualAdd.accumulate`). Basic and bottleneck blocks, with and
    /// without a downsample branch, train and eval mode, at every kernel level.
    func testBlockForwardAndBackwardEqualTheSeparateLayers() {
        let saved = BatchNorm2d.kernelLevel
        defer { BatchNorm2d.kernelLevel = saved }
        let cases: [(bottleneck: Bool, inplanes: Int, planes: Int, stride: Int, downsample: Bool)] = [
            (false, 4, 4, 1, false), (false, 4, 8, 2, true), (true, 16, 4, 1, false), (true, 8, 4, 2, true),
        ]
        for level in levels {
            BatchNorm2d.kernelLevel = level
            for (k, t) in cases.enumerated() {
                for mode in [Mode.train, .eval] {
                    let label = "case \(k) \(mode) level \(level)"
                    func block() -> ResidualBlock {
                        let b = ResidualBlock(prefix: "b.", bottleneck: t.bottleneck, inplanes: t.inplanes, planes: t.planes,
                                              stride: t.stride, hasDownsample: t.downsample)
                        for (j, p) in b.parameters.enumerated() { p.value = values(p.count, seed: UInt64(100 + j)).map { p.shape.count == 1 ? $0 + 1 : $0 } }
                        for (j, bn) in b.batchNorms.enumerated() {
                            bn.runningMean = values(bn.channels, seed: UInt64(200 + j))
                            bn.runningVar = values(bn.channels, seed: UInt64(300 + j)).map { $0 + 1.5 }
                        }
                        return b
                    }
                    let fused = block(), separate = block(), outRelu = ReLU()
                    let x = Tensor4(n: 3, c: t.inplanes, h: 7, w: 6, data: values(3 * t.inplanes * 42, seed: 7))
                    let y = fused.forward(x, mode: mode)
                    // the separate layers, in the order of the definition
                    var out = x
                    for i in separate.convs.indices {
                        out = separate.bns[i].forward(separate.convs[i].forward(out), mode: mode, relu: i < separate.convs.count - 1)
                    }
                    let identity = separate.downsample.map { $0.bn.forward($0.conv.forward(x), mode: mode) } ?? x
                    let reference = outRelu.forward(out, adding: identity)
                    assertSameBits(y.data, reference.data, "forward, \(label)")
                    XCTAssertTrue(y.data.contains(0) && y.data.contains { $0 > 0 }, "the output ReLU's mask has both values, \(label)")

                    let dy = Tensor4(n: y.n, c: y.c, h: y.h, w: y.w, data: values(y.count, seed: 8))
                    let dx = fused.backward(dy)
                    let g = outRelu.backward(dy)
                    var d = g
                    for i in separate.convs.indices.reversed() { d = separate.convs[i].backward(separate.bns[i].backward(d))! }
                    ResidualAdd.accumulate(&d, separate.downsample.map { $0.conv.backward($0.bn.backward(g))! } ?? g)
                    assertSameBits(dx.data, d.data, "dx, \(label)")
                    for (p, q) in zip(fused.parameters, separate.parameters) { assertSameBits(p.grad, q.grad, "\(p.name) grad, \(label)") }
                    for (p, q) in zip(fused.batchNorms, separate.batchNorms) {
                        assertSameBits(p.runningMean + p.runningVar, q.runningMean + q.runningVar, "\(p.prefix) running statistics, \(label)")
                    }
                }
            }
        }
    }

    /// A whole ResNet-18 (width 4, both stems, downsample blocks in layers 2-4): `backward`, which adds each
    /// block's identity gradient inside the previous block's output ReLU backward, against the blocks'
    /// summed `backward` one after the other; every parameter gradient the same bits.
    func testResNetBackwardEqualsTheBlocksSummedBackward() throws {
        for stem in ["small", "imagenet"] {
            func model() throws -> ResNet {
                let m = try ResNet(depth: 18, width: 4, stem: stem)
                m.initialize(seed: 5, zeroInitLastBN: false)
                return m
            }
            let deferred = try model(), summed = try model()
            let x = Tensor4(n: 2, c: 3, h: 12, w: 12, data: values(2 * 3 * 144, seed: 9))
            let features = deferred.forward(x, mode: .train)
            // the same forward through the public layers, with a pool of its own
            var out = summed.bn1.forward(summed.conv1.forward(x), mode: .train, relu: true)
            if let mp = summed.maxpool { out = mp.forward(out) }
            for b in summed.blocks { out = b.forward(out, mode: .train) }
            let pool = GlobalAvgPool()
            assertSameBits(features.data, pool.forward(out).data, "features, \(stem) stem")
            let dF = Matrix(rows: features.rows, cols: features.cols, data: values(features.data.count, seed: 10))
            deferred.backward(dF)
            var d = pool.backward(dF)
            for b in summed.blocks.reversed() { d = b.backward(d) }
            if let mp = summed.maxpool { d = mp.backward(d) }
            _ = summed.conv1.backward(summed.bn1.backward(d), inputGradient: false)
            for (p, q) in zip(deferred.parameters, summed.parameters) { assertSameBits(p.grad, q.grad, "\(p.name) grad, \(stem) stem") }
        }
    }
}
