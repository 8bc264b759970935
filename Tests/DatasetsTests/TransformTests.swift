import Foundation
import XCTest
@testable import Datasets
import TestSupport

/// Every transform against Pillow's own output for the same image and parameters
/// (tools/fixtures/make_transform_fixtures.py; outputs stored as lossless PNG). Pixel results must
/// be identical; ToTensor/Normalize must equal torch's float32 values exactly.
final class TransformTests: XCTestCase {
    private static let dir = Fixtures.url("datasets/transforms")
    nonisolated(unsafe) private static let spec: [String: Any] = {
        let data = try! Data(contentsOf: dir.appendingPathComponent("cases.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    private func png(_ relative: String) throws -> RGBImage {
        try ImageDecoder.decode(try Data(contentsOf: Self.dir.appendingPathComponent(relative)), name: relative)
    }

    private func apply(_ op: String, _ p: [String: Any], to image: RGBImage) throws -> RGBImage {
        func int(_ k: String) -> Int { (p[k] as! NSNumber).intValue }
        func float(_ k: String) -> Float { (p[k] as! NSNumber).floatValue }
        func interpolation() -> Interpolation { Interpolation(rawValue: p["interpolation"] as! String)! }
        switch op {
        case "resize": return ImageTransforms.resize(image, height: int("height"), width: int("width"), interpolation: interpolation())
        case "resizeShorterSide": return ImageTransforms.resizeShorterSide(image, to: int("size"), interpolation: interpolation())
        case "centerCrop": return ImageTransforms.centerCrop(image, height: int("height"), width: int("width"))
        case "horizontalFlip": return ImageTransforms.horizontalFlip(image)
        case "resizedCrop":
            return ImageTransforms.resizedCrop(image, .init(i: int("i"), j: int("j"), h: int("h"), w: int("w")),
                                               height: int("height"), width: int("width"), interpolation: interpolation())
        case "brightness": return ImageTransforms.adjustBrightness(image, float("factor"))
        case "contrast": return ImageTransforms.adjustContrast(image, float("factor"))
        case "saturation": return ImageTransforms.adjustSaturation(image, float("factor"))
        case "hue": return ImageTransforms.adjustHue(image, float("factor"))
        case "grayscale": return ImageTransforms.grayscale(image)
        case "solarize": return ImageTransforms.solarize(image, threshold: int("threshold"))
        case "gaussianBlur": return ImageTransforms.gaussianBlur(image, radius: float("radius"))
        default: throw XCTSkip("unknown op \(op)")
        }
    }

    func testEveryTransformMatchesPillow() throws {
        let inputs = ["base": try png("base.png"), "tiny": try png("tiny.png")]
        let cases = Self.spec["cases"] as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 50)
        var failures: [String] = []
        for c in cases {
            let name = c["name"] as! String
            let got = try apply(c["op"] as! String, c["params"] as! [String: Any], to: inputs[c["input"] as! String]!)
            let want = try png("out/\(name).png")
            guard got.height == want.height, got.width == want.width else {
                failures.append("\(name): size \(got.height)x\(got.width), Pillow \(want.height)x\(want.width)")
                continue
            }
            let diffs = zip(got.pixels, want.pixels).map { abs(Int($0) - Int($1)) }
            let bad = diffs.filter { $0 > 0 }.count
            if bad > 0 { failures.append("\(name): \(bad)/\(diffs.count) values differ, max \(diffs.max()!)") }
        }
        XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
    }

    func testToTensorMatchesTorch() throws {
        let corner = ImageTransforms.crop(try png("base.png"), .init(i: 0, j: 0, h: 4, w: 5))
        let ref = Self.spec["tensor_corner"] as! [String: Any]
        let torchvision = (ref["torchvision"] as! [NSNumber]).map(\.floatValue)
        let timm = (ref["timm"] as! [NSNumber]).map(\.floatValue)
        XCTAssertEqual(ImageTransforms.toTensor(corner), torchvision)
        XCTAssertEqual(ImageTransforms.toTensor(corner, divisor: 1), timm)
    }

    func testRandomResizedCropBoxFollowsTorchvision() {
        for c in Self.spec["random_resized_crop"] as! [[String: Any]] {
            var uniforms = (c["uniforms"] as! [NSNumber]).map(\.doubleValue)[...]
            let scale = (c["scale"] as! [NSNumber]).map(\.doubleValue)
            let ratio = (c["ratio"] as! [NSNumber]).map(\.doubleValue)
            let box = ImageTransforms.randomResizedCropBox(
                height: (c["height"] as! NSNumber).intValue, width: (c["width"] as! NSNumber).intValue,
                scale: scale[0]...scale[1], ratio: ratio[0]...ratio[1], uniform: { uniforms.popFirst()! })
            let want = (c["box"] as! [NSNumber]).map(\.intValue)
            XCTAssertEqual([box.i, box.j, box.h, box.w], want, "\(c)")
        }
    }
}
