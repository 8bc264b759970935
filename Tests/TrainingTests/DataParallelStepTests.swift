import Checkpoint
import Datasets
import Engine
import TestSupport
import XCTest
@testable import Training

/// Data-parallel steps under `mpirun -np 2` (tools/mpi.sh runs this class on two ranks; a plain
/// `swift test` skips it): a 2-rank BiSSL lower step and a 2-rank Hessian-vector product equal the
/// single-process computation of the same two shards (each shard's gradient computed alone, averaged
/// with the shards' image counts as weights), and every rank ends with the same parameters.
/// Network: the BiSSL parity network of BiSSLStepTests (ResNet-18 width 2, 16x16 images).
final class DataParallelStepTests: XCTestCase {
    var world = Communicator.single

    override func setUpWithError() throws {
        try XCTSkipUnless(Communicator.launchedByMPIRun(), "runs on 2 ranks under mpirun (tools/mpi.sh)")
        world = try DataParallel.join()
        XCTAssertEqual(world.size, 2, "tools/mpi.sh starts 2 ranks")
    }

    /// MPI is finalised once both tests ran on every rank (mpirun counts a rank that exits without it as failed).
    override class func tearDown() { DataParallel.world.finalize() }

    /// `n` seeded images `[n, 3, 16, 16]`, uniform in [-1, 1).
    func images(_ n: Int, seed: UInt64) -> Tensor4 {
        var g = SeededGenerator(seed: seed)
        return Tensor4(n: n, c: 3, h: 16, w: 16, data: (0..<(n * 768)).map { _ in Float(g.next() >> 40) / Float(1 << 23) - 1 })
    }

    /// The images of shard `s` of `x` (the contiguous `DataShard` range, as the loaders take it).
    func part(_ x: Tensor4, _ s: DataShard) -> Tensor4 {
        let r = s.range(of: x.n)
        return Tensor4(n: r.count, c: 3, h: 16, w: 16, data: Array(x.data[(r.lowerBound * 768)..<(r.upperBound * 768)]))
    }

    /// Float32 bound of `Σ_r w_r x_r / W` (w_r: the shards' image counts, W = Σ w_r) computed by two
    /// programs that add the same N terms in different orders: each float32 sum of N terms is within
    /// (N−1)·u·Σ|w_r x_r| of the exact one (u = 2^-24, the unit roundoff; sequential-sum bound), so two of
    /// them differ by at most 2(N−1)·u·Σ|w_r x_r|; the products w_r·x_r and the final scale by 1/W
    /// are rounded once each, identically on both sides, adding at most 2u·|x| per side. The shards'
    /// own gradients are computed by the same deterministic code on the same inputs in both programs.
    func tolerance(terms: [[Float]], weights: [Float], mean: [Float]) -> [Float] {
        let u = Float.ulpOfOne / 2, n = Float(terms.count), total = weights.reduce(0, +)
        return mean.indices.map { i in
            let spread = zip(terms, weights).reduce(Float(0)) { $0 + abs($1.1 * $1.0[i]) }
            return 2 * (n - 1) * u * spread / total + 4 * u * abs(mean[i])
        }
    }

    /// `Σ_r w_r x_r / W` in the order a 2-rank all-reduce of `DataParallel.average` forms it.
    func weightedMean(_ terms: [[Float]], _ weights: [Float]) -> [Float] {
        let scale = 1 / weights.reduce(0, +)
        return terms[0].indices.map { i in zip(terms, weights).reduce(Float(0)) { $0 + $1.1 * $1.0[i] } * scale }
    }

    /// `actual` against `weightedMean(terms, weights)` within `tolerance` element by element; the
    /// failure names the worst element's error in units of its bound.
    func assertWeightedMean(_ actual: [Float], of terms: [[Float]], weights: [Float], _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        let expected = weightedMean(terms, weights)
        let tol = tolerance(terms: terms, weights: weights, mean: expected)
        XCTAssertEqual(actual.count, expected.count, what, file: file, line: line)
        var worst: Float = 0
        for i in expected.indices where !(abs(actual[i] - expected[i]) <= tol[i]) { worst = max(worst, abs(actual[i] - expected[i]) / tol[i]) }
        XCTAssertEqual(worst, 0, "rank \(world.rank): \(what) outside the reduction-order bound (worst \(worst)x)", file: file, line: line)
    }

