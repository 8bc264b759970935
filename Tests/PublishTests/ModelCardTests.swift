import Checkpoint
import Foundation
@testable import Publish
import XCTest

/// The card states what the lineage records and nothing else; its YAML front matter is checked by
/// huggingface_hub's parser in tools/interop/test_card_hub.py.
final class ModelCardTests: XCTestCase {
    static let parentID = String(repeating: "a", count: 64)
    static let childID = String(repeating: "b", count: 64)

    static func lineage(license: String? = nil, val: Bool = true) -> CardLineage {
        var source = Provenance.Source(fileName: "r18.pth", sha256: String(repeating: "c", count: 64), format: "pth", container: "zip",
                                       rules: ["stripped prefix module."])
        if let license { source.metadata["license"] = license }
        let parent = Provenance(stage: "imported", source: source, commandLine: ["bissl", "import", "r18.pth"], endedAt: "2026-01-01T00:00:00Z")
        var datasets = [Provenance.Dataset(role: "downstream-train", uri: "h5:digits.h5#train", fingerprint: String(repeating: "d", count: 64))]
        if val { datasets.append(.init(role: "downstream-val", uri: "h5:digits.h5#val", fingerprint: String(repeating: "e", count: 64))) }
        let child = Provenance(stage: "finetune", method: "finetune", parents: [.init(id: parentID, relation: "finetuned-from", note: "classifier kept")],
                               datasets: datasets, hyperparameters: ["lr": .double(0.1), "note": .string("a | b")],
                               seeds: ["init": 3], metrics: ["top1": 91.25, "best_top1": 92.5, "top1_ci_low": 90.0, "top1_ci_high": 92.0, "loss": .nan],
                               warnings: ["one warning"], commandLine: ["bissl", "finetune", "r18", "--name", "it's"])
        return CardLineage(stages: [
            .init(id: parentID, labels: ["r18"], status: "listed", provenance: parent, arch: "resnet18", components: ["backbone", "classifier"]),
            .init(id: childID, labels: ["ft", "best"], status: "listed", provenance: child, arch: "resnet18", components: ["backbone", "classifier"]),
        ])
    }

    func testFrontMatter() {
        let yaml = ModelCard.frontMatter(Self.lineage())
        XCTAssertEqual(yaml, """
            ---
            library_name: "bissl"
            tags:
              - "bissl"
              - "resnet"
              - "resnet18"
              - "image-classification"
              - "finetune"
            datasets:
              - "h5:digits.h5#train"
              - "h5:digits.h5#val"
            base_model: "\(Self.parentID)"
            base_model_relation: "finetune"
            pipeline_tag: "image-classification"
            metrics:
              - "accuracy"
            model-index:
              - name: "ft"
                results:
                  - task:
                      type: "image-classification"
                      name: "Image Classification"
                    dataset:
                      name: "h5:digits.h5#val"
                      type: "h5:digits.h5#val"
                      split: "downstream-val"
                    metrics:
                      - type: "accuracy"
                        value: 91.25
                        name: "top-1 accuracy, final epoch of the chosen trial"
                      - type: "accuracy"
                        value: 92.5
                        name: "top-1 accuracy, best epoch of the chosen trial"
            ---

            """)
    }

    func testLicenseOnlyWhenRecordedAndNoModelIndexWithoutTheDataItWasMeasuredOn() {
        XCTAssertTrue(ModelCard.frontMatter(Self.lineage(license: "apache-2.0")).contains("\nlicense: \"apache-2.0\"\n"))
        let card = ModelCard.render(Self.lineage(val: false), preprocessing: .init(imageSize: nil))
        XCTAssertFalse(card.contains("license"))
        XCTAssertFalse(card.contains("model-index"))
        XCTAssertFalse(card.contains("## Evaluation"))
    }

    func testBodyStatesTheRecordedFields() {
        let card = ModelCard.render(Self.lineage(), preprocessing: .init(imageSize: nil))
        for expected in [
            "| 1 | `\(Self.parentID)` | r18 | imported |",
            "| 2 | `\(Self.childID)` | ft, best | finetune | finetune | finetuned-from `aaaaaaaaaaaa`: classifier kept |",
            "| downstream-val | h5:digits.h5#val | `\(String(repeating: "e", count: 64))` |",
            "| `top1`: top-1 accuracy, final epoch of the chosen trial | 91.25 | [90.0, 92.0] | h5:digits.h5#val (downstream-val) |",
            "| `note` | a \\| b |",
            "- seed `init`: 3",
            "  - rule: stripped prefix module.",
            "- one warning",
            "bissl finetune r18 --name 'it'\\''s'",
            "| `loss` | nan |",
        ] {
            XCTAssertTrue(card.contains(expected), "missing: \(expected)\n\(card)")
        }
        // Nothing the lineage lacks: no started time was recorded, so none is stated.
        XCTAssertFalse(card.contains("started:"))
    }

