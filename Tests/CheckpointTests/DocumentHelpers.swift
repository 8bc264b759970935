import Checkpoint
import Crypto
import Foundation

/// The name -> tensor entries at the root of a decoded document, in order. Another entry (torch's
/// `_metadata`, a non-string key) throws, or is left out when `skippingOthers`.
/// - Throws: `CheckpointError.invalid` when the root is not a dict, or for another entry.
func stateDict(_ doc: SourceDocument, skippingOthers: Bool = false) throws -> StateDict {
    guard case .dict(let entries) = doc.root else { throw CheckpointError.invalid("root is not a dict") }
    var sd = StateDict()
    for entry in entries {
        guard let key = entry.key.stringValue, case .tensor(let t) = entry.value else {
            if skippingOthers { continue }
            throw CheckpointError.invalid("entry is not name -> tensor")
        }
        sd[key] = t.tensor
    }
    return sd
}

/// SHA-256 of `data` as 64 lowercase hex digits.
func sha256(_ data: Data) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}
