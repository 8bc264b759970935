import Engine
import Foundation

/// k-nearest-neighbour classification on frozen features, the weighted vote of InstDisc
/// (Wu et al. 2018, arXiv 1805.01978, section 3.4) as used by DINO's `eval_knn.py`
/// (Caron et al. 2021, arXiv 2104.14294):
///
/// 1. every feature row is L2-normalised (`F.normalize`, eps 1e-12);
/// 2. the similarity of a query to a training row is their cosine `s = q . x`;
/// 3. the `k` training rows with the largest `s` vote for their class with weight `exp(s / T)`
///    (T = 0.07, DINO's default);
/// 4. the class with the largest summed weight is the prediction.
///
/// Tie rules (deterministic): among training rows with equal similarity the lower training index is
/// nearer; among classes with equal summed weight the lower class index wins.
public struct KNNClassifier {
    /// Neighbours per query (default 20, DINO's and InstDisc's reported setting is 20 and 200).
    public let k: Int
    /// Temperature T of the vote weights `exp(s / T)`.
    public let temperature: Float
    /// L2-normalised training features `[M, F]`.
    public let train: Matrix
    public let trainLabels: [Int]
    public let classCount: Int

    /// - Parameters: `train` features `[M, F]` (normalised here), their labels, `k >= 1`.
    public init(train: FeatureSet, k: Int = 20, temperature: Float = 0.07) {
        precondition(k >= 1, "KNNClassifier: k must be at least 1")
        precondition(train.count > 0, "KNNClassifier: no training features")
        self.k = k
        self.temperature = temperature
        self.train = Self.normalized(train.features)
        self.trainLabels = train.labels
        self.classCount = train.classCount
    }

    /// Rows divided by `max(||row||_2, 1e-12)` (`torch.nn.functional.normalize(x, dim=1)`).
    public static func normalized(_ m: Matrix) -> Matrix {
        var out = m
        for r in 0..<m.rows {
            var s: Float = 0
            for c in 0..<m.cols { let v = m.data[r * m.cols + c]; s += v * v }
            let scale = 1 / max(s.squareRoot(), 1e-12)
            for c in 0..<m.cols { out.data[r * m.cols + c] *= scale }
        }
        return out
    }

    /// Summed vote weights `[N, classCount]` for query features `[N, F]` (normalised here).
    /// Queries are processed in blocks so the similarity matrix never exceeds 256 x M floats.
    public func votes(_ queries: Matrix) -> Matrix {
        precondition(queries.cols == train.cols, "KNNClassifier: queries have \(queries.cols) features, training rows \(train.cols)")
        let q = Self.normalized(queries)
        let M = train.rows, F = train.cols, kk = min(k, M)
        var out = Matrix(rows: q.rows, cols: classCount)
        let block = 256
        var sims = [Float](repeating: 0, count: block * M)
        var start = 0
        while start < q.rows {
            let n = min(block, q.rows - start)
            q.data.withUnsafeBufferPointer { qp in
                train.data.withUnsafeBufferPointer { tp in
                    sims.withUnsafeMutableBufferPointer { sp in
                        // sims[n, M] = q[start..<start+n] * train^T
                        GEMM.sgemm(transB: true, m: n, n: M, k: F, a: qp.baseAddress! + start * F, lda: F,
                                   b: tp.baseAddress!, ldb: F, c: sp.baseAddress!, ldc: M)
                    }
                }
            }
            for i in 0..<n {
                let row = sims[(i * M)..<((i + 1) * M)]
                for (j, s) in Self.topK(row, kk) {
                    out.data[(start + i) * classCount + trainLabels[j]] += Foundation.exp(s / temperature)
                }
            }
            start += n
        }
        return out
    }

    /// Predicted class of each query row (largest summed weight; the lower class wins a tie).
    public func predict(_ queries: Matrix) -> [Int] {
        let v = votes(queries)
        return (0..<v.rows).map { r in
            var best = 0
            for c in 1..<max(v.cols, 1) where v.data[r * v.cols + c] > v.data[r * v.cols + best] { best = c }
            return best
        }
    }

    /// Top-1 accuracy in percent of `test` against its labels.
    public func top1(_ test: FeatureSet) -> Double {
        let p = predict(test.features)
        let correct = zip(p, test.labels).filter { $0 == $1 }.count
        return 100 * Double(correct) / Double(max(test.count, 1))
    }

    /// The `k` (index, value) pairs with the largest values, larger first; equal values: lower index first.
    static func topK(_ values: ArraySlice<Float>, _ k: Int) -> [(Int, Float)] {
        // A small sorted buffer (k is small): insertion keeps it ordered by (value desc, index asc).
        var best: [(Int, Float)] = []
        best.reserveCapacity(k + 1)
        for (offset, v) in values.enumerated() {
            if best.count == k, let last = best.last, !(v > last.1) { continue }
            var pos = best.count
            while pos > 0 && v > best[pos - 1].1 { pos -= 1 }
            best.insert((offset, v), at: pos)
            if best.count > k { best.removeLast() }
        }
        return best
    }
}
