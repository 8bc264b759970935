import Foundation
import HDF5

extension DirectExtent {
    /// Reads every extent with `pread` into its own 64-byte-aligned buffer of `count` bytes, the
    /// largest first and spread over the machine's cores, so the threads finish together. The buffers
    /// are consecutive pieces of one anonymous mapping (`PageArena`), which transparent huge pages
    /// back when the kernel allows it: the page faults of fresh memory, not the copy, dominate such a
    /// read, and 2 MiB pages take 512 times fewer. Each buffer's whole pages go back to the kernel
    /// when that buffer is released (`PageArena.release`); the mapping itself when the last one is.
    /// Touches no HDF5 state: the same code reads a checkpoint in process (`CheckpointReader`) and the
    /// extents the HDF5 reader process reports (`UntrustedCheckpointFile`).
    /// - Returns: one `Data` per extent, in the order given.
    /// - Throws: the first `HDF5Error` of a failed read (file truncated meanwhile, I/O error), or of
    ///   a failed allocation; every buffer is released then.
    static func readAll(_ extents: [DirectExtent]) throws -> [Data] {
        guard !extents.isEmpty else { return [] }
        var starts: [Int] = []
        var total = 0
        for extent in extents {
            starts.append(total)
            let (end, overflow) = total.addingReportingOverflow(extent.count)
            let (rounded, overflow2) = end.addingReportingOverflow(63)
            guard !overflow, !overflow2 else { throw HDF5Error("tensor sizes overflow") }
            total = rounded & ~63
        }
        let arena = try PageArena(bytes: total)
        let order = extents.indices.sorted { extents[$0].count > extents[$1].count }
        let failures = concurrentMap(order.count) { i -> HDF5Error? in
            let k = order[i]
            do { try extents[k].read(into: UnsafeMutableRawBufferPointer(start: arena.base + starts[k], count: extents[k].count)) } catch let error as HDF5Error {
                return error
            } catch {
                return HDF5Error("\(error)")
            }
            return nil
        }
        if let error = failures.lazy.compactMap({ $0 }).first { throw error }
        return extents.indices.map { k in
            Data(bytesNoCopy: arena.base + starts[k], count: extents[k].count, deallocator: .custom { p, n in arena.release(p, n) })
        }
    }
}

/// One private anonymous mapping (`mmap`) that several buffers share; unmapped when the last
/// reference goes, and each buffer's pages returned as soon as that buffer is released (`release`),
/// so one tensor kept alive holds its own pages, not the whole checkpoint's. Mappings of 2 MiB or
/// more ask for transparent huge pages (`MADV_HUGEPAGE`).
final class PageArena: @unchecked Sendable {
    // @unchecked: `base` and `size` are immutable; the bytes are written by disjoint ranges.
    let base: UnsafeMutableRawPointer
    let size: Int

    /// - Throws: `HDF5Error` when the memory cannot be mapped.
    init(bytes: Int) throws {
        size = max(bytes, 1)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            throw HDF5Error("cannot allocate \(size) bytes for tensors: \(String(cString: strerror(errno)))")
        }
        base = p
        if size >= 2 << 20 { _ = madvise(base, size, Int32(MADV_HUGEPAGE)) }
    }

    /// Gives the whole pages of the released buffer `[start, start + count)` back to the kernel
    /// (`MADV_DONTNEED`: the memory no longer counts in RSS). Pages it shares with a neighbouring
    /// buffer (buffers are 64-byte aligned, not page aligned) are kept.
    func release(_ start: UnsafeMutableRawPointer, _ count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let begin = (Int(bitPattern: start) + page - 1) & ~(page - 1)
        let end = (Int(bitPattern: start) + count) & ~(page - 1)
        if end > begin { _ = madvise(UnsafeMutableRawPointer(bitPattern: begin), end - begin, Int32(MADV_DONTNEED)) }
    }

    deinit { munmap(base, size) }
}