    /// How many of `values` differ from rank 0's (bit for bit; the ranks must agree exactly).
    func differencesFromRoot(_ values: [Float]) throws -> Int {
        let bytes = try world.broadcast(values.withUnsafeBytes { Array($0) })
        let root = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return root.count == values.count ? zip(root, values).filter { $0.bitPattern != $1.bitPattern }.count : values.count
    }

    /// λ = 0 and no clipping make the step's gradient the averaged pretext gradient itself (the
    /// penalty adds 0, the clip coefficient is 1), which the test compares; LARS is then the same
    /// rank-independent code on the same gradient.
    func testLowerStepAveragesTheShardsGradients() throws {
        let x1 = images(8, seed: 11), x2 = images(8, seed: 12)
        let (pretext, down) = try BiSSLStepTests.load()
        let lower = LowerLevel(pretext: pretext, downstream: down.backbone, lambda: 0, clip: .greatestFiniteMagnitude, lr: 0.5)
        let r = lower.step(view1: part(x1, DataParallel.shard), view2: part(x2, DataParallel.shard))
        let reduced = pretext.parameters.flatMap(\.grad)
        let after = pretext.parameters.flatMap(\.value)

        DataParallel.use(.single)
        defer { DataParallel.use(world) }
        var terms: [[Float]] = [], losses: [[Float]] = [], weights: [Float] = []
        for k in 0..<2 {
            let s = DataShard(index: k, count: 2)
            let (p, _) = try BiSSLStepTests.load()
            p.parameters.zeroGrad()
            let loss = p.lossAndGradient(view1: part(x1, s), view2: part(x2, s), mode: .train, updateEMA: true)
            terms.append(p.parameters.flatMap(\.grad))
            losses.append([loss])
            weights.append(Float(s.range(of: 8).count))
        }
        assertWeightedMean(reduced, of: terms, weights: weights, "averaged gradient")
        assertWeightedMean([r.pretextLoss], of: losses, weights: weights, "averaged loss")
        XCTAssertEqual(try differencesFromRoot(after), 0, "rank \(world.rank): parameters after the step differ from rank 0's")
    }

    /// H v on B_H split over the ranks equals the count-weighted mean of each shard's product; the CG
    /// solve on top of it (a deterministic function of the averaged products) gives every rank the same u.
    func testHessianVectorProductsAreAveraged() throws {
        let h1 = images(8, seed: 21), h2 = images(8, seed: 22)
        let options = ImplicitGradientOptions(batchNorm: .frozen)
        let (pretext, _) = try BiSSLStepTests.load()
        var g = SeededGenerator(seed: 23)
        let v = pretext.backboneParameters.map { p in (0..<p.count).map { _ in Float(g.next() >> 40) / Float(1 << 23) - 1 } }
        let ig = ImplicitGradient(pretext: pretext, options: options)
        ig.setHessianBatch(view1: part(h1, DataParallel.shard), view2: part(h2, DataParallel.shard))
        let hv = ig.hessianVectorProduct(v).flatMap { $0 }
        let u = ig.solve(v).flatMap { $0 }

        DataParallel.use(.single)
        defer { DataParallel.use(world) }
        var terms: [[Float]] = [], weights: [Float] = []
        for k in 0..<2 {
            let s = DataShard(index: k, count: 2)
            let (p, _) = try BiSSLStepTests.load()
            let single = ImplicitGradient(pretext: p, options: options)
            single.setHessianBatch(view1: part(h1, s), view2: part(h2, s))
            terms.append(single.hessianVectorProduct(v).flatMap { $0 })
            weights.append(Float(s.range(of: 8).count))
        }
        assertWeightedMean(hv, of: terms, weights: weights, "averaged H v")
        DataParallel.use(world)
        XCTAssertEqual(try differencesFromRoot(u), 0, "rank \(world.rank): the CG solution differs from rank 0's")
    }
}
