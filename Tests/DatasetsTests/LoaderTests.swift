import Foundation
import XCTest
@testable import Datasets
import TestSupport

final class LoaderTests: XCTestCase {
    private var digitsPath: String {
        Fixtures.digits
    }

    /// A transform whose output is fully determined by the image and its generator: the pixels as
    /// floats plus one random draw in every value of a second view.
    private let probe: SampleTransform = { image, rng in
        let pixels = ImageTransforms.toTensor(image, divisor: 1, mean: [0, 0, 0], std: [1, 1, 1])
        let r = Float(rng.uniform())
        return [pixels, pixels.map { _ in r }]
    }

    private func drain(_ it: EpochIterator) throws -> [Batch] {
        var out: [Batch] = []
        while let b = try it.nextBatch() { out.append(b) }
        return out
    }

    func testEpochsArePermutationsWithDropLastAndExactPixels() throws {
        let dataset = try ImageDataset(parsing: "h5:\(digitsPath)")
        let loader = DataLoader(dataset: dataset, batchSize: 64, dropLast: true, seed: 7, height: 8, width: 8, workers: 3, transform: probe)
        XCTAssertEqual(loader.batchesPerEpoch, 1797 / 64)
        let e0 = try drain(loader.epoch(0))
        XCTAssertEqual(e0.count, 28)
        XCTAssertTrue(e0.allSatisfy { $0.count == 64 && $0.views.count == 2 && $0.views[0].count == 64 * 3 * 64 })
        let visited = e0.flatMap(\.indices)
        XCTAssertEqual(Set(visited).count, 28 * 64, "no image twice in an epoch")
        XCTAssertEqual(visited, Array(loader.order(epoch: 0).prefix(28 * 64)))
        XCTAssertNotEqual(visited, Array(0..<(28 * 64)), "shuffled")
        // labels and pixels are those of the dataset at the batch's indices (NCHW)
        let b = e0[3]
        for k in [0, 17, 63] {
            XCTAssertEqual(b.labels[k], dataset.label(b.indices[k]))
            let image = try dataset.image(b.indices[k])
            let chw = Array(b.views[0][(k * 192)..<((k + 1) * 192)])
            XCTAssertEqual(chw, ImageTransforms.toTensor(image, divisor: 1, mean: [0, 0, 0], std: [1, 1, 1]))
        }
        let e1 = try drain(loader.epoch(1))
        XCTAssertNotEqual(e1.flatMap(\.indices), visited, "reshuffled every epoch")
        let full = DataLoader(dataset: dataset, batchSize: 64, shuffle: false, seed: 7, height: 8, width: 8, transform: probe)
        let all = try drain(full.epoch(0))
        XCTAssertEqual(all.count, 29)
        XCTAssertEqual(all.last!.count, 1797 - 28 * 64)
        XCTAssertEqual(all.flatMap(\.indices), Array(0..<1797))
    }

    func testBatchesDoNotDependOnWorkerCount() throws {
        let dataset = try ImageDataset(parsing: "h5:\(digitsPath)")
        let one = DataLoader(dataset: dataset, batchSize: 50, seed: 42, height: 8, width: 8, workers: 1, prefetch: 1, transform: probe)
        let four = DataLoader(dataset: dataset, batchSize: 50, seed: 42, height: 8, width: 8, workers: 4, prefetch: 3, transform: probe)
        let a = try drain(one.epoch(2)), b = try drain(four.epoch(2))
        XCTAssertEqual(a.map(\.indices), b.map(\.indices))
        XCTAssertEqual(a.map(\.views), b.map(\.views))
        let other = try drain(DataLoader(dataset: dataset, batchSize: 50, seed: 43, height: 8, width: 8, transform: probe).epoch(2))
        XCTAssertNotEqual(a.map(\.indices), other.map(\.indices))
    }

    func testPrefetchIsBounded() throws {
        let dataset = try ImageDataset(parsing: "h5:\(digitsPath)")
        let counter = Counter()
        let loader = DataLoader(dataset: dataset, batchSize: 10, seed: 1, height: 8, width: 8, workers: 2, prefetch: 2) { image, rng in
            counter.add()
            return [ImageTransforms.toTensor(image)]
        }
        let it = loader.epoch(0)
        _ = try it.nextBatch()
        Thread.sleep(forTimeInterval: 0.3)
        // the returned batch, plus at most `prefetch` ready ones, plus at most one being built
        XCTAssertLessThanOrEqual(counter.value, 10 * (1 + 2 + 1))
        XCTAssertGreaterThanOrEqual(counter.value, 10 * 2, "the producer works ahead")
    }

    func testDecodeErrorIsThrownForItsBatch() throws {
        let dataset = try ImageDataset(parsing: "folder:\(Fixtures.url("datasets/bad").path)")
        let loader = DataLoader(dataset: dataset, batchSize: 2, shuffle: false, seed: 0, height: 4, width: 4) { image, _ in
            [ImageTransforms.toTensor(image)]
        }
        let it = loader.epoch(0)
        // order: a/good.png, a/truncated.png | b/cmyk.jpg ...
        assertDatasetError(try it.nextBatch(), contains: ["a/truncated.png"])
        XCTAssertNil(try it.nextBatch())
        // a wrong output size is reported, not silently batched
        let good = try ImageDataset(parsing: "h5:\(digitsPath)")
        let wrong = DataLoader(dataset: good, batchSize: 4, seed: 0, height: 9, width: 9) { image, _ in [ImageTransforms.toTensor(image)] }
        assertDatasetError(try wrong.epoch(0).nextBatch(), contains: ["expected 1 x 243"])
    }

    func testPretextPairLoaderOnFashionMNIST() throws {
        let dir = "/usr/share/datasets/fashion-mnist"
        guard FileManager.default.fileExists(atPath: dir) else { throw XCTSkip("dataset-fashion-mnist is not installed") }
        let dataset = try ImageDataset(parsing: "idx:\(dir)#test")
        let loader = DataLoader(dataset: dataset, batchSize: 8, seed: 3, height: 32, width: 32) { image, rng in
            var view = Augment.PretextView.view1
            view.size = 32
            var view2 = Augment.PretextView.view2
            view2.size = 32
            let pair = Augment.pretextPair(image, using: &rng, views: (view, view2), pixelScale: .unit)
            return [pair.0, pair.1]
        }
        let batch = try XCTUnwrap(try loader.epoch(0).nextBatch())
        XCTAssertEqual(batch.views.count, 2)
        XCTAssertEqual(batch.views[0].count, 8 * 3 * 32 * 32)
        XCTAssertNotEqual(batch.views[0], batch.views[1])
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
