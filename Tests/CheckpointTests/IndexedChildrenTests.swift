@testable import Checkpoint
import Collections
import Foundation
import XCTest
import TestSupport

/// A ResNet saved as torchvision's children in an `nn.Sequential` (`encoder.0.weight` = conv1,
/// `encoder.1.*` = bn1, `encoder.4`-`encoder.7` = layer1-layer4): the file sthalles/PyTorch-BYOL saves
/// (Tests/Fixtures/layout/byol_sequential.pth, tools/fixtures/make_byol_sequential_fixture.py) and trees built here.
final class IndexedChildrenTests: XCTestCase {
    typealias T = LayoutTrees

    /// torchvision's name of a key of the indexed form, by the table of `ResNet.children()` written
    /// out here (not the code under test): 0 conv1, 1 bn1, 4-7 layer1-layer4.
    static func torchvisionName(_ indexed: String) -> String {
        let table = ["0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"]
        let first = String(indexed.prefix { $0 != "." })
        return table[first]! + indexed.dropFirst(first.count)
    }

    /// `prefix + <indexed key>` entries of a ResNet backbone (no fc), from the torchvision-named tree.
    static func indexed(prefix: String, depth: Int = 50, seed: Float) throws -> [ObjectValue.DictEntry] {
        let inverse = ["conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"]
        return try T.resnet(depth: depth, fc: false, seed: seed).map { e in
            let key = e.key.stringValue!
            let first = String(key.prefix { $0 != "." })
            return .init(key: .string(prefix + inverse[first]! + key.dropFirst(first.count)), value: e.value)
        }
    }

    static func tensors(_ entries: [ObjectValue.DictEntry]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for e in entries { if case .tensor(let t) = e.value { out[e.key.keyText] = t.tensor } }
        return out
    }

    static func sourceTensors(_ entries: some Sequence<ObjectValue.DictEntry>) -> OrderedDictionary<String, SourceTensor> {
        var out = OrderedDictionary<String, SourceTensor>()
        for e in entries { if case .tensor(let t) = e.value { out[e.key.keyText] = t } }
        return out
    }

    // MARK: the published layout

    func testTheBYOLFileImportsTheOnlineEncoderAndProjectorWithTheFilesTensors() throws {
        let doc = try PyTorchFile.read(Fixtures.url("layout/byol_sequential.pth"))
        guard case .dict(let root) = doc.root,
              case .dict(let onlineEntries)? = root.first(where: { $0.key.keyText == "online_network_state_dict" })?.value else {
            return XCTFail("no online_network_state_dict in the fixture")
        }
        let online = Self.tensors(onlineEntries)
        let r = try LayoutResolver.resolve(doc)
        XCTAssertEqual(r.selector, "online_network_state_dict.encoder")
        XCTAssertEqual(r.architecture.label, "resnet18-w1")
        XCTAssertEqual(r.branch, "online_network_state_dict")
        XCTAssertTrue(r.rules.contains(IndexedChildren.rule(prefix: "encoder.")), "\(r.rules)")
        XCTAssertTrue(r.rules.contains("chose 'online_network_state_dict.encoder' over its momentum copy 'target_network_state_dict.encoder' (BYOL: the online network is trained by gradient, the target network is its moving average); --select target_network_state_dict.encoder picks the copy"), "\(r.rules)")
        // Every backbone tensor is the file's tensor under its indexed name, and every indexed key is kept.
        let backbone = r.components["backbone"]!
        let indexedKeys = online.keys.filter { $0.hasPrefix("encoder.") }
        XCTAssertEqual(backbone.count, indexedKeys.count)
        for key in indexedKeys {
            let name = Self.torchvisionName(String(key.dropFirst("encoder.".count)))
            XCTAssertEqual(backbone[name], online[key], key)
        }
        // The projector `projetion.net.*` (Linear 8->16, BatchNorm1d, ReLU, Linear 16->4) is the MLP head.
        XCTAssertEqual(r.architecture.heads["projector"]?.dims, [8, 16, 4])
        let projector = r.components["projector"]!
        XCTAssertEqual(Set(projector.keys), Set(online.keys.filter { $0.hasPrefix("projetion.net.") }.map { String($0.dropFirst("projetion.net.".count)) }))
        for (key, t) in projector { XCTAssertEqual(t, online["projetion.net." + key], key) }
        XCTAssertEqual(Set(r.droppedKeys), ["target_network_state_dict", "optimizer_state_dict"])
        XCTAssertTrue(r.rules.contains("dropped optimizer state at 'optimizer_state_dict'"), "\(r.rules)")
    }

