import Foundation
import XCTest
@testable import Datasets
import TestSupport

/// The section-6 pipelines: whole views equal Pillow applying the same steps with the same
/// parameters; parameter draws have the recipe's probabilities and ranges and are reproducible.
final class PipelineTests: XCTestCase {
    private static let dir = Fixtures.url("datasets/transforms")

    private func png(_ relative: String) throws -> RGBImage {
        try ImageDecoder.decode(try Data(contentsOf: Self.dir.appendingPathComponent(relative)), name: relative)
    }

    func testPretextViewsEqualPillowWithTheSameParameters() throws {
        let data = try Data(contentsOf: Self.dir.appendingPathComponent("cases.json"))
        let spec = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let base = try png("base.png")
        let cases = spec["pipelines"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 3)
        for c in cases {
            let crop = (c["crop"] as! [NSNumber]).map(\.intValue)
            let jitter: [Augment.Jitter] = (c["jitter"] as! [[Any]]).map { pair in
                let f = (pair[1] as! NSNumber).floatValue
                switch pair[0] as! String {
                case "brightness": return .brightness(f)
                case "contrast": return .contrast(f)
                case "saturation": return .saturation(f)
                default: return .hue(f)
                }
            }
            let params = Augment.ViewParameters(
                crop: .init(i: crop[0], j: crop[1], h: crop[2], w: crop[3]), flip: c["flip"] as! Bool, jitter: jitter,
                grayscale: c["grayscale"] as! Bool, blurRadius: (c["blur"] as? NSNumber)?.floatValue, solarize: c["solarize"] as! Bool)
            let got = Augment.PretextView.view2.apply(base, params)
            XCTAssertEqual(got, try png("out/\(c["name"] as! String).png"), c["name"] as! String)
        }
    }

    func testDownstreamTestTransformEqualsPillow() throws {
        let got = Augment.downstreamTestImage(try png("base.png"))
        XCTAssertEqual(got, try png("out/downstream_test.png"))
        XCTAssertEqual(Augment.downstreamTest(try png("base.png")).count, 3 * 96 * 96)
    }

    /// Frequencies within 4.5 binomial standard deviations of the recipe's probabilities.
    func testParameterDrawsFollowTheRecipe() {
        var rng = SeededGenerator(seed: 12345)
        let n = 4000
        var flips = 0, jitters = 0, grays = 0, blurs = 0, solarizes = 0
        var orders = Set<[Int]>()
        for _ in 0..<n {
            let p = Augment.PretextView.view2.sample(height: 60, width: 80, using: &rng)
            XCTAssertTrue(p.crop.i >= 0 && p.crop.j >= 0 && p.crop.i + p.crop.h <= 60 && p.crop.j + p.crop.w <= 80)
            // Crop ratio (docs/bissl.md, Augmentations): aspect ratio (w / h) in [0.5, 1] up to rounding of w and h.
            XCTAssertLessThanOrEqual(Double(p.crop.w), Double(p.crop.h) + 1, "\(p.crop)")
            XCTAssertGreaterThanOrEqual(Double(p.crop.w) + 1, 0.5 * Double(p.crop.h), "\(p.crop)")
            flips += p.flip ? 1 : 0
            grays += p.grayscale ? 1 : 0
            solarizes += p.solarize ? 1 : 0
            if let r = p.blurRadius { blurs += 1; XCTAssertTrue(r >= 0.1 && r <= 2.0) }
            if !p.jitter.isEmpty {
                jitters += 1
                XCTAssertEqual(p.jitter.count, 4)
                var order: [Int] = []
                for j in p.jitter {
                    switch j {
                    case .brightness(let f): order.append(0); XCTAssertTrue(f >= 0.6 && f <= 1.4)
                    case .contrast(let f): order.append(1); XCTAssertTrue(f >= 0.6 && f <= 1.4)
                    case .saturation(let f): order.append(2); XCTAssertTrue(f >= 0.8 && f <= 1.2)
                    case .hue(let f): order.append(3); XCTAssertTrue(f >= -0.1 && f <= 0.1)
                    }
                }
                XCTAssertEqual(order.sorted(), [0, 1, 2, 3])
                orders.insert(order)
            }
        }
        func near(_ count: Int, _ p: Double, _ what: String) {
            let sd = (Double(n) * p * (1 - p)).squareRoot()
            XCTAssertLessThanOrEqual(abs(Double(count) - Double(n) * p), 4.5 * sd + 1e-9, "\(what): \(count) of \(n), p = \(p)")
        }
        near(flips, 0.5, "flip")
        near(jitters, 0.8, "jitter")
        near(grays, 0.2, "grayscale")
        near(blurs, 0.1, "blur")
        near(solarizes, 0.2, "solarize")
        XCTAssertEqual(orders.count, 24, "every jitter order occurs")
        var rng1 = SeededGenerator(seed: 1)
        for _ in 0..<200 {
            let p = Augment.PretextView.view1.sample(height: 60, width: 80, using: &rng1)
            XCTAssertNotNil(p.blurRadius)
            XCTAssertFalse(p.solarize)
        }
    }

    func testPretextPairIsReproducibleFromTheSeed() throws {
        let base = try png("base.png")
        var a = SeededGenerator(seed: 99), b = SeededGenerator(seed: 99), c = SeededGenerator(seed: 100)
        let pa = Augment.pretextPair(base, using: &a)
        let pb = Augment.pretextPair(base, using: &b)
        let pc = Augment.pretextPair(base, using: &c)
        XCTAssertEqual(pa.0, pb.0)
        XCTAssertEqual(pa.1, pb.1)
        XCTAssertNotEqual(pa.0, pc.0)
        XCTAssertEqual(pa.0.count, 3 * 96 * 96)
        // Raw pixel scale (.raw, the reference implementation's timm ToTensor): values reach (255 - mean) / std, largest for G: (255 - 0.456) / 0.224.
        XCTAssertGreaterThan(pa.0.max()!, 100)
        XCTAssertLessThanOrEqual(pa.0.max()!, (255 - 0.456) / 0.224 + 1e-3)
        var d = SeededGenerator(seed: 99)
        let unit = Augment.pretextPair(base, using: &d, pixelScale: .unit)
        XCTAssertLessThanOrEqual(unit.0.max()!, (1 - 0.406) / 0.225 + 1e-5)  // largest (1 - mean) / std: B
        XCTAssertGreaterThan(unit.0.max()!, 1)
    }
}
