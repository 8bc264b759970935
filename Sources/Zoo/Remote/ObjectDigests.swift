import Checkpoint
import Crypto
import Foundation

/// The digest a manifest gives of an object's bytes outside its tensors (schemas/remote.md,
/// "Manifests", `nonTensorSHA256`). An object with a tensor index (schemas/checkpoint-v1.md, "Tensor
/// index") splits into the tensors' extents, which the content id covers (with each tensor's name,
/// dtype and shape), and every other byte: the index itself, HDF5's metadata, metric histories,
/// padding. The index sits in those other bytes and fixes where the extents lie, so their SHA-256
/// together with the content id determines the file as its SHA-256 does, and a pull verifies both
/// with one pass over the bytes (`RemoteStore.downloadObject`) where the SHA-256 and the content id
/// would take two.
enum ObjectDigests {
    /// The byte ranges of a `fileSize`-byte file that lie outside every tensor extent `index` lists,
    /// in file order (the index's extents were checked against `fileSize` when it was decoded).
    static func nonTensorRanges(_ index: TensorIndex, fileSize: Int64) -> [Range<Int64>] {
        let extents = index.tensors.filter { $0.byteCount > 0 }
            .map { Int64($0.offset)..<Int64($0.offset) + Int64($0.byteCount) }
            .sorted { $0.lowerBound < $1.lowerBound }
        var ranges: [Range<Int64>] = []
        var at: Int64 = 0
        for extent in extents {
            if extent.lowerBound > at { ranges.append(at..<extent.lowerBound) }
            at = max(at, extent.upperBound)
        }
        if at < fileSize { ranges.append(at..<fileSize) }
        return ranges
    }

    /// `nonTensorSHA256` of the file at `url` (64 hex): the SHA-256 of the bytes of
    /// `nonTensorRanges`, concatenated in file order; nil when the file has no tensor index.
    /// - Throws: `ZooError.corrupt` for a malformed index, `.io` when the file cannot be read.
    static func nonTensorSHA256(of url: URL) throws -> String? {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ZooError.io("cannot read \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var s = stat()
        guard fstat(fd, &s) == 0 else { throw ZooError.io("cannot read \(url.path): \(String(cString: strerror(errno)))") }
        let index: TensorIndex
        do {
            guard let found = try TensorIndex.read(descriptor: fd, fileSize: Int64(s.st_size), fileName: url.lastPathComponent) else { return nil }
            index = found
        } catch let error as CheckpointError {
            throw ZooError.corrupt(error.description)
        }
        var sha = SHA256()
        let block = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 64)
        defer { buffer.deallocate() }
        for range in nonTensorRanges(index, fileSize: Int64(s.st_size)) {
            var offset = range.lowerBound
            while offset < range.upperBound {
                let count = Int(min(Int64(block), range.upperBound - offset))
                guard RemoteStore.readAll(fd, buffer, count, at: offset) else {
                    throw ZooError.io("cannot read \(url.path) (a read failed, or the file is shorter than when its tensor index was read)")
                }
                sha.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: count))
                offset += Int64(count)
            }
        }
        return lowercaseHex(sha.finalize())
    }
}
