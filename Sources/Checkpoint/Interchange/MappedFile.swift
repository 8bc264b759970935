import Foundation

/// A read-only view of a whole file through `mmap`, handing out zero-copy `Data` slices (the
/// safetensors reader's tensors, the ZIP reader's stored records of a `.pth`, the contiguous tensors
/// of an `.h5` the HDF5 reader process located).
///
/// The mapping is private copy-on-write (`MAP_PRIVATE`, `PROT_READ | PROT_WRITE`): a `Data` that is
/// later mutated changes only its own pages, never the file. Each slice keeps the mapping alive;
/// it is unmapped when the last slice is released. Slices are zero-based `Data` values (not
/// `Data` sub-ranges), so code that indexes `tensor.data[0]` works as on any other `Data`.
///
/// A file that another process truncates while it is mapped would make reading its lost pages a
/// SIGBUS; every mapping is registered with `MappingGuard`, which makes that one `error:` line
/// naming the file and exit status 1 instead of a crash.
final class MappedFile: @unchecked Sendable {
    // @unchecked: `base` and `size` are immutable after init and the mapping is never written
    // through this object; the memory is released only in deinit.
    let base: UnsafeMutableRawPointer?
    let size: Int
    private let guardToken: MappingGuard.Token?

    /// Maps `url`. An empty file gets no mapping (`size == 0`).
    /// - Throws: `CheckpointError.io` when the file cannot be opened, examined or mapped.
    convenience init(_ url: URL) throws {
        if let refusal = RegularFile.refusal(url.path) { throw CheckpointError.io(refusal) }   // before open: a FIFO blocks it
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw CheckpointError.io("cannot open \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CheckpointError.io("cannot examine \(url.path): \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw CheckpointError.io("\(url.path) is not a regular file") }
        try self.init(descriptor: fd, size: Int(st.st_size), name: url.path)
    }

    /// Maps the first `size` bytes of the regular file open at `descriptor` (which may be closed
    /// afterwards); `size` is the file's size as the caller found it (`fstat`). No mapping when
    /// `size == 0`.
    /// - Parameter name: names the file in errors.
    /// - Throws: `CheckpointError.io` when the file cannot be mapped.
    init(descriptor: Int32, size: Int, name: String) throws {
        self.size = max(size, 0)
        if self.size == 0 {
            base = nil
            guardToken = nil
            return
        }
        let p = mmap(nil, self.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, descriptor, 0)
        guard let p, p != MAP_FAILED else {
            throw CheckpointError.io("cannot map \(name): \(String(cString: strerror(errno)))")
        }
        base = p
        guardToken = MappingGuard.register(base: p, size: self.size, name: name)
    }

    deinit {
        MappingGuard.unregister(guardToken)
        if let base { munmap(base, size) }
    }

    /// The bytes `[begin, end)`; the caller has checked `0 <= begin <= end <= size`.
    func bytes(_ begin: Int, _ end: Int) -> UnsafeRawBufferPointer {
        precondition(0 <= begin && begin <= end && end <= size)
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + begin, count: end - begin)
    }

    /// A zero-copy `Data` over `[begin, end)` that keeps the mapping alive while it exists.
    func data(_ begin: Int, _ end: Int) -> Data {
        precondition(0 <= begin && begin <= end && end <= size)
        guard end > begin, let base else { return Data() }
        return Data(bytesNoCopy: base + begin, count: end - begin, deallocator: .custom { _, _ in
            withExtendedLifetime(self) {}
        })
    }
}
