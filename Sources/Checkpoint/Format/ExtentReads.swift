import Foundation
import HDF5

extension DirectExtent {
    /// Reads every extent into a new 64-byte-aligned buffer of its `count` bytes with `pread`, the
    /// largest first and spread over the machine's cores (the copy and the page faults of fresh
    /// buffers dominate, not the system calls), so the threads finish together. Touches no HDF5
    /// state: the same code reads a checkpoint in process (`CheckpointReader`) and the extents the
    /// HDF5 reader process reports (`UntrustedCheckpointFile`).
    /// - Returns: one `Data` per extent, in the order given.
    /// - Throws: the first `HDF5Error` of a failed read (file truncated meanwhile, I/O error); every
    ///   buffer is released then.
    static func readAll(_ extents: [DirectExtent]) throws -> [Data] {
        let buffers = extents.map { UnsafeMutableRawBufferPointer.allocate(byteCount: $0.count, alignment: 64) }
        var owned = true
        defer { if owned { buffers.forEach { $0.deallocate() } } }
        let order = extents.indices.sorted { extents[$0].count > extents[$1].count }
        let failures = concurrentMap(order.count) { i -> HDF5Error? in
            do { try extents[order[i]].read(into: buffers[order[i]]) } catch let error as HDF5Error { return error } catch {
                return HDF5Error("\(error)")
            }
            return nil
        }
        if let error = failures.lazy.compactMap({ $0 }).first { throw error }
        owned = false
        return buffers.map { buffer in
            Data(bytesNoCopy: buffer.baseAddress!, count: buffer.count, deallocator: .custom { pointer, _ in pointer.deallocate() })
        }
    }
}
