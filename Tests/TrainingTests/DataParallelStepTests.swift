import Checkpoint
import Datasets
import Engine
import TestSupport
import XCTest
@testable import Training

/// Data-parallel steps under `mpirun -np 2` (tools/mpi.sh runs this class on two ranks; a plain
/// `swift test` skips it): a 2-rank BiSSL lower step and a 2-rank Hessian-vector product equal the
/// single-process computation of the same two shards (each shard's gradient computed alone, averaged
/// with the shards' image counts as weights), and every rank ends with the same parameters; with
/// `--sync-bn` a BatchNorm split over the ranks computes the BatchNorm of the concatenated batch.
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

    /// SyncBatchNorm: a BatchNorm2d whose forward and backward run on the two ranks' shards of a batch
    /// of 3 images (1 and 2: unequal weights 1/3 and 2/3) under `synchronizingBatchNorm` gives each
    /// rank its rows of the single-process train-mode BatchNorm of the concatenated batch (y, and dx
    /// times the rank's weight), the same running statistics, and, after the count-weighted gradient
    /// average, the same dγ and dβ.
    func testSyncBatchNormEqualsTheConcatenatedBatch() throws {
        let C = 4, H = 5, W = 5, N = 3, HW = H * W
        var gen = SeededGenerator(seed: 31)
        func uniform() -> Float { Float(gen.next() >> 40) / Float(1 << 23) - 1 }
        // Channel c has mean 2c - 1 (a non-zero mean exercises the two-pass variance).
        let x = Tensor4(n: N, c: C, h: H, w: W, data: (0..<(N * C * HW)).map { 2 * Float(($0 / HW) % C) - 1 + uniform() })
        let G = Tensor4(n: N, c: C, h: H, w: W, data: (0..<(N * C * HW)).map { _ in uniform() })   // ∂L/∂y of the concatenated batch
        let gamma = (0..<C).map { _ in 1 + uniform() / 2 }, beta = (0..<C).map { _ in uniform() }
        func layer() -> BatchNorm2d {
            let bn = BatchNorm2d(name: "bn.", channels: C)
            bn.weight.value = gamma; bn.bias.value = beta
            return bn
        }
        func rows(_ t: Tensor4, _ r: Range<Int>) -> Tensor4 {
            Tensor4(n: r.count, c: C, h: H, w: W, data: Array(t.data[(r.lowerBound * C * HW)..<(r.upperBound * C * HW)]))
        }
        let shard = DataParallel.shard, mine = shard.range(of: N)
        // Rank r's loss is the mean over its shard, L_r = L·N/n_r on its rows: its ∂L_r/∂y is G·N/n_r.
        let weight = Float(mine.count) / Float(N)
        let synced = layer()
        DataParallel.syncBatchNorm = true
        defer { DataParallel.syncBatchNorm = false }
        let (y, dx) = DataParallel.synchronizingBatchNorm {
            let y = synced.forward(rows(x, mine), mode: .train)
            let g = rows(G, mine)
            return (y, synced.backward(Tensor4(n: g.n, c: C, h: H, w: W, data: g.data.map { $0 / weight })))
        }
        DataParallel.averageGradients([synced.weight, synced.bias], count: mine.count)
        let single = layer()
        let yRef = rows(single.forward(x, mode: .train), mine)
        let dxRef = rows(single.backward(G), mine)

        // Tolerance: both programs approximate the same exact values; each one's float32 error is
        // bounded below (first order, u = 2^-24, ×1.25 for the neglected higher-order terms), and
        // the two may differ by the sum of their bounds. Per channel, over its M = N·H·W values:
        // plane sums (`sumFloat`, `sumsForBackward`) add H·W floats in 8 lanes, then 8 lanes, then a
        // tail of < 8: depth k ≤ H·W/8 + 3 + 7, each within k·u·Σ|terms|; their float64 total (and
        // its all-reduce) adds ~N·2^-53, negligible, and one float32 cast (u). μ: k·u·Σ|x|/M + u|μ|.
        // V = Σ(x−μ̂)²: (k+3)·u·V (difference, square, sum) plus M(μ̂−μ)². s = (V/M+ε)^-1/2 moves by
        // half V's relative error, plus 2u (float64 → float32). a = γs, b = β − μa and y = xa + b
        // round once per operation; x̂ = (x−μ̂)s inherits μ̂'s and s's errors plus 2u. The backward
        // means a' = mean(dy), b' = mean(dy·x̂) are sums like μ (k+3 roundings, plus x̂'s errors and,
        // on a rank, the rounding of dy = G/w), and dx = γs(dy − a' − x̂b') rounds 4 times, plus 2u for
        // the scalings by 1/w and w. dγ, dβ: the plane sums, plus 4u for the float32 partial sums
        // and the weighted average's rounding.
        let u = Double(Float.ulpOfOne) / 2, k = Double(HW / 8 + 10), M = Double(N * HW), eps = Double(single.eps)
        func at(_ t: Tensor4, _ n: Int, _ c: Int, _ i: Int) -> Double { Double(t.data[(n * C + c) * HW + i]) }
        var worst: (ratio: Double, what: String) = (0, "")
        func check(_ actual: Float, _ expected: Float, _ bound: Double, _ what: String) {
            let ratio = abs(Double(actual) - Double(expected)) / (1.25 * bound)
            if !(ratio <= 1) && !(ratio <= worst.ratio) { worst = (ratio, what) }
        }
        for c in 0..<C {
            let all = (0..<N).flatMap { n in (0..<HW).map { (n, $0) } }
            let mu = all.reduce(0.0) { $0 + at(x, $1.0, c, $1.1) } / M
            let V = all.reduce(0.0) { $0 + pow(at(x, $1.0, c, $1.1) - mu, 2) }
            let s = 1 / (V / M + eps).squareRoot(), g = Double(gamma[c]), b0 = Double(beta[c])
            let sumX = all.reduce(0.0) { $0 + abs(at(x, $1.0, c, $1.1)) }
            let eMu = k * u * sumX / M + u * abs(mu)
            let eV = (k + 3) * u * V + M * eMu * eMu
            let eS = s * (eV / (2 * (V + M * eps)) + 2 * u)
            let dMu = 2 * eMu, dS = 2 * eS
            let dA = abs(g) * dS + 2 * u * abs(g * s)
            let bias = b0 - mu * g * s
            let dB: Double = abs(mu) * dA + abs(g * s) * dMu + 2 * u * (abs(mu * g * s) + abs(bias))
            let xhat = { (n: Int, i: Int) in (at(x, n, c, i) - mu) * s }
            let eXhat = { (n: Int, i: Int) in abs(at(x, n, c, i) - mu) * eS + s * eMu + 2 * u * abs(xhat(n, i)) }
            let sumG = all.reduce(0.0) { $0 + abs(at(G, $1.0, c, $1.1)) }
            let sumGXhat = all.reduce(0.0) { $0 + abs(at(G, $1.0, c, $1.1) * xhat($1.0, $1.1)) }
            let sumGeXhat = all.reduce(0.0) { $0 + abs(at(G, $1.0, c, $1.1)) * eXhat($1.0, $1.1) }
            let a1 = all.reduce(0.0) { $0 + at(G, $1.0, c, $1.1) } / M
            let b1 = all.reduce(0.0) { $0 + at(G, $1.0, c, $1.1) * xhat($1.0, $1.1) } / M
            let eA1 = (k + 3) * u * sumG / M + 2 * u * abs(a1)
            let eB1 = (k + 3) * u * sumGXhat / M + sumGeXhat / M + 2 * u * abs(b1)
            for (row, n) in mine.enumerated() {
                for i in 0..<HW {
                    let xv = at(x, n, c, i), gv = at(G, n, c, i), xh = xhat(n, i)
                    let yv = xv * g * s + bias
                    let dYBound: Double = abs(xv) * dA + dB + 2 * u * (abs(xv * g * s) + abs(yv))
                    check(y.data[(row * C + c) * HW + i], yRef.data[(row * C + c) * HW + i], dYBound, "y[\(n),\(c),\(i)]")
                    let inner = gv - a1 - xh * b1
                    let dxv = g * s * inner
                    let fromStatistics: Double = abs(g) * dS * abs(inner)
                    let fromMeans: Double = abs(g * s) * (2 * eA1 + abs(xh) * 2 * eB1 + abs(b1) * 2 * eXhat(n, i))
                    let fromRounding: Double = 8 * u * abs(g * s) * (abs(gv) + abs(a1) + abs(xh * b1)) + 4 * u * abs(dxv)
                    let dXBound = fromStatistics + fromMeans + fromRounding
                    check(dx.data[(row * C + c) * HW + i] * weight, dxRef.data[(row * C + c) * HW + i], dXBound, "dx[\(n),\(c),\(i)]")
                }
            }
            check(synced.weight.grad[c], single.weight.grad[c], 2 * (k + 3) * u * sumGXhat + 2 * sumGeXhat + 8 * u * sumGXhat, "dγ[\(c)]")
            check(synced.bias.grad[c], single.bias.grad[c], 2 * (k + 3) * u * sumG + 8 * u * sumG, "dβ[\(c)]")
            // running_mean = 0.9·0 + 0.1·μ̂; running_var = 0.9·1 + 0.1·V̂/(M−1) (float32 operations).
            check(synced.runningMean[c], single.runningMean[c], 0.1 * dMu + 4 * u * abs(mu), "running_mean[\(c)]")
            let unbiased = V / (M - 1)
            check(synced.runningVar[c], single.runningVar[c], 0.1 * (2 * eV / (M - 1) + 2 * u * unbiased) + 4 * u * (1 + unbiased),
                  "running_var[\(c)]")
        }
        XCTAssertEqual(worst.ratio, 0, "rank \(world.rank): \(worst.what) outside its float32 bound (\(worst.ratio)x)")
        // Without the synchronisation the rank's own statistics normalise: far outside the bound.
        let local = layer().forward(rows(x, mine), mode: .train)
        XCTAssertNotEqual(local.data, y.data, "rank \(world.rank): the synchronised forward used the shard's own statistics")
    }
}
