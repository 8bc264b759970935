import Datasets
import Engine
import Foundation

/// Frozen backbone features of a whole labelled dataset, the input of k-NN and the linear probe.
public struct FeatureSet: Sendable {
    /// Pooled backbone features `[N, F]`, float32, in dataset order (row `i` is image `i`).
    public var features: Matrix
    /// Class index of each row, `N` values in `0..<classCount`.
    public var labels: [Int]
    /// Number of classes of the dataset (its class-name list, not only the labels present).
    public var classCount: Int

    public init(features: Matrix, labels: [Int], classCount: Int) {
        precondition(features.rows == labels.count, "FeatureSet: \(labels.count) labels for \(features.rows) rows")
        self.features = features
        self.labels = labels
        self.classCount = classCount
    }

    public var count: Int { labels.count }
}

/// Runs a dataset through a backbone in eval mode (`model.eval()`: BatchNorm normalises with its
/// running statistics and never updates them, so the entry's `running_mean`, `running_var` and
/// `num_batches_tracked` are exactly as before), batch by batch, with the downstream test transform
/// of docs/bissl.md, "Augmentations and pixel scale" (`Augment.downstreamTest`: shorter side to `int(S * 256 / 224)`,
/// centre crop `S`, `ToTensor`, ImageNet normalisation).
public enum FrozenFeatures {
    /// The default image size for a dataset: its first image's shorter side (the data's own scale;
    /// the paper's 96 px is for 32-500 px natural images, far above our 8x8 and 28x28 sets).
    /// - Throws: the dataset's read error; `DatasetError` for an empty dataset.
    public static func nativeImageSize(_ dataset: ImageDataset) throws -> Int {
        guard dataset.count > 0 else { throw DatasetError.invalid("\(dataset.uri) has no images") }
        let image = try dataset.image(0)
        return min(image.height, image.width)
    }

    /// Features `[N, F]` of every image of `dataset`, in dataset order.
    /// - Parameters:
    ///   - backbone: run in eval mode (`ResNet.infer`); its parameters and BN buffers are not modified.
    ///   - imageSize: the transform's output size `S` (images are `3 x S x S`).
    ///   - batchSize: images per forward pass (memory only: eval-mode results do not depend on it).
    ///   - progress: called after each batch with (images done, total).
    /// - Throws: the loader's `DatasetError` for an image that cannot be read.
    public static func extract(backbone: ResNet, dataset: ImageDataset, imageSize: Int, batchSize: Int = 128,
                               progress: ((Int, Int) -> Void)? = nil) throws -> FeatureSet {
        precondition(imageSize > 0 && batchSize > 0, "FrozenFeatures: image size and batch size must be positive")
        let size = imageSize
        let loader = DataLoader(dataset: dataset, batchSize: batchSize, shuffle: false, dropLast: false, seed: 0,
                                height: size, width: size) { image, _ in [Augment.downstreamTest(image, size: size)] }
        let F = backbone.featureCount
        var features = Matrix(rows: dataset.count, cols: F)
        var labels = [Int](repeating: 0, count: dataset.count)
        var done = 0
        let iterator = loader.epoch(0)
        while let batch = try iterator.nextBatch() {
            let x = Tensor4(n: batch.count, c: 3, h: size, w: size, data: batch.views[0])
            let f = backbone.infer(x)   // the eval-mode forward with BatchNorm folded (ResNet.infer)
            for (k, index) in batch.indices.enumerated() {
                features.data.replaceSubrange((index * F)..<((index + 1) * F), with: f.data[(k * F)..<((k + 1) * F)])
                labels[index] = batch.labels[k]
            }
            done += batch.count
            progress?(done, dataset.count)
        }
        return FeatureSet(features: features, labels: labels, classCount: max(dataset.classNames.count, (labels.max() ?? -1) + 1))
    }
}
