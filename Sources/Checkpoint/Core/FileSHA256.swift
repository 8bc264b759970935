import Crypto
import Foundation

/// SHA-256 (FIPS 180-4) as bissl records it: 64 lowercase hex digits. The one place bissl hashes a
/// whole file (a converted source's `provenance.source.sha256`, a remote object's name).
public enum FileSHA256 {
    /// Bytes per `read`: one buffer, reused, small enough to stay in the core's L2 cache between the
    /// kernel's copy and the hash (a fresh 4 MiB buffer per block cost a page fault per 4 KiB).
    static let blockSize = 1 << 20

    /// SHA-256 of the bytes of the file at `url` and their count.
    /// - Throws: `CheckpointError.io` when the file cannot be opened or read.
    public static func digest(of url: URL) throws -> (sha256: String, size: Int64) {
        if let refusal = RegularFile.refusal(url.path) { throw CheckpointError.io(refusal) }   // before opening: a FIFO blocks it
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CheckpointError.io("cannot read \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        return try digest(descriptor: fd, path: url.path)
    }

    /// SHA-256 of the bytes of the open file `fd` from its start to its end, and their count, read with
    /// `pread` (the descriptor's offset is left as it is): the bytes of the file this descriptor
    /// opened, whatever its path names meanwhile.
    /// - Parameter path: for messages.
    /// - Throws: `CheckpointError.io` when the file cannot be read.
    public static func digest(descriptor fd: Int32, path: String) throws -> (sha256: String, size: Int64) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 64)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var size: Int64 = 0
        while true {
            let n = pread(fd, buffer.baseAddress, buffer.count, off_t(size))
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw CheckpointError.io("cannot read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            size += Int64(n)
        }
        return (lowercaseHex(hasher.finalize()), size)
    }
}
