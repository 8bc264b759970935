import Engine
import Foundation

/// Linear probe: a linear classifier trained on frozen features (the backbone is never run in
/// train mode, so its weights and BN statistics cannot move).
///
/// Choice: multinomial logistic regression by mini-batch SGD, not L-BFGS - it reuses the engine's
/// `Linear`, `CrossEntropy`, `SGD` and `CosineSchedule` exactly as fine-tuning does, and is
/// deterministic given the seed. Recipe:
/// - features standardised per dimension with the training set's mean and standard deviation
///   (population std, floored at 1e-6), the same transform applied to the evaluation features;
/// - `nn.Linear(F, C)` with PyTorch's default init drawn from `SeededRNG(seed)`;
/// - cross-entropy; SGD momentum 0.9, weight decay `weightDecay` on weight and bias; cosine from
///   `lr` to `0.001 * lr` per step without warmup (docs/bissl.md, "Optimisers and schedule" schedule);
/// - `epochs` passes over the training rows in a fresh permutation each epoch drawn from
///   `SeededRNG(seed ^ epoch)`; the last partial batch is kept.
public struct LinearProbe {
    public struct Config: Sendable, Equatable {
        public var epochs = 100
        public var batchSize = 256
        public var lr: Float = 0.1
        public var momentum: Float = 0.9
        public var weightDecay: Float = 1e-4
        public var seed: UInt64 = 0
        public init(epochs: Int = 100, batchSize: Int = 256, lr: Float = 0.1, weightDecay: Float = 1e-4, seed: UInt64 = 0) {
            self.epochs = epochs; self.batchSize = batchSize; self.lr = lr; self.weightDecay = weightDecay; self.seed = seed
        }
    }

    public let config: Config
    /// Per-dimension mean and 1/std of the training features.
    public let mean: [Float], invStd: [Float]
    /// The trained classifier (`fc.weight [C, F]`, `fc.bias [C]`) on standardised features.
    public let head: LinearHead

    /// Trains the probe on `train`.
    /// - Precondition: at least one training row, `epochs >= 1`, `batchSize >= 1`.
    public init(train: FeatureSet, config: Config = Config()) {
        precondition(train.count > 0 && config.epochs >= 1 && config.batchSize >= 1, "LinearProbe: empty data or bad config")
        self.config = config
        let N = train.count, F = train.features.cols, C = train.classCount
        var mean = [Float](repeating: 0, count: F), sq = [Double](repeating: 0, count: F)
        var sum = [Double](repeating: 0, count: F)
        for r in 0..<N { for c in 0..<F { sum[c] += Double(train.features.data[r * F + c]) } }
        for c in 0..<F { mean[c] = Float(sum[c] / Double(N)) }
        for r in 0..<N { for c in 0..<F { let d = Double(train.features.data[r * F + c] - mean[c]); sq[c] += d * d } }
        self.mean = mean
        self.invStd = sq.map { 1 / max(Float(($0 / Double(N)).squareRoot()), 1e-6) }
        let x = Self.standardize(train.features, mean: mean, invStd: invStd)

        head = LinearHead(features: F, classes: C)
        head.initialize(seed: config.seed)
        let sgd = SGD(parameters: head.parameters, lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay)
        let perEpoch = (N + config.batchSize - 1) / config.batchSize
        var schedule = CosineSchedule(base: config.lr, warmup: 0, total: max(perEpoch * config.epochs, 1))
        for epoch in 0..<config.epochs {
            var order = Array(0..<N)
            var rng = SeededRNG(seed: config.seed ^ (0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1)))
            order.shuffle(using: &rng)
            var start = 0
            while start < N {
                let rows = order[start..<min(N, start + config.batchSize)]
                var xb = Matrix(rows: rows.count, cols: F)
                for (k, r) in rows.enumerated() {
                    xb.data.replaceSubrange((k * F)..<((k + 1) * F), with: x.data[(r * F)..<((r + 1) * F)])
                }
                head.parameters.zeroGrad()
                let logits = head.forward(xb)
                let (_, grad) = CrossEntropy.forward(logits: logits, labels: rows.map { train.labels[$0] })
                _ = head.backward(grad)
                sgd.step()
                sgd.lr = schedule.step()
                start += config.batchSize
            }
        }
    }

    /// `(x - mean) * invStd` per column.
    static func standardize(_ m: Matrix, mean: [Float], invStd: [Float]) -> Matrix {
        var out = m
        let F = m.cols
        for r in 0..<m.rows { for c in 0..<F { out.data[r * F + c] = (m.data[r * F + c] - mean[c]) * invStd[c] } }
        return out
    }

    /// Logits `[N, C]` for features `[N, F]`.
    public func scores(_ features: Matrix) -> Matrix {
        head.forward(Self.standardize(features, mean: mean, invStd: invStd))
    }

    /// Top-1 accuracy in percent on `eval`.
    public func top1(_ eval: FeatureSet) -> Double {
        ClassificationMetrics.topK(scores(eval.features), labels: eval.labels, k: 1)
    }
}
