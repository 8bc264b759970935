import CHDF5
import Foundation

/// Reading a dataset's bytes straight from the file, bypassing HDF5's read pipeline.
///
/// A contiguous, unfiltered dataset stored as the exact little-endian type it is read as occupies
/// one run of `byteCount` bytes at `H5Dget_offset` (an offset from the start of the file, user block
/// included). Those bytes are the array in C order, so one `pread` on the descriptor HDF5 itself
/// reads from (`H5Fget_vfd_handle`, POSIX "sec2" driver) copies the array into its final buffer,
/// as safetensors' `pread` backend does. Every other layout (chunked, compressed, external,
/// big-endian, not yet allocated) and every file opened for writing (HDF5 may still hold written
/// bytes in its buffers) goes through `H5Dread` as before.
///
/// Every number taken from the file is checked before use: the offset and the byte count with
/// overflow-checked arithmetic against the file's current size (`fstat`), and the storage size HDF5
/// reports against the shape and element type.
extension Dataset {
    /// Where the dataset's bytes can be read directly; nil when the dataset must be read through
    /// `H5Dread` (see the extension's documentation).
    /// - Throws: `HDF5Error` when the offset and size HDF5 reports run past the end of the file.
    public func directExtent() throws -> DirectExtent? {
        Library.quiet()
        guard let elementType else { return nil }
        // Byte count from the shape with checked arithmetic (shape values come from the file).
        var count = elementType.size
        for dim in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard dim >= 0, !overflow else { return nil }
            count = product
        }
        guard count > 0 else { return nil }
        let dcpl = H5Dget_create_plist(id)
        guard dcpl >= 0 else { _ = H5Eclear2(bissl_H5E_DEFAULT()); return nil }
        defer { H5Pclose(dcpl) }
        guard H5Pget_layout(dcpl) == H5D_CONTIGUOUS, H5Pget_nfilters(dcpl) == 0, H5Pget_external_count(dcpl) == 0 else { return nil }
        let fileType = H5Dget_type(id)
        guard fileType >= 0 else { _ = H5Eclear2(bissl_H5E_DEFAULT()); return nil }
        defer { H5Tclose(fileType) }
        guard let memType = try? elementType.makeType(), H5Tequal(fileType, memType.id) > 0 else { return nil }
        let raw = H5Dget_offset(id)
        guard raw != bissl_HADDR_UNDEF() else { _ = H5Eclear2(bissl_H5E_DEFAULT()); return nil }
        let address = UInt64(raw)
        guard H5Dget_storage_size(id) == hsize_t(count) else { return nil }
        guard let descriptor = readOnlyDescriptor() else { return nil }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return nil }
        return try DirectExtent(descriptor: descriptor, offset: address, count: count, fileSize: Int64(status.st_size), what: where_)
    }

    /// Where the dataset's bytes start in its file (`H5Dget_offset`: from the start of the file, user
    /// block included), for a contiguous dataset whose storage is allocated (written); nil otherwise.
    /// A writer records it; a reader must use `directExtent()`, which checks the layout and the size.
    public var storageOffset: UInt64? {
        Library.quiet()
        let raw = H5Dget_offset(id)
        guard raw != bissl_HADDR_UNDEF() else { _ = H5Eclear2(bissl_H5E_DEFAULT()); return nil }
        return UInt64(raw)
    }

    /// The file descriptor HDF5 reads this dataset's file from, when the file is open read-only
    /// through the POSIX driver; nil otherwise.
    private func readOnlyDescriptor() -> Int32? {
        let file = H5Iget_file_id(id)
        guard file >= 0 else { _ = H5Eclear2(bissl_H5E_DEFAULT()); return nil }
        defer { H5Fclose(file) }
        var intent: UInt32 = 0
        guard H5Fget_intent(file, &intent) >= 0, intent == bissl_H5F_ACC_RDONLY() else { return nil }
        return File.descriptor(of: file)
    }

    /// Reads the dataset's bytes with `pread` into `buffer` when `directExtent()` allows it.
    /// - Returns: false when the dataset must be read through `H5Dread` instead (nothing read).
    /// - Throws: `HDF5Error` when the file is shorter than the dataset claims or `pread` fails.
    func readDirect(into buffer: UnsafeMutableRawBufferPointer) throws -> Bool {
        guard let extent = try directExtent(), extent.count == buffer.count else { return false }
        try extent.read(into: buffer)
        return true
    }
}

/// The bytes of one contiguous dataset in its file: `count` bytes at `offset` of `descriptor`, checked
/// against the file's size when made (`Dataset.directExtent()`). Valid while the file stays open;
/// `read(into:)` touches no HDF5 state, so several extents of one file can be read on several
/// threads at once.
public struct DirectExtent: Sendable {
    let descriptor: Int32
    /// Bytes from the start of the file (user block included).
    public let offset: off_t
    /// Bytes of the dataset (shape product times element size).
    public let count: Int
    let what: String

