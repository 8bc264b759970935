import Checkpoint
import Datasets
import Foundation

/// Opening the labelled datasets of `bissl probe`, `eval` and `finetune`, with their defaults.
public enum DownstreamData {
    /// Opens `uri`.
    /// - Throws: `TrainingError.invalid` with the dataset's one-line reason, prefixed by `role`
    ///   (`--data`, `--val`, ...).
    public static func open(_ uri: String, role: String) throws -> ImageDataset {
        do {
            let data = try ImageDataset(parsing: uri)
            guard data.count > 0 else { throw TrainingError.invalid("\(role) \(uri) has no images") }
            return data
        } catch let e as TrainingError {
            throw e
        } catch {
            throw TrainingError.invalid("\(role) \(uri): \(error)")
        }
    }

    /// The default evaluation data for training data `uri`: the same dataset's `test` part, without
    /// a split file (`idx:DIR#split=a.txt` -> `idx:DIR#part=test`).
    /// - Throws: `TrainingError.invalid` for an unparsable URI.
    public static func testPart(of uri: String) throws -> String {
        do {
            var u = try DatasetURI(parsing: uri)
            u.part = .test
            u.partGiven = true
            u.splitFile = nil
            return u.description
        } catch {
            throw TrainingError.invalid("--data \(uri): \(error)")
        }
    }

    /// Opens the evaluation data: `given`, or else the test part of `trainURI`; in the second case a
    /// failure says that `--eval-data` (`flag`) can name the data instead.
    public static func openEvaluation(_ given: String?, trainURI: String, flag: String) throws -> (ImageDataset, String) {
        if let given { return (try open(given, role: flag), given) }
        let uri = try testPart(of: trainURI)
        do {
            return (try open(uri, role: "default \(flag)"), uri)
        } catch let TrainingError.invalid(m) {
            throw TrainingError.invalid("\(m); pass \(flag) URI")
        }
    }

    /// The image side an entry was trained at: its `imageSize` hyperparameter, or an older spelling
    /// of it (`image_size`, as fine-tuning recorded it before; `RecordedSettings`); for an entry imported
    /// from a file bissl exported, the same read from the provenance the file carries
    /// (`bissl.provenance` in its metadata, `Interchange.provenanceSummary`); nil when absent or not a
    /// positive integer. Carried provenance is followed through at most `depth` export/import round trips.
    public static func recordedImageSize(_ provenance: Provenance, depth: Int = 4) -> Int? {
        if let size = RecordedSettings.integer("imageSize", in: provenance.hyperparameters) { return size >= 1 ? size : nil }
        guard depth > 0, let json = provenance.source?.metadata["bissl.provenance"],
              let carried = try? Provenance.decode(json: json) else { return nil }
        return recordedImageSize(carried, depth: depth - 1)
    }

    /// The image size to use: `given`, or the first image's shorter side of `data`.
    /// - Throws: `TrainingError.invalid` for a size below 1 or an unreadable first image.
    public static func imageSize(_ given: Int?, data: ImageDataset) throws -> Int {
        if let given {
            guard given >= 1 else { throw TrainingError.invalid("--image-size must be at least 1, got \(given)") }
            guard given <= 1024 else { throw TrainingError.invalid("--image-size must be at most 1024, got \(given)") }
            return given
        }
        do { return try FrozenFeatures.nativeImageSize(data) } catch {
            throw TrainingError.invalid("cannot read the first image of \(data.uri): \(error)")
        }
    }
}
