import Crypto
import Foundation

/// The dataset fingerprint: SHA-256 over the bytes the dataset is made of, as stored.
///
/// The hashed stream is a sequence of records, one per file read, in the reader's fixed order:
/// the file's path relative to the dataset root (UTF-8; for `h5:` the file name), one zero byte,
/// the file's size in bytes as an unsigned 64-bit little-endian integer, then the file's bytes
/// exactly as on disk (a gzipped IDX file is hashed compressed). When `#split=FILE` is given, one
/// more record named `#split` holds the split file's bytes. So the fingerprint does not depend on
/// where the dataset lives, and changes when any image, label, class folder name or split changes.
///
/// Record order: `idx:` images file then labels file; `cifar:` the batch files in reading order
/// (`data_batch_1.bin`..`data_batch_5.bin`, or `test_batch.bin`, or `train.bin` / `test.bin`), then
/// the class-name file if present; `folder:` every image file in dataset order (class folders
/// sorted, files sorted within each), skipped corrupt files excluded; `h5:` the whole HDF5 file.
struct Fingerprinter {
    private var hasher = SHA256()

    mutating func add(name: String, bytes: Data) {
        hasher.update(data: Data(name.utf8))
        hasher.update(data: Data([0]))
        var size = UInt64(bytes.count).littleEndian
        withUnsafeBytes(of: &size) { hasher.update(bufferPointer: $0) }
        hasher.update(data: bytes)
    }

    /// Lowercase hex of the digest.
    func finalize() -> String {
        lowercaseHex(hasher.finalize())
    }
}
