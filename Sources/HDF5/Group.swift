import CHDF5

/// An HDF5 group: creates and opens child groups and datasets, lists children.
public class Group: Object, @unchecked Sendable {
    /// Orders in which `childNames` lists links.
    public enum Order: Sendable {
        /// Byte-wise ascending name order (`H5_INDEX_NAME`), always available.
        case name
        /// Creation order (`H5_INDEX_CRT_ORDER`); needs a group created with `trackCreationOrder`.
        case creation
    }

    /// Creates a child group.
    /// - Parameter trackCreationOrder: record and index link creation order so `childNames(order: .creation)` works.
    /// - Throws: `HDF5Error` if the name exists or cannot be created.
    public func createGroup(_ name: String, trackCreationOrder: Bool = false) throws -> Group {
        Library.quiet()
        let lcpl = try Self.utf8LinkCreation()
        let gcpl = Handle.plist(try Library.check(H5Pcreate(bissl_H5P_GROUP_CREATE()), "cannot create a group property list"))
        try Library.check(H5Pset_obj_track_times(gcpl.id, false), "cannot disable time tracking for '\(childPath(name))'")
        if trackCreationOrder {
            try Library.check(H5Pset_link_creation_order(gcpl.id, bissl_H5P_CRT_ORDER_TRACKED() | bissl_H5P_CRT_ORDER_INDEXED()),
                              "cannot track creation order for group '\(childPath(name))'")
        }
        let id = try Library.check(H5Gcreate2(self.id, name, lcpl.id, gcpl.id, bissl_H5P_DEFAULT()),
                                   "cannot create group '\(childPath(name))' in \(fileName)")
        return Group(handle: Handle(id) { H5Gclose($0) }, path: childPath(name), fileName: fileName)
    }

    /// Opens a child group (a relative path like `a/b` works too).
    /// - Throws: `HDF5Error` if it does not exist or is not a group.
    public func openGroup(_ name: String) throws -> Group {
        Library.quiet()
        guard contains(name) else { throw HDF5Error("no group '\(childPath(name))' in \(fileName)") }
        let id = try Library.check(H5Gopen2(self.id, name, bissl_H5P_DEFAULT()), "cannot open group '\(childPath(name))' in \(fileName)")
        return Group(handle: Handle(id) { H5Gclose($0) }, path: childPath(name), fileName: fileName)
    }

