import CHDF5

/// Attributes on files (root group), groups and datasets: string and integer scalars and small
/// arrays. Strings are variable-length UTF-8 (h5py reads them as `str`), integers int64.
///
/// HDF5 keeps attributes in the object header, which caps one attribute near 64 KiB; writers refuse
/// anything whose payload exceeds `Object.attributeByteLimit` so unbounded lists go to datasets
/// instead.
extension Object {
    /// Largest payload (string bytes or integer bytes) one attribute may carry: 64 KiB.
    public static let attributeByteLimit = 65_536

    /// True when an attribute `name` exists on this object.
    public func hasAttribute(_ name: String) -> Bool {
        Library.quiet()
        let r = H5Aexists(id, name)
        if r < 0 { _ = H5Eclear2(bissl_H5E_DEFAULT()) }
        return r > 0
    }

    /// Names of this object's attributes in name order.
    public func attributeNames() throws -> [String] {
        Library.quiet()
        var info = H5O_info_t()
        try Library.check(H5Oget_info2(id, &info, UInt32(H5O_INFO_NUM_ATTRS)), "cannot list attributes of \(where_)")
        var names: [String] = []
        for i in 0..<info.num_attrs {
            let length = H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, bissl_H5P_DEFAULT())
            guard length >= 0 else { throw Library.error("cannot list attributes of \(where_)") }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            guard H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, buffer.count, bissl_H5P_DEFAULT()) >= 0 else {
                throw Library.error("cannot list attributes of \(where_)")
            }
            names.append(String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    /// Sets a scalar string attribute (replacing any existing one of that name).
    public func setAttribute(_ name: String, _ value: String) throws {
        try writeStringAttribute(name, [value], shape: [])
    }

    /// Sets a 1-D string-array attribute (for short, bounded lists only).
    public func setAttribute(_ name: String, _ values: [String]) throws {
        try writeStringAttribute(name, values, shape: [values.count])
    }

    /// Sets a scalar int64 attribute.
    public func setAttribute(_ name: String, _ value: Int64) throws {
        try writeIntAttribute(name, [value], shape: [])
    }

    /// Sets a 1-D int64-array attribute.
    public func setAttribute(_ name: String, _ values: [Int64]) throws {
        try writeIntAttribute(name, values, shape: [values.count])
    }

    /// The value of a scalar string attribute.
    /// - Throws: `HDF5Error` if missing, not a string, or not scalar.
    public func stringAttribute(_ name: String) throws -> String {
        let (values, shape) = try readStringAttribute(name)
        guard shape.isEmpty || shape == [1] else { throw HDF5Error("attribute '\(name)' of \(where_) is not a single string") }
        return values[0]
    }

    /// The values of a 1-D (or scalar) string attribute.
    public func stringArrayAttribute(_ name: String) throws -> [String] {
        let (values, shape) = try readStringAttribute(name)
        guard shape.count <= 1 else { throw HDF5Error("attribute '\(name)' of \(where_) is not a 1-D string array") }
        return values
    }

    /// The value of a scalar integer attribute (any stored integer width, converted to int64).
    public func intAttribute(_ name: String) throws -> Int64 {
        let (values, shape) = try readIntAttribute(name)
        guard shape.isEmpty || shape == [1] else { throw HDF5Error("attribute '\(name)' of \(where_) is not a single integer") }
        return values[0]
    }

    /// The values of a 1-D (or scalar) integer attribute.
    public func intArrayAttribute(_ name: String) throws -> [Int64] {
        let (values, shape) = try readIntAttribute(name)
        guard shape.count <= 1 else { throw HDF5Error("attribute '\(name)' of \(where_) is not a 1-D integer array") }
        return values
    }

    // MARK: - implementation

    private func createAttribute(_ name: String, type: hid_t, shape: [Int]) throws -> Handle {
        Library.quiet()
        if hasAttribute(name) {
            try Library.check(H5Adelete(id, name), "cannot replace attribute '\(name)' of \(where_)")
        }
        let space = try Dataspace.make(shape, for: "attribute '\(name)' of \(where_)")
        let acpl = Handle.plist(try Library.check(H5Pcreate(bissl_H5P_ATTRIBUTE_CREATE()), "cannot create an attribute property list"))
        try Library.check(H5Pset_char_encoding(acpl.id, H5T_CSET_UTF8), "cannot set UTF-8 attribute names")
        let attr = try Library.check(H5Acreate2(id, name, type, space.id, acpl.id, bissl_H5P_DEFAULT()),
                                     "cannot create attribute '\(name)' of \(where_)")
        return Handle(attr) { H5Aclose($0) }
    }

    private func checkLimit(_ name: String, bytes: Int) throws {
        guard bytes <= Self.attributeByteLimit else {
            throw HDF5Error("attribute '\(name)' of \(where_) would hold \(bytes) bytes; attributes are limited to "
                + "\(Self.attributeByteLimit) bytes, store the values in a dataset")
        }
    }

    private func writeStringAttribute(_ name: String, _ values: [String], shape: [Int]) throws {
        try checkLimit(name, bytes: values.reduce(0) { $0 + $1.utf8.count + 1 })
        let type = try Strings.variableUTF8()
        let attr = try createAttribute(name, type: type.id, shape: shape)
        if values.isEmpty { return }
        try Strings.withCStrings(values) { buffer in
            try Library.check(H5Awrite(attr.id, type.id, buffer), "cannot write attribute '\(name)' of \(where_)")
        }
    }

    private func writeIntAttribute(_ name: String, _ values: [Int64], shape: [Int]) throws {
        try checkLimit(name, bytes: values.count * 8)
        let type = try ElementType.int64.makeType()
        let attr = try createAttribute(name, type: type.id, shape: shape)
        if values.isEmpty { return }
        let little = values.map { $0.littleEndian }
        try little.withUnsafeBytes { raw in
            try Library.check(H5Awrite(attr.id, type.id, raw.baseAddress), "cannot write attribute '\(name)' of \(where_)")
        }
    }

    private func openAttribute(_ name: String) throws -> (attr: Handle, type: Handle, space: Handle, shape: [Int]) {
        Library.quiet()
        guard hasAttribute(name) else { throw HDF5Error("no attribute '\(name)' on \(where_)") }
        let attr = Handle(try Library.check(H5Aopen(id, name, bissl_H5P_DEFAULT()), "cannot open attribute '\(name)' of \(where_)")) {
            H5Aclose($0)
        }
        let type = Handle.type(try Library.check(H5Aget_type(attr.id), "cannot read the type of attribute '\(name)' of \(where_)"))
        let space = Handle.space(try Library.check(H5Aget_space(attr.id), "cannot read the shape of attribute '\(name)' of \(where_)"))
        guard let shape = try Dataspace.shape(of: space.id, for: "attribute '\(name)' of \(where_)") else {
            throw HDF5Error("attribute '\(name)' of \(where_) is empty (null dataspace)")
        }
        return (attr, type, space, shape)
    }

    private func readStringAttribute(_ name: String) throws -> ([String], [Int]) {
        let (attr, type, space, shape) = try openAttribute(name)
        let values = try Strings.read(fileType: type.id, space: space.id, count: shape.reduce(1, *),
                                      storedBytes: H5Aget_storage_size(attr.id), what: "attribute '\(name)' of \(where_)") { memType, buffer in
            H5Aread(attr.id, memType, buffer)
        }
        if shape.isEmpty && values.isEmpty { throw HDF5Error("attribute '\(name)' of \(where_) has no value") }
        return (values, shape)
    }

    private func readIntAttribute(_ name: String) throws -> ([Int64], [Int]) {
        let (attr, type, _, shape) = try openAttribute(name)
        guard H5Tget_class(type.id) == H5T_INTEGER else { throw HDF5Error("attribute '\(name)' of \(where_) is not an integer") }
        let count = shape.reduce(1, *)
        _ = try ReadLimits.checkedBytes(count: count, elementSize: max(H5Tget_size(type.id), 1), storedBytes: H5Aget_storage_size(attr.id),
                                        what: "attribute '\(name)' of \(where_)")
        var values = [Int64](repeating: 0, count: count)
        if count > 0 {
            try values.withUnsafeMutableBytes { raw in
                try Library.check(H5Aread(attr.id, bissl_H5T_NATIVE_INT64(), raw.baseAddress),
                                  "cannot read attribute '\(name)' of \(where_)")
            }
        }
        return (values, shape)
    }
}
