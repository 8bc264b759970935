import Checkpoint
import Engine
import Foundation
import XCTest
@testable import Training
import TestSupport

/// One fine-tuning step (`FineTuner.trainStep`: train-mode forward, cross-entropy, backward, SGD
/// momentum 0.9 with weight decay) against PyTorch (tools/fixtures/make_downstream_fixtures.py,
/// `finetune_step`): ResNet-18 width 4, small stem, 10 classes, batch 4 at 16x16.
final class DownstreamStepParityTests: XCTestCase {
    /// The start value of element `i` of `key`, the same integer formula as the fixture script's
    /// `formula_value` (so the start weights need not be stored).
    static func startValue(_ key: String, _ i: Int, shape: [Int]) -> Float {
        var h: UInt64 = 0
        for b in key.utf8 { h = (h &* 31 &+ UInt64(b)) % (1 << 32) }
        let u = Double((UInt64(i) &* 2_654_435_761 &+ h) % (1 << 32)) / 4_294_967_296.0
        let c = (u - 0.5) * (12.0).squareRoot()
        let v: Double
        if key.hasSuffix("running_var") { v = 0.5 + u }
        else if key.hasSuffix("running_mean") { v = 0.1 * c }
        else if key == "fc.weight" || key == "fc.bias" { v = c / (3.0).squareRoot() / (32.0).squareRoot() }
        else if shape.count == 4 { v = c * (2.0 / Double(shape[0] * shape[2] * shape[3])).squareRoot() }
        else if key.hasSuffix("weight") { v = 1 + 0.2 * c }
        else { v = 0.1 * c }
        return Float(v)
    }

    func testOneFineTuneStepMatchesPyTorch() throws {
        let fx = try Fixtures.npz("finetune_step", area: "downstream")
        var a = try ResNet(depth: 18, width: 4, stem: "small").architecture
        a.heads = ["classifier": .init(kind: "linear", dims: [32, 10])]
        let net = try Network(architecture: a, seed: 0)
        var components = net.components()
        for (name, sd) in components {
            var out = sd
            for (key, t) in sd where t.dtype != .int64 {
                out[key] = Tensor(float32: (0..<t.count).map { Self.startValue(key, $0, shape: t.shape) }, shape: t.shape)
            }
            components[name] = out
        }
        try net.backbone.load(components["backbone"]!)
        try net.heads["classifier"]!.load(components["classifier"]!)
        let before = Dictionary(uniqueKeysWithValues: FineTuner.parameters(net).map { ($0.name, $0.value) })
        XCTAssertEqual(before["layer1.0.conv1.weight"]?.first, Self.startValue("layer1.0.conv1.weight", 0, shape: [4, 4, 3, 3]))

        let sgd = SGD(parameters: FineTuner.parameters(net), lr: 0.05, momentum: 0.9, weightDecay: 1e-3)
        let x = Tensor4(n: 4, c: 3, h: 16, w: 16, data: fx.floats("x"))
        let labels = fx["labels"]!.doubles().map { Int($0) }
        let loss = FineTuner.trainStep(net, sgd: sgd, images: x, labels: labels)
        XCTAssertEqual(loss, fx.floats("loss")[0], accuracy: 1e-4 * max(1, abs(fx.floats("loss")[0])))
        var checked = 0
        for p in FineTuner.parameters(net) {
            let update = zip(p.value, before[p.name]!).map { $0 - $1 }
            assertClose(update, fx.floats("update.\(p.name)"), tolerance: 1e-3, "update of \(p.name)")
            checked += 1
        }
        XCTAssertEqual(checked, 62, "every parameter of ResNet-18 (60) and fc (2)")
        let buffers = net.backbone.stateDict()
        for (key, t) in fx where key.hasPrefix("buffers.") {
            let name = String(key.dropFirst("buffers.".count))
            if t.dtype == .int64 {
                XCTAssertEqual(buffers[name]?.doubles(), t.doubles(), name)
            } else {
                assertClose(buffers.floats(name), t.floats(), tolerance: 1e-4, name)
            }
        }
    }
}
