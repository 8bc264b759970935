import Checkpoint
import Foundation

/// Encodes a `CheckpointDiff` as JSON (`bissl diff --json`): the report's properties as keys
/// (`labelA`, `labelB`, `listing`, `summary`, `sections`, `stages`, `provenance`,
/// `hyperparameters`, `architecture`), sorted keys, pretty-printed. Undefined quantities
/// (relative change of an all-zero tensor, cosine with a zero vector) are absent; non-finite
/// values, which JSON cannot hold, are the strings `NaN`, `Infinity`, `-Infinity`.
public enum DiffJSONRenderer {
    /// UTF-8 JSON text ending with a newline.
    /// - Throws: `ZooError.invalid` if encoding fails (it does not for reports built by
    ///   `CheckpointDiff.init`).
    public static func render(_ diff: CheckpointDiff) throws -> String {
        let encoder = JSONEncoder.bissl(pretty: true)
        do {
            return String(decoding: try encoder.encode(diff), as: UTF8.self) + "\n"
        } catch {
            throw ZooError.invalid("cannot encode the diff as JSON: \(error)")
        }
    }
}