    /// True when a link `name` (or relative path) exists below this group and points to an object.
    public func contains(_ name: String) -> Bool {
        Library.quiet()
        var prefix = ""
        for part in name.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += prefix.isEmpty ? String(part) : "/" + part
            if H5Lexists(id, prefix, bissl_H5P_DEFAULT()) <= 0 { _ = H5Eclear2(bissl_H5E_DEFAULT()); return false }
        }
        if prefix.isEmpty { return false }
        let exists = H5Oexists_by_name(id, prefix, bissl_H5P_DEFAULT()) > 0
        _ = H5Eclear2(bissl_H5E_DEFAULT())
        return exists
    }

    /// Kind of object a child link points to.
    public enum ChildKind: Sendable { case group, dataset, other }

    /// The kind of the child `name`, or nil if there is none.
    public func kind(of name: String) -> ChildKind? {
        guard contains(name) else { return nil }
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(id, name, &info, UInt32(H5O_INFO_BASIC), bissl_H5P_DEFAULT()) >= 0 else {
            _ = H5Eclear2(bissl_H5E_DEFAULT())
            return nil
        }
        switch info.type {
        case H5O_TYPE_GROUP: return .group
        case H5O_TYPE_DATASET: return .dataset
        default: return .other
        }
    }

    /// Names of the links in this group.
    /// - Throws: `HDF5Error`, e.g. when `.creation` is asked of a group that does not track it.
    public func childNames(order: Order = .name) throws -> [String] {
        Library.quiet()
        var info = H5G_info_t()
        try Library.check(H5Gget_info(id, &info), "cannot list group \(where_)")
        let index = order == .name ? H5_INDEX_NAME : H5_INDEX_CRT_ORDER
        var names: [String] = []
        names.reserveCapacity(Int(info.nlinks))
        for i in 0..<info.nlinks {
            let length = H5Lget_name_by_idx(id, ".", index, H5_ITER_INC, i, nil, 0, bissl_H5P_DEFAULT())
            guard length >= 0 else { throw Library.error("cannot list group \(where_) in \(order) order") }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            guard H5Lget_name_by_idx(id, ".", index, H5_ITER_INC, i, &buffer, buffer.count, bissl_H5P_DEFAULT()) >= 0 else {
                throw Library.error("cannot list group \(where_) in \(order) order")
            }
            names.append(String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    /// Creates a numeric dataset with contiguous layout and no filters (readable by any HDF5 tool).
    /// - Parameters:
    ///   - shape: dimensions in C order; `[]` makes a scalar dataset, a 0 anywhere an empty one.
    /// - Throws: `HDF5Error` if the name exists or creation fails.
    public func createDataset(_ name: String, type: ElementType, shape: [Int]) throws -> Dataset {
        let fileType = try type.makeType()
        return try createDataset(name, typeID: fileType.id, shape: shape, elementType: type)
    }

    /// Creates a scalar variable-length UTF-8 string dataset holding `value` (for long text such as JSON;
    /// unlike attributes it has no 64 KiB limit).
    @discardableResult
    public func createStringDataset(_ name: String, value: String) throws -> Dataset {
        let type = try Strings.variableUTF8()
        let dataset = try createDataset(name, typeID: type.id, shape: [], elementType: nil)
        try dataset.writeStrings([value], type: type.id)
        return dataset
    }

    /// Creates a 1-D variable-length UTF-8 string dataset of `values.count` elements (may be 0).
    @discardableResult
    public func createStringDataset(_ name: String, values: [String]) throws -> Dataset {
        let type = try Strings.variableUTF8()
        let dataset = try createDataset(name, typeID: type.id, shape: [values.count], elementType: nil)
        try dataset.writeStrings(values, type: type.id)
        return dataset
    }

    private func createDataset(_ name: String, typeID: hid_t, shape: [Int], elementType: ElementType?) throws -> Dataset {
        Library.quiet()
        let full = childPath(name)
        let space = try Dataspace.make(shape, for: "dataset '\(full)'")
        let lcpl = try Self.utf8LinkCreation()
        let dcpl = Handle.plist(try Library.check(H5Pcreate(bissl_H5P_DATASET_CREATE()), "cannot create a dataset property list"))
        // No modification times in the object headers: identical content gives identical files.
        try Library.check(H5Pset_obj_track_times(dcpl.id, false), "cannot disable time tracking for '\(full)'")
        let id = try Library.check(H5Dcreate2(self.id, name, typeID, space.id, lcpl.id, dcpl.id, bissl_H5P_DEFAULT()),
                                   "cannot create dataset '\(full)' in \(fileName)")
        return Dataset(handle: Handle(id) { H5Dclose($0) }, path: full, fileName: fileName,
                       shape: shape, elementType: elementType, isString: elementType == nil)
    }

    /// Opens a child dataset and reads its shape and element type.
    /// - Throws: `HDF5Error` if it does not exist, is not a dataset, or keeps its elements outside
    ///   the file (external storage, a virtual dataset: `Dataset.requireStoredInFile`).
    public func openDataset(_ name: String) throws -> Dataset {
        Library.quiet()
        let full = childPath(name)
        guard contains(name) else { throw HDF5Error("no dataset '\(full)' in \(fileName)") }
        let id = try Library.check(H5Dopen2(self.id, name, bissl_H5P_DEFAULT()), "cannot open dataset '\(full)' in \(fileName)")
        let handle = Handle(id) { H5Dclose($0) }
        let type = Handle.type(try Library.check(H5Dget_type(id), "cannot read the datatype of '\(full)' in \(fileName)"))
        let space = Handle.space(try Library.check(H5Dget_space(id), "cannot read the dataspace of '\(full)' in \(fileName)"))
        guard let shape = try Dataspace.shape(of: space.id, for: "'\(full)' in \(fileName)") else {
            throw HDF5Error("dataset '\(full)' in \(fileName) has a null dataspace")
        }
        let dataset = Dataset(handle: handle, path: full, fileName: fileName, shape: shape,
                              elementType: ElementType(classifying: type.id), isString: H5Tget_class(type.id) == H5T_STRING)
        try dataset.requireStoredInFile()
        return dataset
    }
}

extension Group {
    /// Number of links in this group (`H5Gget_info`).
    public func childCount() throws -> Int {
        Library.quiet()
        var info = H5G_info_t()
        try Library.check(H5Gget_info(id, &info), "cannot read group \(where_)")
        return Int(info.nlinks)
    }
}
