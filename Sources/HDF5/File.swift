import CHDF5

/// An HDF5 file; as a `Group` it is the root group `/`.
///
/// The file is closed when the object and every group/dataset opened from it are released (HDF5's
/// default "weak" close degree), or earlier with `close()`.
public final class File: Group, @unchecked Sendable {
    /// Creates `path`, truncating any existing file.
    /// - Parameter userBlock: bytes reserved at the start of the file for the application (HDF5's
    ///   "user block", `H5Pset_userblock`): 0, or a power of two of at least 512. HDF5 places its
    ///   superblock after them and never reads or writes them; the caller fills them after closing
    ///   the file. Every address HDF5 reports (`Dataset.storageOffset`) counts from the start of the
    ///   file, user block included.
    ///
    /// HDF5's own file lock (an exclusive `flock` it takes on the file it creates) is not asked for
    /// (`H5Pset_file_locking`): the files this project creates are temporaries under a new name that
    /// no other writer opens, guarded by their writer's record lock (`TemporaryFileLock`), so HDF5's
    /// lock would guard nothing and would only make `H5Fcreate` fail on a file system without `flock`.
    /// A user's `HDF5_USE_FILE_LOCKING` overrides this (HDF5 reads it at every create) and works as
    /// well: `flock` locks and the writer's open-file-description record lock do not conflict.
    /// - Throws: `HDF5Error` (missing folder, no permission, an invalid user block size).
    public static func create(_ path: String, userBlock: Int = 0) throws -> File {
        Library.quiet()
        var fcpl = bissl_H5P_DEFAULT()
        var plist: Handle?
        if userBlock > 0 {
            let created = Handle.plist(try Library.check(H5Pcreate(bissl_H5P_FILE_CREATE()), "cannot create a file property list"))
            try Library.check(H5Pset_userblock(created.id, hsize_t(userBlock)), "cannot reserve a \(userBlock)-byte user block in \(path)")
            fcpl = created.id
            plist = created
        }
        let fapl = Handle.plist(try Library.check(H5Pcreate(bissl_H5P_FILE_ACCESS()), "cannot create a file access property list"))
        try Library.check(H5Pset_file_locking(fapl.id, false, true), "cannot turn HDF5's file locking off for \(path)")
        let id = try Library.check(H5Fcreate(path, bissl_H5F_ACC_TRUNC(), fcpl, fapl.id),
                                   "cannot create HDF5 file \(path)")
        withExtendedLifetime(plist) {}
        withExtendedLifetime(fapl) {}
        return File(handle: Handle(id) { H5Fclose($0) }, path: "/", fileName: path)
    }

    /// Opens an existing file, read-only unless `writable`, and checks that every link in it is a
    /// hard link (`requireOnlyHardLinks`: no external, soft or user-defined link can make a read
    /// leave the file).
    /// - Throws: `HDF5Error` when it is missing, not an HDF5 file, or holds a link that is not a
    ///   hard link (the error names it).
    public static func open(_ path: String, writable: Bool = false) throws -> File {
        Library.quiet()
        let mode = writable ? bissl_H5F_ACC_RDWR() : bissl_H5F_ACC_RDONLY()
        let id = try Library.check(H5Fopen(path, mode, bissl_H5P_DEFAULT()), "cannot open HDF5 file \(path)")
        let file = File(handle: Handle(id) { H5Fclose($0) }, path: "/", fileName: path)
        try file.requireOnlyHardLinks()
        return file
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
