import Checkpoint
import XCTest
@testable import Training
import TestSupport

/// `RecordedSettings`: the camelCase spelling of recorded settings and the lookup that also finds the
/// snake_case (and kebab-case) spelling of entries and runs written before it. Expected strings are
/// written out by hand.
final class RunRecordedSettingsTests: XCTestCase {
    func testSpellings() {
        XCTAssertEqual(RecordedSettings.camelCase("image_size"), "imageSize")
        XCTAssertEqual(RecordedSettings.camelCase("ema-decay"), "emaDecay")
        XCTAssertEqual(RecordedSettings.camelCase("checkpoint_every"), "checkpointEvery")
        XCTAssertEqual(RecordedSettings.camelCase("trial0_top1"), "trial0Top1")
        XCTAssertEqual(RecordedSettings.camelCase("imageSize"), "imageSize")
        XCTAssertEqual(RecordedSettings.camelCase("run.segments"), "run.segments")
        XCTAssertEqual(RecordedSettings.camelCase("_private"), "_private")
        XCTAssertEqual(RecordedSettings.snakeCase("imageSize"), "image_size")
        XCTAssertEqual(RecordedSettings.snakeCase("chosenLR"), "chosen_lr")
        XCTAssertEqual(RecordedSettings.snakeCase("noIJ"), "no_ij")
        XCTAssertEqual(RecordedSettings.snakeCase("dLRScale"), "d_lr_scale")
        XCTAssertEqual(RecordedSettings.snakeCase("seed"), "seed")
        XCTAssertEqual(RecordedSettings.spellings("emaDecay"), ["emaDecay", "ema_decay", "ema-decay"])
        XCTAssertEqual(RecordedSettings.spellings("lr"), ["lr"])
    }

    func testLookupPrefersCamelCaseAndFindsTheOldSpelling() {
        let old: [String: JSONValue] = ["image_size": .int(16), "batch_size": .double(64), "pixel-scale": .string("unit")]
        XCTAssertEqual(RecordedSettings.integer("imageSize", in: old), 16)
        XCTAssertEqual(RecordedSettings.integer("batchSize", in: old), 64)
        XCTAssertEqual(RecordedSettings.number("batchSize", in: old), 64)
        XCTAssertEqual(RecordedSettings.string("pixelScale", in: old), "unit")
        XCTAssertNil(RecordedSettings.string("imageSize", in: old), "not a string")
        XCTAssertNil(RecordedSettings.integer("steps", in: old))
        XCTAssertNil(RecordedSettings.integer("x", in: ["x": .double(2.5)]), "not an integer")
        let both: [String: JSONValue] = ["imageSize": .int(32), "image_size": .int(16)]
        XCTAssertEqual(RecordedSettings.integer("imageSize", in: both), 32)
        XCTAssertEqual(Provenance(stage: "finetune", hyperparameters: old).recordedSetting("imageSize"), .int(16))
    }

    func testCamelCasedConfig() {
        let config: [String: JSONValue] = ["batch_size": .int(8), "random_init": .bool(true), "lr": .double(0.1),
                                           "image_size": .int(16), "imageSize": .int(32)]
        XCTAssertEqual(RecordedSettings.camelCased(config),
                       ["batchSize": .int(8), "randomInit": .bool(true), "lr": .double(0.1), "imageSize": .int(32)])
    }

    /// A fine-tuning trial record saved in a training state before camelCase keys still reads.
    func testOldTrialRecordReads() throws {
        let old: JSONValue = .object(["trial": .int(1), "lr": .double(0.1), "wd": .double(0.001), "best_top1": .double(50),
                                      "best_epoch": .int(2), "val_top1": .array([.double(40), .double(50)]), "top1": .double(50)])
        let trial = try FineTuneTrial(json: old)
        XCTAssertEqual(trial.index, 1)
        XCTAssertEqual(trial.bestTop1, 50)
        XCTAssertEqual(trial.bestEpoch, 2)
        XCTAssertEqual(trial.valTop1, [40, 50])
        XCTAssertEqual(trial.top1, 50)
        guard case .object(let now) = trial.json else { return XCTFail("not an object") }
        XCTAssertEqual(now["bestTop1"], .double(50))
        XCTAssertEqual(now["valTop1"], .array([.double(40), .double(50)]))
    }
}
