@testable import Checkpoint
import Collections
import Foundation
import XCTest
import TestSupport

/// Object trees built in Swift, shaped like what the readers produce, for the layout rules.
enum LayoutTrees {
    nonisolated(unsafe) static var storageCounter = 0

    /// The torchvision keys and shapes of a ResNet (from the committed reference JSON, not our code).
    static func reference(depth: Int, variant: String = "4-small") throws -> [(String, [Int])] {
        let r = try ArchitectureInferenceTests.reference()[String(depth)]!
        return Array(zip(r.keys, r.shapes[variant]!))
    }

    /// A source tensor with distinct values (`seed + i / 1000`) and its own storage key.
    static func tensor(_ shape: [Int], seed: Float, location: String = "cpu") -> SourceTensor {
        storageCounter += 1
        let n = shape.reduce(1, *)
        return SourceTensor(tensor: Tensor(float32: (0..<n).map { seed + Float($0) / 1000 }, shape: shape),
                            storageKey: String(storageCounter), storageOffset: 0, stride: contiguous(shape), location: location)
    }

    static func counter(_ v: Int64) -> SourceTensor {
        storageCounter += 1
        return SourceTensor(tensor: Tensor(int64: v), storageKey: String(storageCounter), stride: [], location: "cpu")
    }

    static func contiguous(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { s[i] = s[i + 1] * shape[i + 1] }
        return s
    }

    /// `prefix + key` entries of a ResNet state dict (fc included when `fc`).
    static func resnet(depth: Int = 50, prefix: String = "", fc: Bool = true, seed: Float = 0, nbt: Bool = true,
                       variant: String = "4-small") throws -> [ObjectValue.DictEntry] {
        var out: [ObjectValue.DictEntry] = []
        for (i, (key, shape)) in try reference(depth: depth, variant: variant).enumerated() {
            if !fc && key.hasPrefix("fc.") { continue }
            if key.hasSuffix("num_batches_tracked") {
                if nbt { out.append(.init(key: .string(prefix + key), value: .tensor(counter(Int64(i))))) }
            } else {
                out.append(.init(key: .string(prefix + key), value: .tensor(tensor(shape, seed: seed + Float(i)))))
            }
        }
        return out
    }

    /// Linear-BN-ReLU-Linear entries (`0.*`, `1.*`, `3.*`) under `prefix`.
    static func mlp(_ prefix: String, _ dims: [Int], seed: Float = 0) -> [ObjectValue.DictEntry] {
        var out: [ObjectValue.DictEntry] = []
        var index = 0
        for l in 0..<(dims.count - 1) {
            let (i, o) = (dims[l], dims[l + 1])
            out.append(.init(key: .string("\(prefix)\(index).weight"), value: .tensor(tensor([o, i], seed: seed))))
            out.append(.init(key: .string("\(prefix)\(index).bias"), value: .tensor(tensor([o], seed: seed))))
            if l < dims.count - 2 {
                for s in ["weight", "bias", "running_mean", "running_var"] {
                    out.append(.init(key: .string("\(prefix)\(index + 1).\(s)"), value: .tensor(tensor([o], seed: seed + 1))))
                }
                out.append(.init(key: .string("\(prefix)\(index + 1).num_batches_tracked"), value: .tensor(counter(5))))
            }
            index += 3
        }
        return out
    }

    static func dict(_ pairs: [(String, ObjectValue)]) -> ObjectValue {
        .dict(pairs.map { .init(key: .string($0.0), value: $0.1) })
    }

    static func doc(_ root: ObjectValue) -> SourceDocument {
        SourceDocument(format: .pth, container: "pytorch-zip", root: root)
    }

    /// Keys of the backbone component in canonical order, from the reference JSON.
    static func backboneKeys(depth: Int = 50) throws -> [String] {
        try reference(depth: depth).map(\.0).filter { !$0.hasPrefix("fc.") }
    }
}

final class LayoutResolverTests: XCTestCase {
    typealias T = LayoutTrees

    func testBareStateDictAtTheRoot() throws {
        let r = try LayoutResolver.resolve(T.doc(.dict(try T.resnet())))
        XCTAssertEqual(Array(r.components.keys), ["backbone", "classifier"])
        XCTAssertEqual(Array(r.components["backbone"]!.keys), try T.backboneKeys())
        XCTAssertEqual(Array(r.components["classifier"]!.keys), ["fc.weight", "fc.bias"])
        XCTAssertEqual(r.architecture.label, "resnet50-w4-small")
        XCTAssertEqual(r.architecture.heads["classifier"], .init(kind: "linear", dims: [128, 10]))
        XCTAssertEqual(r.keyPath, "")
        XCTAssertNil(r.strippedPrefix)
        XCTAssertEqual(r.rules[1], "matched 318/318 backbone keys of resnet50-w4-small by rule 'bare torchvision names'")
        XCTAssertEqual(r.droppedKeys, [])
        XCTAssertEqual(r.filledKeys, [])
        XCTAssertEqual(r.locations, ["cpu"])
    }

