import Foundation

/// Gives the pages of a mapped file (`MappedFile`) back to the kernel once they have been used, so
/// a conversion does not hold the whole source resident: every page read through a mapping counts
/// in the process's resident set until it is unmapped, even though the page cache keeps it anyway.
///
/// `madvise(MADV_DONTNEED)` on a private file mapping drops the process's reference to each page;
/// the next access maps the page-cache page again (a minor fault, no disk read). It would also
/// throw away a page modified through the mapping (copy-on-write, e.g. a tensor byte-swapped in
/// place), so each page's state is read from `/proc/self/pagemap` (the kernel's
/// Documentation/admin-guide/mm/pagemap.rst: bit 63 present, 62 swapped, 61 file page) and only
/// pages still holding the file's bytes are released: present file pages, and pages never faulted
/// in. Memory outside a registered mapping (`MappingGuard`) is never touched; without
/// `/proc/self/pagemap` nothing is released.
///
/// A page is modified only through a `Data` that uniquely owns its storage, so no page can change
/// between the check and the release while the caller holds the bytes it releases.
enum MappedPages {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Releases the whole pages inside `data`'s bytes that are unmodified pages of a mapped file.
    static func release(_ data: Data) {
        data.withUnsafeBytes { release($0) }
    }

    /// Releases the whole pages inside `bytes` that are unmodified pages of a mapped file.
    static func release(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, pageSize > 0 else { return }
        let page = UInt(pageSize)
        let start = (UInt(bitPattern: base) + page - 1) / page * page
        let end = (UInt(bitPattern: base) + UInt(bytes.count)) / page * page
        guard start < end, MappingGuard.covers(start, end) else { return }
        let count = Int((end - start) / page)
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var entries = [UInt64](repeating: 0, count: count)
        let wanted = count * 8
        let read = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, wanted, off_t(start / page * 8)) }
        guard read == wanted else { return }
        var i = 0
        while i < count {
            guard holdsFileBytes(entries[i]) else { i += 1; continue }
            var j = i + 1
            while j < count, holdsFileBytes(entries[j]) { j += 1 }
            madvise(UnsafeMutableRawPointer(bitPattern: start + UInt(i) * page), (j - i) * pageSize, MADV_DONTNEED)
            i = j
        }
    }

    /// A pagemap entry of a page that reads as the file's bytes: present and a file page, or absent
    /// and not swapped out (never faulted in).
    private static func holdsFileBytes(_ entry: UInt64) -> Bool {
        let present = entry >> 63 & 1 == 1, swapped = entry >> 62 & 1 == 1, file = entry >> 61 & 1 == 1
        return present ? file : !swapped
    }
}

/// Releases each tensor's mapped pages (`MappedPages`) once every one of its consumers is done with
/// it: the HDF5 writer and the content-id hash read each tensor once, in different orders, on
/// different threads (`CheckpointFile.write`).
final class ReleaseAfterUse: @unchecked Sendable {
    // @unchecked: `remaining` is read and written only under `lock`; `tensors` is immutable.
    private let lock = NSLock()
    private var remaining: [Int]
    private let tensors: [Data]

    /// - Parameters:
    ///   - tensors: the bytes of each tensor, by ordinal.
    ///   - consumers: how many `done(_:)` calls each ordinal gets.
    init(_ tensors: [Data], consumers: Int) {
        self.tensors = tensors
        remaining = [Int](repeating: consumers, count: tensors.count)
    }

    /// One consumer is done with tensor `ordinal`; the last one releases its pages.
    func done(_ ordinal: Int) {
        lock.lock()
        remaining[ordinal] -= 1
        let last = remaining[ordinal] == 0
        lock.unlock()
        if last { MappedPages.release(tensors[ordinal]) }
    }
}
