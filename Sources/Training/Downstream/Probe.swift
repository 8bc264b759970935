import Checkpoint
import Datasets
import Engine
import Foundation

/// What `bissl probe` measures: linear-probe and k-NN top-1 of a frozen backbone.
public struct ProbeResult: Codable, Equatable, Sendable {
    /// Linear-probe top-1 (%) on the evaluation data.
    public var linearTop1: Double
    /// k-NN top-1 (%) on the evaluation data.
    public var knnTop1: Double
    public var k: Int
    public var trainCount: Int
    public var evalCount: Int
    public var featureCount: Int
    public var imageSize: Int
    /// Batches of the training data the BN running statistics were recomputed on
    /// (`BatchNormRecalibration`), nil when they were the entry's own.
    public var recalibratedBatchNormBatches: Int?
}

/// Linear probe and k-NN on frozen features: the backbone runs only in eval mode
/// (`FrozenFeatures`), so its parameters and BatchNorm running statistics are unchanged afterwards,
/// unless `recalibrateBN` first recomputes the running statistics on `train` (`BatchNormRecalibration`).
public enum Probe {
    /// - Parameters:
    ///   - backbone: the entry's backbone (read only).
    ///   - train, eval: labelled datasets; the classifier and the k-NN memory come from `train`.
    ///   - imageSize: side of the downstream test transform.
    ///   - k: neighbours of the k-NN vote (`KNNClassifier`).
    ///   - config: the linear probe's recipe (`LinearProbe.Config`).
    ///   - recalibrateBN: recompute `backbone`'s BN running statistics on `train` first (this changes
    ///     `backbone`'s buffers; its parameters stay).
    ///   - progress: messages such as "features 1024/60000" (optional).
    /// - Throws: dataset read errors; `TrainingError.invalid` when `eval` has more classes than `train`.
    public static func run(backbone: ResNet, train: ImageDataset, eval: ImageDataset, imageSize: Int, k: Int = 20,
                           config: LinearProbe.Config = .init(), recalibrateBN: Bool = false,
                           progress: ((String) -> Void)? = nil) throws -> ProbeResult {
        guard eval.classNames.count <= train.classNames.count || train.classNames.isEmpty else {
            throw TrainingError.invalid("evaluation data has \(eval.classNames.count) classes, training data \(train.classNames.count)")
        }
        guard k >= 1 else { throw TrainingError.invalid("--knn must be at least 1, got \(k)") }
        var recalibrated: Int?
        if recalibrateBN {
            progress?("recalibrating BatchNorm statistics on the training images")
            recalibrated = try BatchNormRecalibration.recalibrate(backbone, dataset: train, imageSize: imageSize)
        }
        let trainSet = try FrozenFeatures.extract(backbone: backbone, dataset: train, imageSize: imageSize) { done, total in
            if done == total || done % 4096 < 128 { progress?("features (train) \(done)/\(total)") }
        }
        var evalSet = try FrozenFeatures.extract(backbone: backbone, dataset: eval, imageSize: imageSize) { done, total in
            if done == total || done % 4096 < 128 { progress?("features (eval) \(done)/\(total)") }
        }
        if let bad = evalSet.labels.first(where: { $0 >= trainSet.classCount }) {
            throw TrainingError.invalid("evaluation label \(bad) is outside the training data's \(trainSet.classCount) classes")
        }
        evalSet.classCount = trainSet.classCount
        progress?("k-NN (k=\(k))")
        let knn = KNNClassifier(train: trainSet, k: k).top1(evalSet)
        progress?("linear probe (\(config.epochs) epochs)")
        let linear = LinearProbe(train: trainSet, config: config).top1(evalSet)
        return ProbeResult(linearTop1: linear, knnTop1: knn, k: k, trainCount: trainSet.count, evalCount: evalSet.count,
                           featureCount: trainSet.features.cols, imageSize: imageSize, recalibratedBatchNormBatches: recalibrated)
    }
}