    func testTheTargetNetworkIsSelectable() throws {
        let doc = try PyTorchFile.read(Fixtures.url("layout/byol_sequential.pth"))
        let r = try LayoutResolver.resolve(doc, options: .init(select: "target_network_state_dict.encoder"))
        XCTAssertEqual(r.selector, "target_network_state_dict.encoder")
        XCTAssertTrue(r.rules.contains(IndexedChildren.rule(prefix: "encoder.")), "\(r.rules)")
        XCTAssertNotNil(r.components["projector"])
        XCTAssertTrue(r.droppedKeys.contains("online_network_state_dict"))
    }

    /// `inspect` lists the two networks, never a residual block of them as a ResNet of its own.
    func testCandidatesAreTheTwoNetworksOnly() throws {
        let cs = LayoutResolver.candidates(try PyTorchFile.read(Fixtures.url("layout/byol_sequential.pth")))
        XCTAssertEqual(cs.map(\.selector), ["online_network_state_dict.encoder", "target_network_state_dict.encoder"], "\(cs.map(\.line))")
        XCTAssertTrue(cs.allSatisfy { $0.complete && $0.architecture?.label == "resnet18-w1" }, "\(cs.map(\.line))")
    }

    // MARK: trees

    /// Under any prefix, bare (a Sequential saved alone), and with both networks in one dict: the
    /// unselected one is dropped under the names the file gives its keys.
    func testAnyPrefixAndDroppedKeysKeepTheirSourceNames() throws {
        for prefix in ["", "module.backbone.", "model.encoder."] {
            let entries = try Self.indexed(prefix: prefix, seed: 1)
            let r = try LayoutResolver.resolve(T.doc(.dict(entries)))
            XCTAssertEqual(r.strippedPrefix, prefix.isEmpty ? nil : prefix)
            XCTAssertEqual(r.architecture.label, "resnet50-w4-small", prefix)
            XCTAssertTrue(r.rules.contains(IndexedChildren.rule(prefix: prefix)), "\(prefix): \(r.rules)")
            let source = Self.tensors(entries)
            XCTAssertEqual(r.components["backbone"]!.count, source.count)
            for (key, t) in source { XCTAssertEqual(r.components["backbone"]![Self.torchvisionName(String(key.dropFirst(prefix.count)))], t, key) }
        }
        let both = try Self.indexed(prefix: "online_network.encoder.", seed: 1) + Self.indexed(prefix: "target_network.encoder.", seed: 2)
        let r = try LayoutResolver.resolve(T.doc(.dict(both)))
        XCTAssertEqual(r.selector, "online_network.encoder")
        let targetKeys = both.map(\.key.keyText).filter { $0.hasPrefix("target_network.") }
        XCTAssertEqual(Set(r.droppedKeys), Set(targetKeys))
        XCTAssertTrue(r.droppedKeys.contains("target_network.encoder.4.0.conv1.weight"), "\(r.droppedKeys.prefix(3))")
    }

    /// Keys that only look indexed are left alone: a child index holding no tensors in torchvision
    /// (3 is maxpool) or torchvision names beside the indices.
    func testOtherIndexedModulesAreNotRenamed() throws {
        var entries = try Self.indexed(prefix: "encoder.", seed: 1)
        entries.append(.init(key: .string("encoder.3.weight"), value: .tensor(T.tensor([4], seed: 9))))
        let renamed = IndexedChildren.rename(Self.sourceTensors(entries))
        XCTAssertTrue(renamed.prefixes.isEmpty)
        XCTAssertTrue(renamed.sourceNames.isEmpty)
        // An MLP (`0.weight` 2-d) is no ResNet stem.
        let mlp = T.mlp("projector.", [8, 16, 4])
        XCTAssertTrue(IndexedChildren.rename(Self.sourceTensors(mlp)).prefixes.isEmpty)
        // The same keys without the stray index are renamed.
        XCTAssertEqual(IndexedChildren.rename(Self.sourceTensors(entries.dropLast())).prefixes, ["encoder."])
    }

    /// A residual block (`conv1 bn1 conv2 bn2`, with or without a downsample) is never a candidate
    /// ResNet; before this rule each block of an unrecognised indexed ResNet was listed as one.
    func testResidualBlocksAreNoCandidates() throws {
        var entries = try Self.indexed(prefix: "encoder.", depth: 18, seed: 1)
        entries.append(.init(key: .string("encoder.3.weight"), value: .tensor(T.tensor([4], seed: 9))))
        let cs = LayoutResolver.candidates(T.doc(.dict(entries)))
        XCTAssertEqual(cs.count, 1, "\(cs.map(\.line))")
        XCTAssertNil(cs[0].architecture)
        XCTAssertNil(cs[0].misfit, "\(cs.map(\.line))")
    }
}