    // C1: every key has `module.`.
    func testWrapperPrefixSharedByAllKeysIsStripped() throws {
        let r = try LayoutResolver.resolve(T.doc(.dict(try T.resnet(prefix: "module."))))
        XCTAssertEqual(r.strippedPrefix, "module.")
        XCTAssertEqual(Array(r.components["backbone"]!.keys), try T.backboneKeys())
        XCTAssertTrue(r.rules.contains("stripped prefix 'module.' shared by all 320 keys"), "\(r.rules)")
        // Values travel with their names: conv1.weight was the first tensor (seed 0).
        XCTAssertEqual(r.components["backbone"]!["conv1.weight"]!.floats()[1], 0.001)
    }

    // C1 variant: only some keys have `module.`.
    func testPartialPrefixIsRefusedWithTheKeySetDifference() throws {
        var entries = try T.resnet()
        for i in entries.indices where entries[i].key.stringValue!.hasPrefix("layer4") {
            entries[i].key = .string("module." + entries[i].key.stringValue!)
        }
        let withPrefix = entries.filter { $0.key.stringValue!.hasPrefix("module.") }.count
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(.dict(entries)))) { error in
            guard case .ambiguous(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.hasPrefix("partial prefix 'module.' in the root dict: \(withPrefix) of 320 keys start with it (module.layer4.0.conv1.weight, module.layer4.0.bn1.weight, ...) and \(320 - withPrefix) do not (conv1.weight, bn1.weight, bn1.bias, ...)"), m)
        }
        // --strip-prefix cannot force it either.
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(.dict(entries)), options: .init(stripPrefix: "module.")))
    }

    // C1 variant: a prefix in the middle of a key is never rewritten.
    func testPrefixInsideAKeyIsNeverRewritten() throws {
        var entries = try T.resnet(prefix: "module.", fc: false)
        entries.append(.init(key: .string("module.head.module.weight"), value: .tensor(T.tensor([10, 128], seed: 7))))
        entries.append(.init(key: .string("module.head.module.bias"), value: .tensor(T.tensor([10], seed: 8))))
        let r = try LayoutResolver.resolve(T.doc(.dict(entries)))
        XCTAssertEqual(r.strippedPrefix, "module.")
        XCTAssertEqual(Array(r.components.keys), ["backbone", "head"])
        XCTAssertEqual(Array(r.components["head"]!.keys), ["module.weight", "module.bias"])
        XCTAssertEqual(r.components["head"]!["module.bias"]!.floats()[0], 8)
        XCTAssertEqual(r.architecture.heads, [:])
        XCTAssertEqual(r.warnings.count, 1)
        XCTAssertTrue(r.warnings[0].hasPrefix("component 'head' (2 tensors from 'module.head.*') is not a Linear or Linear-BatchNorm1d MLP layout; it is kept as found"), r.warnings[0])
    }

    // C2: BYOL-style layout without a wrapper.
    func testBackboneFoundByPrefixWithProjectorAndPredictor() throws {
        let sd = try T.resnet(prefix: "encoder.", fc: false) + T.mlp("encoder.fc.", [128, 64, 32], seed: 3) + T.mlp("predictor.", [32, 64, 32], seed: 4)
        let root = T.dict([("state_dict", .dict(sd)), ("epoch", .int(100))])
        let r = try LayoutResolver.resolve(T.doc(root))
        XCTAssertEqual(r.keyPath, "state_dict")
        XCTAssertEqual(r.strippedPrefix, "encoder.")
        XCTAssertEqual(Array(r.components.keys), ["backbone", "projector", "predictor"])
        XCTAssertEqual(Array(r.components["projector"]!.keys),
                       ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"])
        XCTAssertEqual(r.architecture.heads["projector"], .init(kind: "mlp", dims: [128, 64, 32]))
        XCTAssertEqual(r.architecture.heads["predictor"], .init(kind: "mlp", dims: [32, 64, 32]))
        XCTAssertNil(r.architecture.heads["classifier"])
        XCTAssertTrue(r.rules.contains("matched 318/318 backbone keys of resnet50-w4-small by rule 'prefix encoder.'"), "\(r.rules)")
        XCTAssertTrue(r.rules.contains("'encoder.fc.*' is an MLP 128-64-32: component projector"), "\(r.rules)")
        XCTAssertTrue(r.rules.contains("'predictor.*' is an MLP 32-64-32: component predictor"), "\(r.rules)")
        XCTAssertEqual(r.droppedKeys, ["epoch"])

        // --component backbone keeps only the backbone and lists the rest.
        let b = try LayoutResolver.resolve(T.doc(root), options: .init(components: .backbone))
        XCTAssertEqual(Array(b.components.keys), ["backbone"])
        XCTAssertEqual(b.architecture.heads, [:])
        XCTAssertEqual(b.droppedKeys.count, 9 + 9 + 1)
        XCTAssertTrue(b.droppedKeys.contains("state_dict.encoder.fc.3.bias"))
        XCTAssertTrue(b.droppedKeys.contains("state_dict.predictor.1.running_var"))
    }

    func testPlainLinearFCUnderThePrefixIsTheClassifier() throws {
        let r = try LayoutResolver.resolve(T.doc(T.dict([("model", .dict(try T.resnet(prefix: "encoder.")))])))
        XCTAssertEqual(Array(r.components.keys), ["backbone", "classifier"])
        XCTAssertEqual(Array(r.components["classifier"]!.keys), ["fc.weight", "fc.bias"])
        XCTAssertEqual(r.architecture.heads["classifier"], .init(kind: "linear", dims: [128, 10]))
    }

    func testProjectorNextToABackboneInsideAWrapper() throws {
        let sd = try T.resnet(prefix: "module.backbone.", fc: false) + T.mlp("module.projector.", [128, 16, 8])
        let r = try LayoutResolver.resolve(T.doc(.dict(sd)))
        XCTAssertEqual(r.strippedPrefix, "module.backbone.")
        XCTAssertEqual(Array(r.components.keys), ["backbone", "projector"])
        XCTAssertTrue(r.rules.contains { $0.hasPrefix("stripped prefix 'module.backbone.' from the backbone keys only (9 other keys do not have it; wrapper 'module.' shared by all keys)") }, "\(r.rules)")
    }

    func testHeadWithWrongInputSizeIsRefused() throws {
        let sd = try T.resnet(prefix: "encoder.", fc: false) + T.mlp("encoder.fc.", [64, 16, 8])
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(.dict(sd)))) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("'encoder.fc.*' takes 64 inputs but the backbone gives 128 features"))
        }
    }

    // C3: missing num_batches_tracked are filled with 0 and recorded; _metadata versions are reported.
    func testMissingNumBatchesTrackedAreFilled() throws {
        let r = try LayoutResolver.resolve(T.doc(.dict(try T.resnet(nbt: false))))
        XCTAssertEqual(r.filledKeys.count, 53)
        XCTAssertEqual(r.filledKeys.first, "bn1.num_batches_tracked")
        XCTAssertEqual(r.components["backbone"]!.count, 318)
        XCTAssertEqual(Array(r.components["backbone"]!.keys), try T.backboneKeys())
        XCTAssertEqual(r.components["backbone"]!["layer2.0.downsample.1.num_batches_tracked"], Tensor(int64: 0))
        XCTAssertTrue(r.rules.contains("filled 53 missing num_batches_tracked with 0 (int64) (no _metadata: torch's load_state_dict fills them with 0 as well)"), "\(r.rules)")

        func metadata(version: Int64) -> ObjectValue {
            let modules = ["", "bn1", "layer1.0.bn1"] + r.filledKeys.map { String($0.dropLast(".num_batches_tracked".count)) }
            return .dict(modules.map { .init(key: .string($0), value: T.dict([("version", .int($0 == "" ? 1 : version))])) })
        }
        let v1 = try LayoutResolver.resolve(T.doc(.dict(try T.resnet(nbt: false) + [.init(key: .string("_metadata"), value: metadata(version: 1))])))
        XCTAssertTrue(v1.rules.contains("filled 53 missing num_batches_tracked with 0 (int64) (_metadata says BatchNorm version 1 for 53: modules saved before the buffer existed, torch's load_state_dict fills 0 too)"), "\(v1.rules)")
        XCTAssertEqual(v1.droppedKeys, [], "_metadata is consumed, not a dropped entry")
        let v2 = try LayoutResolver.resolve(T.doc(.dict(try T.resnet(nbt: false) + [.init(key: .string("_metadata"), value: metadata(version: 2))])))
        XCTAssertTrue(v2.rules.contains("filled 53 missing num_batches_tracked with 0 (int64) (_metadata says BatchNorm version 2 for 53: torch's strict load_state_dict would report them missing)"), "\(v2.rules)")

        // A full dict fills nothing and keeps the counters' values.
        let full = try LayoutResolver.resolve(T.doc(.dict(try T.resnet())))
        XCTAssertEqual(full.filledKeys, [])
        XCTAssertEqual(full.components["backbone"]!["bn1.num_batches_tracked"], Tensor(int64: 5))
    }

    func testHeadCountersAreFilledOnlyForRecognisedHeads() throws {
        var sd = try T.resnet(prefix: "encoder.", fc: false) + T.mlp("projector.", [128, 16, 8])
        sd.removeAll { $0.key.stringValue == "projector.1.num_batches_tracked" }
        sd.append(.init(key: .string("aux.running_mean"), value: .tensor(T.tensor([3], seed: 1))))
        sd.append(.init(key: .string("aux.running_var"), value: .tensor(T.tensor([3], seed: 1))))
        let meta = T.dict([("projector.1", T.dict([("version", .int(1))]))])
        let r = try LayoutResolver.resolve(T.doc(.dict(sd + [.init(key: .string("_metadata"), value: meta)])))
        XCTAssertEqual(r.filledKeys, ["projector.1.num_batches_tracked"])
        XCTAssertEqual(r.components["projector"]!["1.num_batches_tracked"], Tensor(int64: 0))
        XCTAssertEqual(Array(r.components["aux"]!.keys), ["running_mean", "running_var"], "unknown components stay as found")
        XCTAssertTrue(r.rules.contains("filled 1 missing num_batches_tracked with 0 (int64) (_metadata says BatchNorm version 1 for 1: modules saved before the buffer existed, torch's load_state_dict fills 0 too)"), "\(r.rules)")
    }

    // C4 / EMA: several complete candidates are refused; --select picks one and the branch is recorded.
    func testTeacherAndStudentAreAmbiguousUntilSelected() throws {
        let root = T.dict([("teacher", .dict(try T.resnet(prefix: "backbone.", fc: false, seed: 1))),
                           ("student", .dict(try T.resnet(prefix: "module.backbone.", fc: false, seed: 2))),
                           ("epoch", .int(3))])
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(root))) { error in
            guard case .ambiguous(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.hasPrefix("2 complete ResNet backbones found: 'teacher.backbone' 318/318 resnet50-w4-small (score 1.00, complete), 'student.module.backbone' 318/318 resnet50-w4-small (score 1.00, complete); no rule prefers one"), m)
            XCTAssertTrue(m.contains("--select"), m)
        }
        let t = try LayoutResolver.resolve(T.doc(root), options: .init(select: "teacher"))
        XCTAssertEqual([t.keyPath, t.selector, t.branch, t.strippedPrefix], ["teacher", "teacher.backbone", "teacher", "backbone."])
        XCTAssertEqual(t.components["backbone"]!["conv1.weight"]!.floats()[0], 1)
        XCTAssertEqual(t.droppedKeys, ["student", "epoch"])
        XCTAssertTrue(t.rules.contains("dropped 'student', which holds other tensors"), "\(t.rules)")
        let s = try LayoutResolver.resolve(T.doc(root), options: .init(select: "student.module.backbone"))
        XCTAssertEqual([s.keyPath, s.branch, s.strippedPrefix], ["student", "student", "module.backbone."])
        XCTAssertEqual(s.components["backbone"]!["conv1.weight"]!.floats()[0], 2)
        XCTAssertEqual(s.candidates.count, 2)
        XCTAssertEqual(s.candidates[0].selector, "student.module.backbone")
    }

    func testEMAIsAmbiguousAndSelectable() throws {
        let root = T.dict([("model", .dict(try T.resnet(seed: 1))), ("model_ema", .dict(try T.resnet(seed: 2)))])
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(root))) { error in
            guard case .ambiguous = error as? CheckpointError else { return XCTFail("\(error)") }
        }
        let ema = try LayoutResolver.resolve(T.doc(root), options: .init(select: "model_ema"))
        XCTAssertEqual(ema.branch, "model_ema")
        XCTAssertEqual(ema.components["backbone"]!["conv1.weight"]!.floats()[0], 2)
        let model = try LayoutResolver.resolve(T.doc(root), options: .init(select: "model"))
        XCTAssertNil(model.branch, "'model' is a generic container, not a branch")
        XCTAssertEqual(model.droppedKeys, ["model_ema"])
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(root), options: .init(select: "nope"))) { error in
            guard case .invalid(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.hasPrefix("--select 'nope' matches no candidate; candidates: 'model' 318/318"), m)
        }
    }

    func testTwoBackbonesInOneDictSelectedByPrefix() throws {
        var sd = try T.resnet(prefix: "module.encoder_q.", seed: 1) + T.resnet(prefix: "module.encoder_k.", seed: 2)
        sd.append(.init(key: .string("module.queue"), value: .tensor(T.tensor([4, 8], seed: 0))))
        sd.append(.init(key: .string("module.queue_ptr"), value: .tensor(T.counter(0))))
        let root = T.dict([("state_dict", .dict(sd))])
        // The query encoder is preferred over its momentum copy, with or without a --select above both.
        let rule = "chose 'state_dict.module.encoder_q' over its momentum copy 'state_dict.module.encoder_k' (MoCo: the query encoder is trained by gradient, the key encoder is its momentum copy); --select state_dict.module.encoder_k picks the copy"
        for select in [nil, "state_dict.module", "state_dict"] {
            let auto = try LayoutResolver.resolve(T.doc(root), options: .init(select: select))
            XCTAssertEqual(auto.selector, "state_dict.module.encoder_q")
            XCTAssertEqual(auto.components["backbone"]!["conv1.weight"]!.floats()[0], 1)
            XCTAssertEqual(auto.rules[1], rule, "\(auto.rules)")
            XCTAssertEqual(auto.droppedKeys.count, 320 + 2)
        }
        let key = try LayoutResolver.resolve(T.doc(root), options: .init(select: "state_dict.module.encoder_k"))
        XCTAssertEqual(key.components["backbone"]!["conv1.weight"]!.floats()[0], 2)
        XCTAssertFalse(key.rules.contains { $0.hasPrefix("chose") }, "\(key.rules)")
        XCTAssertTrue(key.rules.contains("dropped 320 keys of the unselected candidate 'state_dict.module.encoder_q'"), "\(key.rules)")
        let r = try LayoutResolver.resolve(T.doc(root), options: .init(select: "state_dict.module.encoder_q"))
        XCTAssertFalse(r.rules.contains { $0.hasPrefix("chose") }, "an exact --select needs no preference: \(r.rules)")
        XCTAssertEqual(r.branch, "encoder_q")
        XCTAssertEqual(Array(r.components.keys), ["backbone", "classifier"])
        XCTAssertEqual(r.droppedKeys.count, 320 + 2)
        XCTAssertTrue(r.droppedKeys.contains("state_dict.module.encoder_k.fc.bias"))
        XCTAssertTrue(r.droppedKeys.contains("state_dict.module.queue_ptr"))
        XCTAssertTrue(r.rules.contains("dropped 320 keys of the unselected candidate 'state_dict.module.encoder_k'"), "\(r.rules)")
        XCTAssertTrue(r.warnings.contains("dropped 2 tensors that are not part of the model: module.queue, module.queue_ptr"), "\(r.warnings)")
        let backboneOnly = try LayoutResolver.resolve(T.doc(root), options: .init(select: "state_dict.module.encoder_q", components: .backbone))
        XCTAssertTrue(backboneOnly.rules.contains("dropped 2 keys that belong to no component: module.queue, module.queue_ptr"), "\(backboneOnly.rules)")
        XCTAssertFalse(backboneOnly.warnings.contains { $0.contains("module.queue") }, "\(backboneOnly.warnings)")
    }

    /// BYOL's online and target networks, each an encoder with a projector, and the online predictor:
    /// the online network is chosen (the target is its moving average) and the whole target network,
    /// projector included, is dropped; --select picks the target and then drops the online network.
    func testBYOLOnlineNetworkIsPreferredAndTheWholeTargetNetworkDropped() throws {
        let sd = try T.resnet(prefix: "online_network.encoder.", fc: false, seed: 1) + T.mlp("online_network.projector.", [128, 16, 8])
            + T.resnet(prefix: "target_network.encoder.", fc: false, seed: 2) + T.mlp("target_network.projector.", [128, 16, 8])
            + T.mlp("predictor.", [8, 16, 8])
        let r = try LayoutResolver.resolve(T.doc(.dict(sd)))
        XCTAssertEqual([r.selector, r.branch, r.strippedPrefix], ["online_network.encoder", "online_network", "online_network.encoder."])
        XCTAssertEqual(r.components["backbone"]!["conv1.weight"]!.floats()[0], 1)
        XCTAssertEqual(Array(r.components.keys), ["backbone", "projector", "predictor"])
        XCTAssertEqual(r.warnings, [])
        XCTAssertEqual(r.droppedKeys.count, 318 + 9)
        XCTAssertTrue(r.droppedKeys.allSatisfy { $0.hasPrefix("target_network.") }, "\(r.droppedKeys)")
        XCTAssertTrue(r.rules.contains("chose 'online_network.encoder' over its momentum copy 'target_network.encoder' (BYOL: the online network is trained by gradient, the target network is its moving average); --select target_network.encoder picks the copy"), "\(r.rules)")
        XCTAssertTrue(r.rules.contains("dropped 327 keys of the unselected candidate 'target_network.encoder': everything under 'target_network.', its heads included"), "\(r.rules)")

        // The target network selected: the predictor, which only the online network has in BYOL,
        // goes with the online network.
        let t = try LayoutResolver.resolve(T.doc(.dict(sd)), options: .init(select: "target_network.encoder"))
        XCTAssertEqual(t.components["backbone"]!["conv1.weight"]!.floats()[0], 2)
        XCTAssertEqual(Array(t.components.keys), ["backbone", "projector"])
        XCTAssertEqual(t.droppedKeys.count, 318 + 9 + 9)
        XCTAssertTrue(t.droppedKeys.allSatisfy { $0.hasPrefix("online_network.") || $0.hasPrefix("predictor.") }, "\(t.droppedKeys)")
        XCTAssertTrue(t.rules.contains("dropped the predictor 'predictor.*' (9 keys): it belongs to 'online_network.encoder', the network trained by gradient; its momentum copy 'target_network.encoder', selected, has none (BYOL: the online network is trained by gradient, the target network is its moving average)"), "\(t.rules)")
        XCTAssertEqual(t.warnings, [])
    }

    /// MoCo v3 keeps its predictor beside both encoders (`module.predictor`); it belongs to the base
    /// encoder, so selecting the momentum encoder drops it, while the default choice keeps it.
    func testMoCoV3MomentumEncoderSelectedDropsTheBaseEncodersPredictor() throws {
        let sd = try T.resnet(prefix: "module.base_encoder.", fc: false, seed: 1) + T.mlp("module.base_encoder.fc.", [128, 16, 8])
            + T.resnet(prefix: "module.momentum_encoder.", fc: false, seed: 2) + T.mlp("module.momentum_encoder.fc.", [128, 16, 8])
            + T.mlp("module.predictor.", [8, 16, 8])
        let root = T.dict([("state_dict", .dict(sd))])
        let base = try LayoutResolver.resolve(T.doc(root))
        XCTAssertEqual(base.selector, "state_dict.module.base_encoder")
        XCTAssertEqual(Array(base.components.keys), ["backbone", "projector", "predictor"])
        do {
            let m = try LayoutResolver.resolve(T.doc(root), options: .init(select: "state_dict.module.momentum_encoder"))
            XCTAssertEqual(m.components["backbone"]!["conv1.weight"]!.floats()[0], 2)
            XCTAssertEqual(Array(m.components.keys), ["backbone", "projector"])
            XCTAssertEqual(m.droppedKeys.filter { $0.hasPrefix("state_dict.module.predictor.") }.count, 9, "\(m.droppedKeys)")
            XCTAssertTrue(m.rules.contains("dropped the predictor 'module.predictor.*' (9 keys): it belongs to 'state_dict.module.base_encoder', the network trained by gradient; its momentum copy 'state_dict.module.momentum_encoder', selected, has none (MoCo v3: the base encoder is trained by gradient, the momentum encoder is its moving average)"), "\(m.rules)")
            XCTAssertEqual(m.warnings, [])
        }
        // BYOL code that names the online predictor after its network: dropped the same way.
        let byol = try T.resnet(prefix: "online_network.encoder.", fc: false, seed: 1) + T.resnet(prefix: "target_network.encoder.", fc: false, seed: 2)
            + T.mlp("online_predictor.", [128, 16, 8])
        let t = try LayoutResolver.resolve(T.doc(.dict(byol)), options: .init(select: "target_network.encoder"))
        XCTAssertEqual(Array(t.components.keys), ["backbone"])
        XCTAssertEqual(t.droppedKeys.filter { $0.hasPrefix("online_predictor.") }.count, 9)
    }

    /// MoCo with one tensor missing from the query encoder: the key encoder, its momentum copy, is the
    /// only complete backbone, but importing it in the query encoder's place would hand the user the
    /// moving average; refused with what the query encoder lacks, until --select names the copy.
    func testMomentumCopyIsNotImportedInPlaceOfAnIncompleteTrainedNetwork() throws {
        var sd = try T.resnet(prefix: "module.encoder_q.", seed: 1) + T.resnet(prefix: "module.encoder_k.", seed: 2)
        sd.removeAll { $0.key.stringValue == "module.encoder_q.layer4.1.bn2.running_var" }
        let root = T.dict([("state_dict", .dict(sd))])
        for select in [nil, "state_dict", "state_dict.module"] {
            XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(root), options: .init(select: select))) { error in
                guard case .invalid(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
                XCTAssertTrue(m.hasPrefix("the network trained by gradient, 'state_dict.module.encoder_q', is incomplete: it holds "), m)
                XCTAssertTrue(m.contains("missing 1 (layer4.1.bn2.running_var)"), m)
                XCTAssertTrue(m.hasSuffix("the only complete backbone, 'state_dict.module.encoder_k', is its momentum copy (MoCo: the query encoder is trained by gradient, the key encoder is its momentum copy) and is not imported in its place: --select state_dict.module.encoder_k imports the momentum copy deliberately"), m)
            }
        }
        let k = try LayoutResolver.resolve(T.doc(root), options: .init(select: "state_dict.module.encoder_k"))
        XCTAssertEqual(k.components["backbone"]!["conv1.weight"]!.floats()[0], 2)
    }

    /// A file holding only the momentum copy (BYOL's target network, MoCo v3's momentum encoder,
    /// MoCo's key encoder) and a predictor outside it: the predictor belongs to the network trained by
    /// gradient, which the file does not hold, so it is dropped with a rule, as when the copy is
    /// selected beside its network. (It was kept as the copy's predictor.)
    func testAFileWithOnlyTheMomentumCopyDropsTheTrainedNetworksPredictor() throws {
        let byol = try T.resnet(prefix: "target_network.encoder.", fc: false, seed: 2) + T.mlp("target_network.projector.", [128, 16, 8])
            + T.mlp("predictor.", [8, 16, 8])
        let t = try LayoutResolver.resolve(T.doc(.dict(byol)))
        XCTAssertEqual(t.selector, "target_network.encoder")
        XCTAssertEqual(Array(t.components.keys), ["backbone", "projector"])
        XCTAssertEqual(Set(t.droppedKeys), Set(byol.compactMap { $0.key.stringValue }.filter { $0.hasPrefix("predictor.") }))
        XCTAssertTrue(t.rules.contains("dropped the predictor 'predictor.*' (9 keys): it belongs to 'online_network.encoder', the network trained by gradient, which this file does not hold; its momentum copy 'target_network.encoder', the only backbone, has none (BYOL: the online network is trained by gradient, the target network is its moving average)"), "\(t.rules)")
        XCTAssertEqual(t.warnings, [])

        let mocoV3 = try T.resnet(prefix: "module.momentum_encoder.", fc: false, seed: 2) + T.mlp("module.predictor.", [128, 16, 8])
        let m = try LayoutResolver.resolve(T.doc(T.dict([("state_dict", .dict(mocoV3))])))
        XCTAssertEqual(Array(m.components.keys), ["backbone"])
        XCTAssertTrue(m.rules.contains("dropped the predictor 'module.predictor.*' (9 keys): it belongs to 'state_dict.module.base_encoder', the network trained by gradient, which this file does not hold; its momentum copy 'state_dict.module.momentum_encoder', the only backbone, has none (MoCo v3: the base encoder is trained by gradient, the momentum encoder is its moving average)"), "\(m.rules)")

        let moco = try T.resnet(prefix: "encoder_k.", fc: false, seed: 2) + T.mlp("online_predictor.", [128, 16, 8])
        let k = try LayoutResolver.resolve(T.doc(.dict(moco)))
        XCTAssertEqual(Array(k.components.keys), ["backbone"])
        XCTAssertEqual(k.droppedKeys.filter { $0.hasPrefix("online_predictor.") }.count, 9)

        // A predictor on the copy's own side of the tree is the copy's: kept.
        let own = try T.resnet(prefix: "target_network.encoder.", fc: false, seed: 2) + T.mlp("target_network.projector.", [128, 16, 8])
            + T.mlp("target_network.predictor.", [8, 16, 8])
        XCTAssertEqual(Array(try LayoutResolver.resolve(T.doc(.dict(own))).components.keys), ["backbone", "projector", "predictor"])
    }

    /// The trained network beside its momentum copy, damaged past recognition as a ResNet (nothing
    /// left of it but its classifier, or backbone keys that fit no ResNet): still never replaced by
    /// the copy in silence. Refused, naming what it lacks against the copy's architecture, until
    /// --select names the copy; a file without any trained network imports the copy. (The copy was
    /// imported silently.)
    func testMomentumCopyIsNotImportedInPlaceOfATrainedNetworkNoLongerRecognisable() throws {
        let copy = try T.resnet(prefix: "module.encoder_k.", seed: 2)
        let onlyHead = try T.resnet(prefix: "module.encoder_q.", seed: 1).filter { $0.key.stringValue!.hasPrefix("module.encoder_q.fc.") }
        XCTAssertEqual(onlyHead.count, 2)
        let misfit: [ObjectValue.DictEntry] = [.init(key: .string("module.encoder_q.conv1.weight"), value: .tensor(T.tensor([3], seed: 1)))]
        for (name, damaged) in [("classifier only", onlyHead), ("misfit", misfit)] {
            let root = T.dict([("state_dict", .dict(damaged + copy))])
            for select in [nil, "state_dict", "state_dict.module"] {
                XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(root), options: .init(select: select)), name) { error in
                    guard case .invalid(let m) = error as? CheckpointError else { return XCTFail("\(name): \(error)") }
                    XCTAssertTrue(m.hasPrefix("the network trained by gradient, 'state_dict.module.encoder_q', is incomplete: it holds \(damaged.count) tensor\(damaged.count == 1 ? "" : "s"), "), m)
                    XCTAssertTrue(m.contains("keys a resnet50-w4-small requires (the architecture of its momentum copy; too few or misshapen to be recognised as a ResNet); differences: missing "), m)
                    XCTAssertTrue(m.hasSuffix("the only complete backbone, 'state_dict.module.encoder_k', is its momentum copy (MoCo: the query encoder is trained by gradient, the key encoder is its momentum copy) and is not imported in its place: --select state_dict.module.encoder_k imports the momentum copy deliberately"), m)
                }
            }
            let k = try LayoutResolver.resolve(T.doc(root), options: .init(select: "state_dict.module.encoder_k"))
            XCTAssertEqual(k.components["backbone"]!["conv1.weight"]!.floats()[0], 2, name)
        }
        let alone = try LayoutResolver.resolve(T.doc(T.dict([("state_dict", .dict(copy))])))
        XCTAssertEqual(alone.selector, "state_dict.module.encoder_k")
    }

    /// The preference applies only when one candidate is left once momentum copies are set aside:
    /// MoCo pairs in a model and in its EMA are two trained networks, refused until --select.
    func testMomentumPreferenceLeavesOtherAmbiguityAlone() throws {
        let pair = { (seed: Float) in try T.resnet(prefix: "encoder_q.", seed: seed) + T.resnet(prefix: "encoder_k.", seed: seed + 1) }
        let root = T.dict([("model", .dict(try pair(1))), ("model_ema", .dict(try pair(3)))])
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(root))) { error in
            guard case .ambiguous(let m) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.hasPrefix("4 complete ResNet backbones found"), m)
        }
        let ema = try LayoutResolver.resolve(T.doc(root), options: .init(select: "model_ema"))
        XCTAssertEqual(ema.selector, "model_ema.encoder_q")
        XCTAssertEqual(ema.components["backbone"]!["conv1.weight"]!.floats()[0], 3)
    }

    func testStrayTensorsAreAWarningInTheProvenance() throws {
        var sd = try T.resnet(depth: 18)
        sd.append(.init(key: .string("ema_decay"), value: .tensor(T.tensor([], seed: 0.999))))
        sd.append(.init(key: .string("foo"), value: .tensor(T.tensor([3], seed: 0))))
        let document = T.doc(.dict(sd))
        let r = try LayoutResolver.resolve(document)
        XCTAssertEqual(r.warnings, ["dropped 2 tensors that are not part of the model: ema_decay, foo"])
        XCTAssertFalse(r.rules.contains { $0.contains("ema_decay") }, "\(r.rules)")
        XCTAssertEqual(Set(r.droppedKeys), ["ema_decay", "foo"])
    }

    func testOptimizerStateIsNeverACandidateAndIsDropped() throws {
        let momentum = T.dict((0..<200).map { (String($0), T.dict([("momentum_buffer", .tensor(T.tensor([2], seed: 0)))])) })
        let optimizer = T.dict([("state", momentum), ("param_groups", .list([T.dict([("lr", .float(0.1))])]))])
        let root = T.dict([("epoch", .int(10)), ("state_dict", .dict(try T.resnet(prefix: "module."))),
                           ("optimizer", optimizer), ("best_acc1", .float(0.5))])
        let r = try LayoutResolver.resolve(T.doc(root))
        XCTAssertEqual(r.keyPath, "state_dict")
        XCTAssertEqual(Set(r.droppedKeys), ["epoch", "optimizer", "best_acc1"])
        XCTAssertTrue(r.rules.contains("dropped optimizer state at 'optimizer'"), "\(r.rules)")
        XCTAssertEqual(LayoutResolver.candidates(T.doc(root)).map(\.keyPath), ["state_dict"])

        // An optimizer nested in another sub-tree is named too; the sub-tree is listed once.
        let nested = T.dict([("model", .dict(try T.resnet(depth: 18))), ("train", T.dict([("optimizer", optimizer), ("step", .int(4))]))])
        let n = try LayoutResolver.resolve(T.doc(nested))
        XCTAssertEqual(n.droppedKeys, ["train"])
        XCTAssertTrue(n.rules.contains("dropped optimizer state at 'train.optimizer'"), "\(n.rules)")
    }

    func testStripPrefixMustBeSharedByEveryKey() throws {
        let sd = try T.resnet(prefix: "encoder.", fc: false) + T.mlp("predictor.", [128, 8, 4])
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(.dict(sd)), options: .init(stripPrefix: "encoder."))) { error in
            XCTAssertEqual(error as? CheckpointError, .ambiguous("--strip-prefix 'encoder.': 9 of 327 keys in the root dict do not start with it (predictor.0.weight, predictor.0.bias, predictor.1.weight, ...); a prefix is stripped only when every key has it"))
        }
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(.dict(try T.resnet(prefix: "module."))), options: .init(stripPrefix: "model.")))
        // A prefix is whole key segments: 'mod' does not strip 'module.'; 'module' means 'module.'.
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(.dict(try T.resnet(prefix: "module."))), options: .init(stripPrefix: "mod"))) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("--strip-prefix 'mod': no key starts with 'mod.' (a prefix is whole dot-separated parts of a key, e.g. 'module.')"))
        }
        let noDot = try LayoutResolver.resolve(T.doc(.dict(try T.resnet(prefix: "module."))), options: .init(stripPrefix: "module"))
        XCTAssertEqual(noDot.strippedPrefix, "module.")
        XCTAssertNotNil(noDot.components["backbone"]?["conv1.weight"])
        let ok = try LayoutResolver.resolve(T.doc(.dict(try T.resnet(prefix: "module."))), options: .init(stripPrefix: "module."))
        XCTAssertEqual(ok.strippedPrefix, "module.")
    }

    func testWrongShapeInTheOnlyCandidateIsNamed() throws {
        var sd = try T.resnet()
        let i = sd.firstIndex { $0.key.stringValue == "layer3.1.conv2.weight" }!
        sd[i].value = .tensor(T.tensor([64, 64, 1, 1], seed: 0))
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(.dict(sd)))) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("no complete ResNet backbone: the closest, the root dict, holds 265 of the 265 keys a resnet50-w4-small requires (architecture guessed from the keys present); differences: wrong shape 1 (layer3.1.conv2.weight: found [64, 64, 1, 1], expected [16, 16, 3, 3])"))
        }
        // Selecting it explicitly gives the strict validation error.
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(.dict(sd)), options: .init(select: ""))) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("'<root>': not a valid resnet50-w4-small backbone: wrong shape 1 (layer3.1.conv2.weight: found [64, 64, 1, 1], expected [16, 16, 3, 3])"))
        }
    }

    func testNoResNetIsNamed() {
        let root = T.dict([("encoder.blocks.0.attn.qkv.weight", .tensor(T.tensor([6, 2], seed: 0)))])
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(root))) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("no ResNet backbone keys (conv1.*, bn1.*, layerN.*) in 1 dict(s) of tensors; first keys: encoder.blocks.0.attn.qkv.weight"))
        }
        XCTAssertThrowsError(try LayoutResolver.resolve(T.doc(T.dict([("epoch", .int(1))])))) { error in
            XCTAssertEqual(error as? CheckpointError, .invalid("no dict of tensors found in this pytorch-zip file"))
        }
    }

    // C6 and C16: aliases and location tags.
    func testAliasesAndLocations() throws {
        var sd = try T.resnet(depth: 18)
        let a = sd.firstIndex { $0.key.stringValue == "layer1.0.bn1.running_mean" }!
        let b = sd.firstIndex { $0.key.stringValue == "layer1.0.bn2.running_mean" }!
        sd[b].value = sd[a].value
        // Same storage, different offset: not an alias.
        if case .tensor(var t) = sd[a + 1].value, case .tensor(let base) = sd[a].value {
            t.storageKey = base.storageKey; t.storageOffset = 4; sd[a + 1].value = .tensor(t)
        }
        let c = sd.firstIndex { $0.key.stringValue == "fc.weight" }!
        if case .tensor(var t) = sd[c].value { t.location = "cuda:1"; sd[c].value = .tensor(t) }
        let r = try LayoutResolver.resolve(T.doc(.dict(sd)))
        XCTAssertEqual(r.aliases, ["layer1.0.bn2.running_mean": "layer1.0.bn1.running_mean"])
        XCTAssertEqual(r.locations, ["cpu", "cuda:1"])
    }

    func testListsAreSearchedWithIndexKeyPaths() throws {
        let root = T.dict([("models", .list([.int(0), .dict(try T.resnet(depth: 18))]))])
        let r = try LayoutResolver.resolve(T.doc(root))
        XCTAssertEqual(r.keyPath, "models.1")
        XCTAssertEqual(r.architecture.depth, 18)
    }

    func testDegenerateBatchNormStatisticsAreWarned() throws {
        var sd = try T.resnet(depth: 18)
        let i = sd.firstIndex { $0.key.stringValue == "layer1.0.bn1.running_var" }!
        sd[i].value = .tensor(SourceTensor(tensor: Tensor(float32: [0, -1, .infinity, 1], shape: [4])))
        let r = try LayoutResolver.resolve(T.doc(.dict(sd)))
        XCTAssertEqual(r.warnings, ["backbone layer1.0.bn1.running_var: 1 zero, 1 negative, 1 inf of 4 values (degenerate BatchNorm statistics)"])
    }
}
