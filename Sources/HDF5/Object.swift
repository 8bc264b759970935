import CHDF5

/// An open HDF5 object (file root, group or dataset). Its identifier is closed when the Swift object
/// is released. `path` is the object's absolute path inside the file and `fileName` the file's
/// name; both only serve error messages.
public class Object: @unchecked Sendable {
    let handle: Handle
    /// Absolute path inside the file (`/`, `/tensors/backbone`).
    public let path: String
    /// The file's path as given when it was opened.
    public let fileName: String

    init(handle: Handle, path: String, fileName: String) {
        self.handle = handle
        self.path = path
        self.fileName = fileName
    }

    var id: hid_t { handle.id }

    /// `'/tensors/backbone' in model.h5`, for messages.
    var where_: String { "'\(path)' in \(fileName)" }

    func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// A link-creation property list that marks names as UTF-8 (h5py decodes names as UTF-8).
    static func utf8LinkCreation() throws -> Handle {
        let lcpl = Handle.plist(try Library.check(H5Pcreate(bissl_H5P_LINK_CREATE()), "cannot create a link property list"))
        try Library.check(H5Pset_char_encoding(lcpl.id, H5T_CSET_UTF8), "cannot set UTF-8 link names")
        return lcpl
    }
}
