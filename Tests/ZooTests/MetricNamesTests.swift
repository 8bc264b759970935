import Checkpoint
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// `bissl list` never shows two meanings under one name: the METRIC column carries the split and the
/// model part (`val_top1`, `upper_val_top1`, `pretext_loss`), also for entries written with the older
/// ambiguous names (`top1` of a fine-tuning was a validation figure, `val_top1` of an alignment the
/// upper model's, `loss` of pretraining the pretext loss).
final class MetricNamesTests: XCTestCase {
    func testOlderNamesAreShownWithTheirMeaning() {
        XCTAssertEqual(MetricNames.meaningful("top1", stage: "finetune"), "val_top1")
        XCTAssertEqual(MetricNames.meaningful("best_top1", stage: "finetune"), "best_val_top1")
        XCTAssertEqual(MetricNames.meaningful("trial3_top1", stage: "finetune"), "trial3_val_top1")
        XCTAssertEqual(MetricNames.meaningful("trial3_val_top1", stage: "finetune"), "trial3_val_top1")
        XCTAssertEqual(MetricNames.meaningful("val_top1", stage: "bissl"), "upper_val_top1")
        XCTAssertEqual(MetricNames.meaningful("val_top1_warmup", stage: "bissl"), "upper_val_top1_warmup")
        XCTAssertEqual(MetricNames.meaningful("upper_val_top1", stage: "bissl"), "upper_val_top1")
        XCTAssertEqual(MetricNames.meaningful("loss", stage: "pretext"), "pretext_loss")
        XCTAssertEqual(MetricNames.meaningful("top1", stage: "imported"), "top1", "an imported entry's names are its own")
        XCTAssertEqual(MetricNames.meaningful("val_top1", stage: "finetune"), "val_top1")
    }

    func testListShowsOneMeaningPerName() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let layout = ZooLayout(root: dir.appendingPathComponent("zoo"))
        let zoo = try Zoo.open(layout, create: true)
        let pre = try zoo.add(ZooTestSupport.checkpoint(seed: 400, stage: "pretext", method: "simclr", metrics: ["loss": 4.5]), name: "old-pre").id
        let aligned = try zoo.add(ZooTestSupport.checkpoint(seed: 401, stage: "bissl", method: "simclr", parents: [.init(id: pre, relation: "aligned-from")],
                                                            metrics: ["val_top1": 23.5, "val_top1_best": 25]), name: "old-bissl").id
        _ = try zoo.add(ZooTestSupport.checkpoint(seed: 402, stage: "finetune", parents: [.init(id: aligned, relation: "finetuned-from")],
                                                  metrics: ["top1": 80, "best_top1": 81, "best_epoch": 3]), name: "old-ft")
        _ = try zoo.add(ZooTestSupport.checkpoint(seed: 403, stage: "finetune", parents: [.init(id: aligned, relation: "finetuned-from")],
                                                  metrics: ["val_top1": 70, "best_val_top1": 71, "best_epoch": 3]), name: "new-ft")
        _ = try zoo.add(ZooTestSupport.checkpoint(seed: 404, stage: "bissl", method: "simclr", parents: [.init(id: pre, relation: "aligned-from")],
                                                  metrics: ["upper_val_top1": 30, "upper_val_top1_best": 31]), name: "new-bissl")
        try zoo.close()
        let r = try BisslBinary.run(["list", "--zoo", layout.root.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        func row(_ name: String) -> String { r.stdout.split(separator: "\n").first { $0.contains(" \(name) ") }.map(String.init) ?? "" }
        XCTAssertTrue(row("old-pre").contains("pretext_loss=4.5"), r.stdout)
        XCTAssertTrue(row("old-bissl").contains("upper_val_top1=23.5"), r.stdout)
        XCTAssertTrue(row("new-bissl").contains("upper_val_top1=30"), r.stdout)
        XCTAssertTrue(row("old-ft").contains("val_top1=80"), r.stdout)
        XCTAssertTrue(row("new-ft").contains("val_top1=70"), r.stdout)
        XCTAssertFalse(r.stdout.contains(" top1=") || r.stdout.contains(" loss="), r.stdout)

        // eval of an aligned entry would pair θ_P with φ_D, which belongs to θ_D: refused with what to do.
        let e = try BisslBinary.run(["eval", "old-bissl", "--data", "h5:/nonexistent.h5", "--zoo", layout.root.path])
        XCTAssertNotEqual(e.status, 0)
        XCTAssertEqual(e.stderr, "error: entry \(aligned.prefix(12)) is a BiSSL alignment: its backbone is θ_P and its classifier φ_D belongs to θ_D, so they do not make a model together; fine-tune it (bissl finetune \(aligned.prefix(12)) --data URI) and evaluate that, evaluate its upper model (align --keep-upper), or measure its features with bissl probe \(aligned.prefix(12)) --data URI\n")
    }
}
