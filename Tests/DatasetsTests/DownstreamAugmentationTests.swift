import BisslCore
import XCTest
@testable import Datasets

/// `--augment` (`DownstreamAugmentation`): its grammar, the default being the downstream transform
/// every run used before the option (written out here from its definition, docs/bissl.md
/// "Augmentations and pixel scale"), and what `none`, `flip` and a full-area crop produce.
final class DownstreamAugmentationTests: XCTestCase {
    /// A 12x10 image with distinct pixels (so a flip or a crop changes it).
    let image = RGBImage(height: 10, width: 12, pixels: (0..<(10 * 12 * 3)).map { UInt8(($0 * 37) % 256) })

    func testParsingAndCanonicalText() throws {
        for (text, canonical) in [("none", "none"), ("flip", "flip"), ("crop", "crop:0.08"), ("crop:0.5", "crop:0.5"),
                                  ("flip+crop:0.25", "crop:0.25+flip"), ("CROP:1+FLIP", "crop:1.0+flip")] {
            XCTAssertEqual(try DownstreamAugmentation(parsing: text).description, canonical, text)
        }
        XCTAssertEqual(DownstreamAugmentation.standard.description, "crop:0.08+flip")
        // a run config recorded before --augment has none: the standard transform; a damaged one throws
        XCTAssertEqual(try DownstreamAugmentation(recorded: nil), .standard)
        XCTAssertEqual(try DownstreamAugmentation(recorded: "flip").description, "flip")
        XCTAssertThrowsError(try DownstreamAugmentation(recorded: "crop:7"))
        for bad in ["", "crop:0", "crop:1.5", "crop:-0.1", "crop:nan", "flip:1", "flip+flip", "rotate", "crop+", "none+flip"] {
            XCTAssertThrowsError(try DownstreamAugmentation(parsing: bad), bad)
        }
    }

    /// The default is, draw for draw, RandomResizedCrop(scale (0.08, 1), ratio (0.5, 1), bilinear) then
    /// a p = 0.5 flip, then ToTensor + ImageNet normalisation: bit-identical over 50 seeds.
    func testDefaultIsThePapersDownstreamTransform() {
        for seed in 0..<50 as Range<UInt64> {
            var a = SeededGenerator(seed: seed), b = SeededGenerator(seed: seed)
            let box = ImageTransforms.randomResizedCropBox(height: 10, width: 12, scale: 0.08...1.0, ratio: 0.5...1.0) { b.uniform() }
            var x = ImageTransforms.resizedCrop(image, box, height: 8, width: 8, interpolation: .bilinear)
            if b.bernoulli(0.5) { x = ImageTransforms.horizontalFlip(x) }
            XCTAssertEqual(DownstreamAugmentation.standard.apply(image, using: &a, size: 8), ImageTransforms.toTensor(x), "seed \(seed)")
            XCTAssertEqual(a.next(), b.next(), "the same number of draws")
        }
    }

    /// `none` is the test transform and draws nothing; `flip` is it or its mirror image, both seen.
    func testNoneAndFlip() throws {
        let test = Augment.downstreamTest(image, size: 8)
        let mirrored = ImageTransforms.toTensor(ImageTransforms.horizontalFlip(Augment.downstreamTestImage(image, size: 8)))
        var rng = SeededGenerator(seed: 1), untouched = SeededGenerator(seed: 1)
        XCTAssertEqual(try DownstreamAugmentation(parsing: "none").apply(image, using: &rng, size: 8), test)
        XCTAssertEqual(rng.next(), untouched.next())
        var seen = Set<Bool>()
        let flip = try DownstreamAugmentation(parsing: "flip")
        for _ in 0..<20 {
            let y = flip.apply(image, using: &rng, size: 8)
            XCTAssertTrue(y == test || y == mirrored)
            seen.insert(y == test)
        }
        XCTAssertEqual(seen, [true, false])
    }

    /// A minimum area of 1 on a square image leaves only the full image (the aspect ratio 1 is in
    /// (0.5, 1); torchvision's fallback is the full image too): at its own size, the image itself.
    func testFullAreaCropOfASquareImageIsTheImage() throws {
        let square = RGBImage(height: 8, width: 8, pixels: (0..<(8 * 8 * 3)).map { UInt8(($0 * 53) % 256) })
        let crop = try DownstreamAugmentation(parsing: "crop:1")
        var rng = SeededGenerator(seed: 9)
        for _ in 0..<10 { XCTAssertEqual(crop.apply(square, using: &rng, size: 8), ImageTransforms.toTensor(square)) }
    }
}