    /// An extent of the file open at `descriptor`, from numbers someone else read (`directExtent()`,
    /// or the HDF5 reader process's message), checked before use: `offset + count` (overflow-checked)
    /// lies within the file's `fileSize` bytes and `count` is positive.
    /// - Parameter what: names the dataset in errors.
    /// - Throws: `HDF5Error` when the extent runs past the end of the file.
    public init(descriptor: Int32, offset: UInt64, count: Int, fileSize: Int64, what: String) throws {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(max(count, 0)))
        guard count > 0, !overflow, fileSize >= 0, end <= UInt64(fileSize) else {
            throw HDF5Error("dataset \(what) claims \(count) bytes at offset \(offset), past the end of the "
                + "\(fileSize)-byte file (truncated or damaged)")
        }
        self.descriptor = descriptor
        self.offset = off_t(offset)
        self.count = count
        self.what = what
    }

    /// Copies the bytes into `buffer` (`buffer.count == count`) with `pread`.
    /// - Throws: `HDF5Error` when `pread` fails or the file has become shorter (truncated meanwhile).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws {
        guard buffer.count == count else { throw HDF5Error("dataset \(what) holds \(count) bytes, buffer has \(buffer.count)") }
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < count {
            let n = pread(descriptor, base + done, count - done, offset + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw HDF5Error("cannot read dataset \(what): \(String(cString: strerror(errno)))")
            }
            guard n > 0 else { throw HDF5Error("cannot read dataset \(what): the file ended early (truncated)") }
            done += n
        }
    }
}

/// Facts about an open file that change whenever its content is replaced or written in place
/// (`fstat` of the descriptor HDF5 reads from): git's index keeps the same facts to tell an
/// unchanged work-tree file without reading it (schemas/catalog.md, "Trusted reads").
public struct FileStatus: Equatable, Sendable, Codable {
    /// Bytes (`st_size`).
    public var size: Int64
    /// Device and inode numbers (`st_dev`, `st_ino`): a different file put in place has another inode.
    public var device: UInt64
    public var inode: UInt64
    /// Last modification and last status change, nanoseconds since 1970 (`st_mtim`, `st_ctim`).
    /// Writing the file changes both; `touch -m` can set the first back, never the second.
    public var modifiedNanoseconds: Int64
    public var changedNanoseconds: Int64

    public init(size: Int64, device: UInt64, inode: UInt64, modifiedNanoseconds: Int64, changedNanoseconds: Int64) {
        self.size = size
        self.device = device
        self.inode = inode
        self.modifiedNanoseconds = modifiedNanoseconds
        self.changedNanoseconds = changedNanoseconds
    }

    /// The clock file systems stamp times with (`CLOCK_REALTIME_COARSE`), nanoseconds since 1970.
    public static func coarseNow() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &t)
        return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
    }

    /// True when every write to the file after the moment `now` (`coarseNow()`) is certain to change
    /// `changedNanoseconds`: the change time lies in an earlier clock tick than `now`, and it has
    /// sub-second precision (a file system stamping whole seconds would give a write in the same
    /// second the same time). Facts that are not settled must not be trusted later, as git treats
    /// "racily clean" index entries.
    public func isSettled(before now: Int64) -> Bool {
        changedNanoseconds < now && changedNanoseconds % 1_000_000_000 != 0
    }

    /// `fstat` of `descriptor`; nil when it fails.
    public init?(descriptor: Int32) {
        var s = stat()
        guard fstat(descriptor, &s) == 0 else { return nil }
        self.init(stat: s)
    }

    /// `stat` of `path` (symbolic links followed); nil when it fails.
    public init?(path: String) {
        var s = stat()
        guard stat(path, &s) == 0 else { return nil }
        self.init(stat: s)
    }

    private init(stat s: stat) {
        self.init(size: Int64(s.st_size), device: UInt64(s.st_dev), inode: UInt64(s.st_ino),
                  modifiedNanoseconds: Int64(s.st_mtim.tv_sec) * 1_000_000_000 + Int64(s.st_mtim.tv_nsec),
                  changedNanoseconds: Int64(s.st_ctim.tv_sec) * 1_000_000_000 + Int64(s.st_ctim.tv_nsec))
    }
}

extension File {
    /// The file's `FileStatus`, taken from the descriptor HDF5 reads through (so it describes the
    /// very file read, not whatever the path names now); nil for drivers without a descriptor.
    public func status() -> FileStatus? {
        Library.quiet()
        return Self.descriptor(of: id).flatMap { FileStatus(descriptor: $0) }
    }

    /// The POSIX descriptor HDF5 reads the file through (owned by HDF5: valid while the file is
    /// open, never to be closed by the caller); nil for drivers without one.
    public var descriptor: Int32? {
        Library.quiet()
        return Self.descriptor(of: id)
    }

    /// The POSIX descriptor behind an open file (`H5Fget_vfd_handle` of the "sec2" driver, the
    /// default); nil for other drivers.
    static func descriptor(of file: hid_t) -> Int32? {
        let fapl = H5Fget_access_plist(file)
        guard fapl >= 0 else { _ = H5Eclear2(bissl_H5E_DEFAULT()); return nil }
        defer { H5Pclose(fapl) }
        guard H5Pget_driver(fapl) == bissl_H5FD_SEC2() else { return nil }
        var handle: UnsafeMutableRawPointer?
        guard H5Fget_vfd_handle(file, fapl, &handle) >= 0, let handle else { _ = H5Eclear2(bissl_H5E_DEFAULT()); return nil }
        return handle.load(as: Int32.self)
    }
}
