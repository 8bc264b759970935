import CHDF5

/// Keeping every read inside the file that was opened.
///
/// HDF5 lets a file name data it does not hold: an external link (`H5Lcreate_external`, h5py's
/// `ExternalLink`) opens an object of another file, a user-defined link is resolved by code the
/// reader registers, a soft link names a path that may itself cross an external link, a dataset
/// with external storage (`H5Pset_external`) reads its elements from raw files, and a virtual
/// dataset (`H5D_VIRTUAL`) maps its elements onto datasets of other files. bissl writes none of
/// these (its links are hard links, `Group.createHardLink`), so a file that holds one is refused
/// whole, with the object's path, before any object of it is opened or any element read: whatever
/// a hostile file names, a read only ever returns bytes of that file.
extension File {
    /// Throws when any link reachable from the root group is not a hard link (HDF5 User's Guide,
    /// "Links": soft, external and user-defined links), visiting every link once (`H5Lvisit`,
    /// which does not follow soft or external links).
    /// - Throws: `HDF5Error` naming the first such link by its path, and its kind.
    func requireOnlyHardLinks() throws {
        Library.quiet()
        var found = ForeignLink()
        let status = withUnsafeMutablePointer(to: &found) { pointer in
            H5Lvisit(id, H5_INDEX_NAME, H5_ITER_INC, { _, name, info, data in
                guard let name, let info, let data else { return -1 }
                guard info.pointee.type != H5L_TYPE_HARD else { return 0 }
                let found = data.assumingMemoryBound(to: ForeignLink.self)
                found.pointee.path = "/" + String(cString: name)
                found.pointee.type = info.pointee.type
                return 1
            }, pointer)
        }
        if let path = found.path {
            let kind: String
            switch found.type {
            case H5L_TYPE_SOFT: kind = "a soft link"
            case H5L_TYPE_EXTERNAL: kind = "an external link (to an object of another file)"
            default: kind = "a user-defined link"
            }
            throw HDF5Error("'\(path)' in \(fileName) is \(kind); bissl reads only objects stored in the file itself, reached by hard links",
                            leavesTheFile: true)
        }
        guard status >= 0 else { throw Library.error("cannot list the links of \(fileName)") }
    }
}

/// The first link `requireOnlyHardLinks` found that is not a hard link.
private struct ForeignLink {
    var path: String?
    var type = H5L_TYPE_HARD
}

extension Dataset {
    /// Throws when the dataset's elements are stored outside its file: external storage
    /// (`H5Pget_external_count` > 0) or a virtual layout (`H5D_VIRTUAL`). See `File`'s containment.
    /// - Throws: `HDF5Error` naming the dataset.
    func requireStoredInFile() throws {
        Library.quiet()
        let dcpl = Handle.plist(try Library.check(H5Dget_create_plist(id), "cannot read the storage properties of \(where_)"))
        let external = H5Pget_external_count(dcpl.id)
        guard external >= 0 else { throw Library.error("cannot read the storage properties of \(where_)") }
        if external > 0 {
            throw HDF5Error("dataset \(where_) keeps its elements in external files; bissl reads only data stored in the file itself", leavesTheFile: true)
        }
        if H5Pget_layout(dcpl.id) == H5D_VIRTUAL {
            throw HDF5Error("dataset \(where_) is a virtual dataset (its elements come from other datasets or files); bissl reads only data stored in the file itself", leavesTheFile: true)
        }
    }
}
