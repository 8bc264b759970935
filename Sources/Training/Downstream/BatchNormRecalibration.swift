import Datasets
import Engine
import Foundation

/// Recomputes a backbone's BatchNorm running statistics on a dataset (`bissl probe --recalibrate-bn`),
/// so that probes of different entries compare features, not statistics left over from training.
///
/// The same as PyTorch's `bn.reset_running_stats(); bn.momentum = None` (cumulative moving average,
/// https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html) for every BN of the backbone,
/// then one pass over the data in train mode: each layer normalises with its batch statistics (so the
/// next layer sees what a train-mode forward gives it), and after B batches `running_mean` is the
/// plain average of the B batch means and `running_var` of the B unbiased batch variances (every
/// batch weighs the same, as torch's `1 / num_batches_tracked` factor), `num_batches_tracked = B`.
/// Weights are untouched. Images take the downstream test transform (shorter side to int(S·256/224),
/// centre crop S), the one the probe's features are extracted with; batches of `batchSize` in dataset
/// order, a last batch of one image left out (train-mode BN needs more than one value per channel).
public enum BatchNormRecalibration {
    /// Recalibrates on preprocessed batches (`[N, 3, S, S]` each, N ≥ 2).
    /// - Returns: the number of batches used.
    @discardableResult
    public static func recalibrate(_ backbone: ResNet, batches: some Sequence<Tensor4>) -> Int {
        let norms = backbone.batchNorms
        var sums = norms.map { (mean: [Double](repeating: 0, count: $0.channels), variance: [Double](repeating: 0, count: $0.channels)) }
        var count = 0
        for x in batches {
            precondition(x.n >= 2, "BatchNormRecalibration: a batch needs at least 2 images")
            _ = backbone.forward(x, mode: .trainFrozenStatistics)
            for (k, bn) in norms.enumerated() {
                guard let s = bn.batchStatistics else { preconditionFailure("BatchNormRecalibration: \(bn.prefix) saw no batch") }
                for c in 0..<bn.channels {
                    sums[k].mean[c] += Double(s.mean[c])
                    sums[k].variance[c] += Double(s.unbiasedVariance[c])
                }
            }
            count += 1
        }
        guard count > 0 else { return 0 }
        for (k, bn) in norms.enumerated() {
            bn.runningMean = sums[k].mean.map { Float($0 / Double(count)) }
            bn.runningVar = sums[k].variance.map { Float($0 / Double(count)) }
            bn.numBatchesTracked = Int64(count)
        }
        return count
    }

    /// Recalibrates on `dataset` through the downstream test transform at `imageSize`.
    /// - Returns: the number of batches used.
    /// - Throws: dataset read errors; `TrainingError.invalid` when the data has fewer than 2 images.
    @discardableResult
    public static func recalibrate(_ backbone: ResNet, dataset: ImageDataset, imageSize size: Int, batchSize: Int = 128) throws -> Int {
        guard dataset.count >= 2 else {
            throw TrainingError.invalid("recalibrating BatchNorm needs at least 2 images, the data has \(dataset.count)")
        }
        let loader = DataLoader(dataset: dataset, batchSize: batchSize, shuffle: false, dropLast: dataset.count % batchSize == 1,
                                seed: 0, height: size, width: size) { image, _ in [Augment.downstreamTest(image, size: size)] }
        let iterator = loader.epoch(0)
        var failure: Error?
        let sequence = AnyIterator<Tensor4> {
            do {
                guard let b = try iterator.nextBatch() else { return nil }
                return Tensor4(n: b.count, c: 3, h: size, w: size, data: b.views[0])
            } catch {
                failure = error
                return nil
            }
        }
        let count = recalibrate(backbone, batches: sequence)
        if let failure { throw failure }
        return count
    }
}
