import CHDF5

/// Error handling shared by every wrapper call.
///
/// HDF5 prints its error stack to stderr by default. The thread-safe build Debian ships keeps that
/// setting per thread, so every entry point calls `quiet()` before touching the library; a failure
/// is then turned into an `HDF5Error` naming the operation, the object and HDF5's own most specific
/// message from the error stack.
enum Library {
    /// Turns off automatic error-stack printing for the calling thread (`H5Eset_auto2`). The first
    /// call in the process also runs `processSetup`, before HDF5 initialises itself.
    static func quiet() {
        _ = processSetup
        _ = H5Eset_auto2(bissl_H5E_DEFAULT(), nil, nil)
    }

    /// Once per process, before any other HDF5 call: `H5dont_atexit()`, so HDF5 registers no
    /// `atexit` shutdown (`H5_term_library`). When a write fails (disk full, `RLIMIT_FSIZE`) HDF5
    /// cannot flush the file's metadata, `H5Fclose` fails and leaves the file's identifier in its
    /// table; the shutdown at `exit` then closes that half-destroyed file again and crashes
    /// (`H5F__close_cb`). Every file this wrapper writes is closed explicitly (`File.close`), so the
    /// shutdown has nothing left to save; the operating system releases the rest at exit.
    ///
    /// The environment is left alone (a `setenv` here would race the `getenv` of other threads): a
    /// user's `HDF5_USE_FILE_LOCKING` applies, and HDF5's `flock` does not conflict with the record
    /// lock writers hold on their temporaries (`TemporaryFileLock`).
    private static let processSetup: Void = {
        _ = H5dont_atexit()
    }()

    /// The most specific description on the calling thread's error stack (`H5Ewalk2`, upward), if any.
    static func stackDetail() -> String? {
        final class Box { var detail: String? }
        let box = Box()
        let unmanaged = Unmanaged.passUnretained(box)
        _ = H5Ewalk2(bissl_H5E_DEFAULT(), H5E_WALK_UPWARD, { _, err, context in
            guard let err, let context else { return 0 }
            let box = Unmanaged<Box>.fromOpaque(context).takeUnretainedValue()
            if box.detail == nil, let desc = err.pointee.desc {
                let text = String(cString: desc)
                if !text.isEmpty { box.detail = text }
            }
            return 0
        }, unmanaged.toOpaque())
        _ = H5Eclear2(bissl_H5E_DEFAULT())
        return box.detail
    }

    /// An `HDF5Error` for a failed operation, with HDF5's own reason appended when it gave one.
    static func error(_ operation: String) -> HDF5Error {
        guard let detail = stackDetail() else { return HDF5Error(operation) }
        return HDF5Error("\(operation): \(concise(detail))")
    }

    /// HDF5's file-open failures read "unable to open file: name = '...', errno = 2, error message =
    /// 'No such file or directory', flags = ..."; keep only the operating system's message. A
    /// truncated file reads "truncated file: eof = E, sblock->base_addr = B, stored_eof = S", where
    /// E counts from the superblock (after a user block of B bytes) and S from the file's start:
    /// said as sizes `ls -l` shows, E + B and S bytes.
    static func concise(_ detail: String) -> String {
        if let truncated = truncation(detail) {
            return "truncated: the file has \(truncated.size) bytes, its HDF5 superblock says \(truncated.expected)"
        }
        let marker = "error message = '"
        if let start = detail.range(of: marker), let end = detail[start.upperBound...].firstIndex(of: "'") {
            return String(detail[start.upperBound..<end])
        }
        return detail
    }

    /// The file's size and the size its superblock records, from HDF5's "truncated file: eof = E,
    /// sblock->base_addr = B, stored_eof = S" (H5Fsuper.c): E + B and S; nil for another message.
    static func truncation(_ detail: String) -> (size: UInt64, expected: UInt64)? {
        guard detail.hasPrefix("truncated file: ") else { return nil }
        var values: [String: UInt64] = [:]
        for part in detail.dropFirst("truncated file: ".count).split(separator: ",") {
            let pair = part.split(separator: "=").map { $0.filter { $0 != " " } }
            if pair.count == 2, let value = UInt64(pair[1]) { values[pair[0]] = value }
        }
        guard let eof = values["eof"], let base = values["sblock->base_addr"], let stored = values["stored_eof"] else { return nil }
        let (size, overflow) = eof.addingReportingOverflow(base)
        return overflow ? nil : (size, stored)
    }

    /// Returns `id` or throws when HDF5 signalled failure with a negative id.
    @discardableResult
    static func check(_ id: hid_t, _ operation: @autoclosure () -> String) throws -> hid_t {
        if id < 0 { throw error(operation()) }
        return id
    }

    /// Throws when an `herr_t` status is negative.
    static func check(_ status: herr_t, _ operation: @autoclosure () -> String) throws {
        if status < 0 { throw error(operation()) }
    }
}

/// Owns one HDF5 identifier and releases it exactly once (explicitly or in `deinit`).
final class Handle: @unchecked Sendable {
    private(set) var id: hid_t
    private let closer: (hid_t) -> herr_t

    init(_ id: hid_t, closer: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.closer = closer
    }

    /// Releases the identifier now; later calls do nothing.
    func close() -> herr_t {
        guard id >= 0 else { return 0 }
        let status = closer(id)
        id = -1
        return status
    }

    deinit { _ = close() }

    static func type(_ id: hid_t) -> Handle { Handle(id) { H5Tclose($0) } }
    static func space(_ id: hid_t) -> Handle { Handle(id) { H5Sclose($0) } }
    static func plist(_ id: hid_t) -> Handle { Handle(id) { H5Pclose($0) } }
}
