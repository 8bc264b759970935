import Crypto
import Foundation

/// SHA-256 (FIPS 180-4) as bissl records it: 64 lowercase hex digits. The one place bissl hashes a
/// whole file (a converted source's `provenance.source.sha256`, a remote object's name).
public enum FileSHA256 {
    /// SHA-256 of the bytes of the file at `url` and their count, read in 4 MiB blocks.
    /// - Throws: `CheckpointError.io` when the file cannot be opened or read.
    public static func digest(of url: URL) throws -> (sha256: String, size: Int64) {
        if let refusal = RegularFile.refusal(url.path) { throw CheckpointError.io(refusal) }   // before opening: a FIFO blocks it
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw CheckpointError.io("cannot read \(url.path): \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        do {
            while let block = try handle.read(upToCount: 4 << 20), !block.isEmpty {
                hasher.update(data: block)
                size += Int64(block.count)
            }
        } catch {
            throw CheckpointError.io("cannot read \(url.path): \(error.localizedDescription)")
        }
        return (lowercaseHex(hasher.finalize()), size)
    }
}