    /// The card says in words how images are prepared, as the hub folder's config.json states it: for
    /// an imported entry that nothing records it and that config.json's input size 224 is an
    /// assumption when no stage records one (the card said nothing of either); for an entry a bissl
    /// stage made, bissl's evaluation transform and the recorded size.
    func testThePreprocessingSectionSaysWhatConfigJSONStatesAndAssumes() {
        var imported = Self.lineage()
        imported.stages.removeLast()
        let card = ModelCard.render(imported, preprocessing: .init(imageSize: nil))
        let section = card.components(separatedBy: "\n## Preprocessing\n\n").dropFirst().first?.components(separatedBy: "\n## ").first
        XCTAssertEqual(section, "Not recorded: the entry was imported and its source states no preprocessing. A hub folder written "
            + "from it (`bissl export --to hub`) leaves `interpolation`, `crop_pct`, `crop_mode`, `mean` and `std` out of its "
            + "`config.json`, as `bissl.preprocessing` there says; readers such as timm then apply their own defaults. "
            + "Input size: not recorded by any stage. The hub folder's `input_size` [3, 224, 224] is an assumption "
            + "(torchvision's convention), not a record, as `bissl.input_size` there says.\n", card)
        XCTAssertTrue(card.contains("\n## Preprocessing\n\nNot recorded"), "before the stages: \(card)")
        XCTAssertTrue(card.range(of: "## Preprocessing")!.lowerBound < card.range(of: "## Stages")!.lowerBound)

        let trained = ModelCard.render(Self.lineage(), preprocessing: .init(imageSize: 32))
        XCTAssertTrue(trained.contains("\n## Preprocessing\n\nbissl's evaluation transform, which the `finetune` stage used: shorter side resized to S * 256 / 224 (bilinear), centre crop of S x S,"), trained)
        XCTAssertTrue(trained.contains(" Input size: 32 x 32 (S = 32), the image size the lineage records (`input_size` [3, 32, 32]).\n"), trained)
        XCTAssertFalse(trained.contains("assumption"), trained)
    }

    /// `lineage()` whose parent was imported from a bissl .h5 claiming a self-supervised stage, a
    /// parent of its own and the data it was trained on (`carriedFrom` set).
    static func carriedParentLineage() -> CardLineage {
        var l = lineage()
        var claim = Provenance(
            stage: "pretext", method: "simclr", parents: [.init(id: String(repeating: "f", count: 64), relation: "pretrained-from")],
            datasets: [.init(role: "train", uri: "h5:/secret/imagenet.h5", fingerprint: String(repeating: "c", count: 64))],
            hyperparameters: ["imageSize": .int(96)], metrics: ["knn_top1": 99.5], tool: .init(name: "bissl", version: "9.9.9"))
        claim.carriedFrom = [.init(fileName: "claims.h5", sha256: String(repeating: "0", count: 64), commandLine: ["bissl", "import", "claims.h5"],
                                   importedAt: "2026-01-02T00:00:00Z")]
        l.stages[0].provenance = claim
        return l
    }

    /// A carried record, the entry's or an ancestor's, is an imported file's claim: the front matter,
    /// which readers take as fact, publishes none of its data or method (it listed the claimed
    /// dataset and tagged `simclr`, `self-supervised`); the entry's own stage's data stays; the Data
    /// table marks the carried row (it was unmarked).
    func testNoFrontMatterFieldComesFromACarriedRecordAndItsDataRowIsMarked() {
        let l = Self.carriedParentLineage()
        let yaml = ModelCard.frontMatter(l)
        for claim in ["h5:/secret/imagenet.h5", "simclr", "self-supervised"] {
            XCTAssertFalse(yaml.contains(claim), "\(claim) in:\n\(yaml)")
        }
        XCTAssertTrue(yaml.contains("datasets:\n  - \"h5:digits.h5#train\"\n  - \"h5:digits.h5#val\"\n"), yaml)
        XCTAssertTrue(yaml.contains("base_model: \"\(Self.parentID)\"\n"), "the parent is held by the zoo: \(yaml)")
        let card = ModelCard.render(l, preprocessing: .init(imageSize: nil))
        XCTAssertTrue(card.contains("| `aaaaaaaaaaaa` pretext (*carried*) | train | h5:/secret/imagenet.h5 | `\(String(repeating: "c", count: 64))` |\n"), card)
        XCTAssertTrue(card.contains("| `bbbbbbbbbbbb` finetune | downstream-train | h5:digits.h5#train |"), card)

        // The carried entry itself: no data in the front matter, and no preprocessing stated for the
        // stage it claims (the card stated bissl's transform for the claimed 'pretext' stage).
        var own = l
        own.stages.removeLast()
        let ownCard = ModelCard.render(own, preprocessing: .init(imageSize: nil))
        XCTAssertFalse(ModelCard.frontMatter(own).contains("datasets"), ownCard)
        XCTAssertTrue(ownCard.contains("\n## Preprocessing\n\nNot recorded: the entry was imported from `claims.h5`, whose record (stage `pretext`) is that file's claim (*carried*), so bissl does not state its preprocessing. A hub folder written from it"), ownCard)
        XCTAssertFalse(ownCard.contains("bissl's evaluation transform"), ownCard)
    }

    func testUnknownParentIsListedWithoutClaims() {
        var l = Self.lineage()
        l.stages[0] = .init(id: Self.parentID, labels: [], status: "unknown", provenance: nil, arch: nil)
        let card = ModelCard.render(l, preprocessing: .init(imageSize: nil))
        XCTAssertTrue(card.contains("| 1 | `\(Self.parentID)` (unknown) |"))
        XCTAssertTrue(card.contains("Named as a parent, but this zoo never held it: nothing is recorded."))
    }

    func testYAMLScalarsCannotChangeType() {
        XCTAssertEqual(YAMLValue.map([("k", .string("yes")), ("a b", .string("x\"\n")), ("n", .number(1e-5))]).text(indent: 0),
                       "\nk: \"yes\"\n\"a b\": \"x\\\"\\n\"\nn: 1.0e-05")
        XCTAssertEqual(YAMLValue.list([]).text(indent: 0), " []")
    }
}
