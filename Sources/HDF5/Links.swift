import CHDF5

/// Hard links: one object (dataset or group) reachable under several names, stored once.
extension Group {
    /// Creates the link `name` in this group to the existing object at `target` (`H5Lcreate_hard`),
    /// so both names open the same object: its data is stored once, and writing through either name
    /// changes what both read. h5py shows the two names with equal `.id` (same object address).
    /// - Parameters:
    ///   - name: the new link's name in this group (UTF-8).
    ///   - target: the object's path, absolute (`/tensors/backbone/conv1.weight`) or relative to this group.
    /// - Throws: `HDF5Error` if `target` does not exist or `name` is already taken.
    public func createHardLink(_ name: String, to target: String) throws {
        Library.quiet()
        let lcpl = try Self.utf8LinkCreation()
        try Library.check(H5Lcreate_hard(id, target, id, name, lcpl.id, bissl_H5P_DEFAULT()),
                          "cannot link '\(childPath(name))' to '\(target)' in \(fileName)")
    }

    /// The file address of the object the link `name` points to (`H5Oget_info_by_name2`, field
    /// `addr`): equal for two names exactly when they are hard links to the same object.
    /// - Throws: `HDF5Error` if there is no such object.
    public func objectAddress(of name: String) throws -> UInt64 {
        Library.quiet()
        var info = H5O_info_t()
        try Library.check(H5Oget_info_by_name2(id, name, &info, UInt32(H5O_INFO_BASIC), bissl_H5P_DEFAULT()),
                          "cannot read the object info of '\(childPath(name))' in \(fileName)")
        return UInt64(info.addr)
    }
}

extension Object {
    /// The file address of this open object (`H5Oget_info2`, field `addr`); equal for two open objects
    /// exactly when they are the same object reached through different hard links.
    /// - Throws: `HDF5Error` when HDF5 cannot read the object's header.
    public func objectAddress() throws -> UInt64 {
        Library.quiet()
        var info = H5O_info_t()
        try Library.check(H5Oget_info2(id, &info, UInt32(H5O_INFO_BASIC)), "cannot read the object info of \(where_)")
        return UInt64(info.addr)
    }
}
