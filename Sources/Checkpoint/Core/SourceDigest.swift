import Foundation

/// The SHA-256 of a converted source file (`provenance.source.sha256`), hashed on a thread of its own
/// from the moment the file is opened until a writer needs it: `bissl convert` and `import` write every
/// tensor first and the provenance last, so this hash runs beside decoding, writing and the content id
/// instead of before them.
///
/// Until then the checkpoint's `provenance.source.sha256` holds `placeholder`, as long as any digest, so
/// its provenance JSON has its final length (the writer sizes the file's user block, which holds a copy
/// of it in the tensor index, before anything is written).
public struct SourceDigest: Sendable {
    /// 64 zeros: the length of a SHA-256 in lowercase hex.
    public static let placeholder = String(repeating: "0", count: 64)

    private let hashing: Background<String>

    /// Starts hashing the file at `url` now (`FileSHA256`).
    public init(of url: URL) {
        hashing = Background { try FileSHA256.digest(of: url).sha256 }
    }

    /// `checkpoint` with `provenance.source.sha256` set to the digest (waiting for it); unchanged
    /// when it has no `provenance.source`.
    /// - Throws: `CheckpointError.io` when the file could not be read.
    public func completing(_ checkpoint: Checkpoint) throws -> Checkpoint {
        var completed = checkpoint
        if completed.provenance.source != nil { completed.provenance.source!.sha256 = try hashing.value() }
        return completed
    }
}
