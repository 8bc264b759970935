import CHDF5

/// An HDF5 file; as a `Group` it is the root group `/`.
///
/// The file is closed when the object and every group/dataset opened from it are released (HDF5's
/// default "weak" close degree), or earlier with `close()`.
public final class File: Group, @unchecked Sendable {
    /// Creates `path`, truncating any existing file.
    /// - Throws: `HDF5Error` (missing folder, no permission).
    public static func create(_ path: String) throws -> File {
        Library.quiet()
        let id = try Library.check(H5Fcreate(path, bissl_H5F_ACC_TRUNC(), bissl_H5P_DEFAULT(), bissl_H5P_DEFAULT()),
                                   "cannot create HDF5 file \(path)")
        return File(handle: Handle(id) { H5Fclose($0) }, path: "/", fileName: path)
    }

    /// Opens an existing file, read-only unless `writable`.
    /// - Throws: `HDF5Error` when it is missing or not an HDF5 file.
    public static func open(_ path: String, writable: Bool = false) throws -> File {
        Library.quiet()
        let mode = writable ? bissl_H5F_ACC_RDWR() : bissl_H5F_ACC_RDONLY()
        let id = try Library.check(H5Fopen(path, mode, bissl_H5P_DEFAULT()), "cannot open HDF5 file \(path)")
        return File(handle: Handle(id) { H5Fclose($0) }, path: "/", fileName: path)
    }

    /// Writes every buffered change of the whole file to disk (`H5Fflush`, global scope).
    public func flush() throws {
        Library.quiet()
        try Library.check(H5Fflush(id, H5F_SCOPE_GLOBAL), "cannot flush \(fileName)")
    }

    /// Closes the file identifier now (`H5Fclose`); the file itself closes once no object opened
    /// from it remains. Using the file afterwards fails with `HDF5Error`.
    public func close() throws {
        Library.quiet()
        try Library.check(handle.close(), "cannot close \(fileName)")
    }
}
