import Engine
import Foundation
import XCTest
@testable import Training
import TestSupport

/// Metrics and k-NN against values computed independently in plain Python
/// (tools/fixtures/make_downstream_fixtures.py -> Tests/Fixtures/downstream/metrics.json) and by hand.
final class DownstreamMetricsTests: XCTestCase {
    struct Reference: Decodable {
        struct Single: Decodable {
            var scores: [[Float]]; var labels: [Int]; var classes: Int
            var top1: Double; var top3: Double; var top5: Double
            var predictions: [Int]; var confusion: [[Int]]; var mean_per_class: Double
        }
        struct Multi: Decodable { var scores: [[Float]]; var targets: [[Float]]; var ap: [Double?]; var map: Double }
        struct KNN: Decodable {
            var train: [[Float]]; var train_labels: [Int]; var test: [[Float]]; var test_labels: [Int]
            var classes: Int; var k: Int; var temperature: Float; var votes: [[Double]]; var predictions: [Int]; var top1: Double
        }
        var single: Single; var multi: Multi; var knn: KNN
    }

    static func load() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: Fixtures.url("downstream/metrics.json")))
    }

    static func matrix(_ rows: [[Float]]) -> Matrix {
        Matrix(rows: rows.count, cols: rows.first?.count ?? 0, data: rows.flatMap { $0 })
    }

    func testSingleLabelMetricsMatchReference() throws {
        let r = try Self.load().single
        let s = Self.matrix(r.scores)
        XCTAssertEqual(ClassificationMetrics.topK(s, labels: r.labels, k: 1), r.top1, accuracy: 1e-9)
        XCTAssertEqual(ClassificationMetrics.topK(s, labels: r.labels, k: 3), r.top3, accuracy: 1e-9)
        XCTAssertEqual(ClassificationMetrics.topK(s, labels: r.labels, k: 5), r.top5, accuracy: 1e-9)
        XCTAssertEqual(ClassificationMetrics.predictions(s), r.predictions)
        let report = EvaluationReport(scores: s, labels: r.labels)
        XCTAssertEqual(report.confusion, r.confusion)
        XCTAssertEqual(report.meanPerClassAccuracy, r.mean_per_class, accuracy: 1e-9)
        XCTAssertEqual(report.top1, r.top1, accuracy: 1e-9)
        XCTAssertEqual(report.top5, r.top5, accuracy: 1e-9)
    }

    func testTopKTieRuleByHand() {
        // row: class 0 and 2 both score 1.0; class 0 (lower index) ranks first
        let s = Matrix(rows: 2, cols: 3, data: [1, 0.5, 1, 0, 0, 0])
        XCTAssertEqual(ClassificationMetrics.topK(s, labels: [2, 0], k: 1), 50)   // row 0 wrong, row 1 right (first max)
        XCTAssertEqual(ClassificationMetrics.topK(s, labels: [2, 2], k: 2), 50)   // row 0 rank 1 ok; row 1 class 2 rank 2
        XCTAssertEqual(ClassificationMetrics.topK(s, labels: [2, 2], k: 3), 100)
        XCTAssertEqual(ClassificationMetrics.predictions(s), [0, 0])
    }

    func testMeanPerClassByHand() {
        // class 0: 3 rows, 2 right; class 1: 1 row, right; class 2: no rows (ignored)
        let m = ClassificationMetrics.confusion(predictions: [0, 0, 1, 1], labels: [0, 0, 0, 1], classes: 3)
        XCTAssertEqual(m, [[2, 1, 0], [0, 1, 0], [0, 0, 0]])
        XCTAssertEqual(ClassificationMetrics.meanPerClassAccuracy(confusion: m), 100 * (2.0 / 3 + 1) / 2, accuracy: 1e-12)
    }

    func testAveragePrecisionByHand() throws {
        // ranks: P N P N -> precision 1, 1/2, 2/3, 1/2; recall 0.5, 0.5, 1, 1.
        // t = 0..0.5: max precision 1; t = 0.6..1: 2/3. AP = (6 + 5 * 2/3) / 11.
        let ap = try XCTUnwrap(ClassificationMetrics.averagePrecision11(scores: [0.9, 0.8, 0.7, 0.6], positives: [true, false, true, false]))
        XCTAssertEqual(ap, (6 + 5 * 2.0 / 3) / 11, accuracy: 1e-12)
        XCTAssertNil(ClassificationMetrics.averagePrecision11(scores: [1, 2], positives: [false, false]))
        // recall exactly 0.3 (3 of 10 positives) counts for t = 0.3: the first 3 rows are the positives
        var scores: [Float] = [], pos: [Bool] = []
        for i in 0..<20 { scores.append(Float(20 - i)); pos.append(i < 3 || (i >= 13)) }   // P P P, 10 N, 7 P
        let ap2 = try XCTUnwrap(ClassificationMetrics.averagePrecision11(scores: scores, positives: pos))
        // t <= 0.3: 1; t = 0.4..1.0: best precision at recall >= t is reached at the last row, 10/20
        XCTAssertEqual(ap2, (4 * 1.0 + 7 * 0.5) / 11, accuracy: 1e-12)
    }

    func testMultiLabelMAPMatchesReference() throws {
        let r = try Self.load().multi
        let s = Self.matrix(r.scores), t = Self.matrix(r.targets)
        for c in 0..<s.cols {
            let ap = ClassificationMetrics.averagePrecision11(scores: (0..<s.rows).map { s.data[$0 * s.cols + c] },
                                                              positives: (0..<t.rows).map { t.data[$0 * t.cols + c] > 0 })
            if let expected = r.ap[c] {
                XCTAssertEqual(try XCTUnwrap(ap), expected, accuracy: 1e-9, "class \(c)")
            } else {
                XCTAssertNil(ap, "class \(c) has no positive")
            }
        }
        XCTAssertEqual(try XCTUnwrap(ClassificationMetrics.meanAveragePrecision11(scores: s, targets: t)), r.map, accuracy: 1e-9)
    }

    func testKNNMatchesReference() throws {
        let r = try Self.load().knn
        let train = FeatureSet(features: Self.matrix(r.train), labels: r.train_labels, classCount: r.classes)
        let test = FeatureSet(features: Self.matrix(r.test), labels: r.test_labels, classCount: r.classes)
        let knn = KNNClassifier(train: train, k: r.k, temperature: r.temperature)
        let votes = knn.votes(test.features)
        for (i, row) in r.votes.enumerated() {
            for (c, v) in row.enumerated() {
                XCTAssertEqual(Double(votes.data[i * r.classes + c]), v, accuracy: 1e-4 * max(v, 1), "query \(i) class \(c)")
            }
        }
        XCTAssertEqual(knn.predict(test.features), r.predictions)
        XCTAssertEqual(knn.top1(test), r.top1, accuracy: 1e-9)
    }

    func testKNNTieRulesByHand() {
        // Training rows 0 and 1 are identical (equal similarity): with k = 1 the lower index (class 1) is nearer.
        let train = FeatureSet(features: Matrix(rows: 3, cols: 2, data: [1, 0, 1, 0, 0, 1]), labels: [1, 0, 2], classCount: 3)
        XCTAssertEqual(KNNClassifier(train: train, k: 1).predict(Matrix(rows: 1, cols: 2, data: [2, 0])), [1])
        // k = 2: rows 0 and 1 vote equally for classes 1 and 0: the lower class wins.
        XCTAssertEqual(KNNClassifier(train: train, k: 2).predict(Matrix(rows: 1, cols: 2, data: [2, 0])), [0])
        // Scale does not matter (cosine on normalised features).
        XCTAssertEqual(KNNClassifier(train: train, k: 1).predict(Matrix(rows: 1, cols: 2, data: [0, 0.001])), [2])
    }
}
