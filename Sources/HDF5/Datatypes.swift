import CHDF5
import Foundation

/// Numeric element types a dataset can hold, always stored little-endian.
///
/// `float16` is IEEE 754 binary16 built the way h5py builds it (HDF5 1.10 has no predefined half
/// type): a copy of `H5T_IEEE_F32LE` with sign bit 15, exponent at bit 10 of 5 bits, mantissa at
/// bit 0 of 10 bits, size 2 bytes and exponent bias 15; h5py reads it as `numpy.float16`.
public enum ElementType: String, CaseIterable, Sendable {
    case float64, float32, float16
    case int64, int32, int16, int8
    case uint64, uint32, uint16, uint8

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64, .uint64: return 8
        case .float32, .int32, .uint32: return 4
        case .float16, .int16, .uint16: return 2
        case .int8, .uint8: return 1
        }
    }

    /// A new HDF5 datatype for this element type (little-endian), owned by the returned handle.
    func makeType() throws -> Handle {
        Library.quiet()
        let base: hid_t
        switch self {
        case .float64: base = bissl_H5T_IEEE_F64LE()
        case .float32, .float16: base = bissl_H5T_IEEE_F32LE()
        case .int64: base = bissl_H5T_STD_I64LE()
        case .int32: base = bissl_H5T_STD_I32LE()
        case .int16: base = bissl_H5T_STD_I16LE()
        case .int8: base = bissl_H5T_STD_I8LE()
        case .uint64: base = bissl_H5T_STD_U64LE()
        case .uint32: base = bissl_H5T_STD_U32LE()
        case .uint16: base = bissl_H5T_STD_U16LE()
        case .uint8: base = bissl_H5T_STD_U8LE()
        }
        let type = Handle.type(try Library.check(H5Tcopy(base), "cannot copy the \(rawValue) datatype"))
        if self == .float16 {
            // Same construction as h5py's IEEE_F16LE: fields first, then shrink to 2 bytes, then the bias.
            try Library.check(H5Tset_fields(type.id, 15, 10, 5, 0, 10), "cannot set float16 fields")
            try Library.check(H5Tset_size(type.id, 2), "cannot set float16 size")
            try Library.check(H5Tset_ebias(type.id, 15), "cannot set float16 exponent bias")
        }
        return type
    }

    /// Classifies a stored datatype; nil for anything that is not a plain integer or float of a
    /// size listed here (strings, compounds, enums, 128-bit floats ...).
    init?(classifying type: hid_t) {
        let size = H5Tget_size(type)
        switch H5Tget_class(type) {
        case H5T_FLOAT:
            switch size {
            case 8: self = .float64
            case 4: self = .float32
            case 2: self = .float16
            default: return nil
            }
        case H5T_INTEGER:
            let signed = H5Tget_sign(type) == H5T_SGN_2
            switch (size, signed) {
            case (8, true): self = .int64
            case (4, true): self = .int32
            case (2, true): self = .int16
            case (1, true): self = .int8
            case (8, false): self = .uint64
            case (4, false): self = .uint32
            case (2, false): self = .uint16
            case (1, false): self = .uint8
            default: return nil
            }
        default:
            return nil
        }
    }
}

/// Dataspaces: `[]` is a scalar space (a 0-dim tensor), a shape containing 0 is an empty simple space.
enum Dataspace {
    static func make(_ shape: [Int], for what: @autoclosure () -> String) throws -> Handle {
        Library.quiet()
        if shape.isEmpty {
            return Handle.space(try Library.check(H5Screate(H5S_SCALAR), "cannot create a scalar dataspace for \(what())"))
        }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw HDF5Error("negative dimension in shape \(shape) for \(what())") }
        let dims = shape.map { hsize_t($0) }
        return Handle.space(try Library.check(H5Screate_simple(Int32(dims.count), dims, nil),
                                              "cannot create a dataspace of shape \(shape) for \(what())"))
    }

    /// The shape of a dataspace: `[]` for scalar, nil for a null dataspace.
    static func shape(of space: hid_t, for what: @autoclosure () -> String) throws -> [Int]? {
        switch H5Sget_simple_extent_type(space) {
        case H5S_SCALAR: return []
        case H5S_NULL: return nil
        case H5S_SIMPLE:
            let rank = Int(try Library.check(hid_t(H5Sget_simple_extent_ndims(space)), "cannot read the rank of \(what())"))
            var dims = [hsize_t](repeating: 0, count: rank)
            if rank > 0 {
                try Library.check(hid_t(H5Sget_simple_extent_dims(space, &dims, nil)), "cannot read the shape of \(what())")
            }
            guard ReadLimits.elementCount(dims) != nil else {
                throw HDF5Error("the dataspace of \(what()) declares \(dims) elements: more than fit in a 64-bit count")
            }
            return dims.map { Int($0) }
        default:
            throw Library.error("cannot read the dataspace of \(what())")
        }
    }
}

/// Variable-length and fixed-length string I/O shared by attributes and datasets.
enum Strings {
    /// A variable-length UTF-8 string type (what h5py writes for `str`).
    static func variableUTF8() throws -> Handle {
        Library.quiet()
        let type = Handle.type(try Library.check(H5Tcopy(bissl_H5T_C_S1()), "cannot copy the string datatype"))
        try Library.check(H5Tset_size(type.id, bissl_H5T_VARIABLE()), "cannot make a variable-length string type")
        try Library.check(H5Tset_cset(type.id, H5T_CSET_UTF8), "cannot set UTF-8 on the string type")
        return type
    }

    /// Calls `body` with a buffer of C string pointers (one per value) for a variable-length write.
    static func withCStrings<R>(_ values: [String], _ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = values.map { strdup($0) }
        defer { for p in pointers { free(p) } }
        return try pointers.withUnsafeMutableBufferPointer { try body(UnsafeRawPointer($0.baseAddress!)) }
    }

    /// Reads `count` strings stored with `fileType` (variable- or fixed-length).
    /// - Parameters:
    ///   - storedBytes: what the object occupies in the file (bounds the allocation, `ReadLimits`).
    ///   - read: performs `H5Aread`/`H5Dread` with the given memory type into the given buffer.
    static func read(fileType: hid_t, space: hid_t, count: Int, storedBytes: hsize_t, what: String,
                     read: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws -> [String] {
        guard H5Tget_class(fileType) == H5T_STRING else { throw HDF5Error("\(what) is not a string") }
        if count == 0 { return [] }
        let cset = H5Tget_cset(fileType)
        if H5Tis_variable_str(fileType) > 0 {
            let memType = try variableUTF8()
            try Library.check(H5Tset_cset(memType.id, cset), "cannot set the character set for \(what)")
            // Each stored variable-length string is a 16-byte global heap reference at least.
            _ = try ReadLimits.checkedBytes(count: count, elementSize: 16, storedBytes: storedBytes, what: what)
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            try pointers.withUnsafeMutableBufferPointer { buffer in
                try Library.check(read(memType.id, UnsafeMutableRawPointer(buffer.baseAddress!)), "cannot read \(what)")
            }
            let strings = pointers.map { $0.map { String(cString: $0) } ?? "" }
            _ = pointers.withUnsafeMutableBufferPointer { buffer in
                H5Dvlen_reclaim(memType.id, space, bissl_H5P_DEFAULT(), buffer.baseAddress!)
            }
            return strings
        }
        let size = H5Tget_size(fileType)
        guard size > 0 else { throw Library.error("cannot read the string size of \(what)") }
        let memType = Handle.type(try Library.check(H5Tcopy(fileType), "cannot copy the string type of \(what)"))
        var bytes = [UInt8](repeating: 0, count: try ReadLimits.checkedBytes(count: count, elementSize: size, storedBytes: storedBytes, what: what))
        try bytes.withUnsafeMutableBytes { raw in
            try Library.check(read(memType.id, raw.baseAddress!), "cannot read \(what)")
        }
        return (0..<count).map { i in
            let slice = bytes[(i * size)..<((i + 1) * size)]
            let end = slice.firstIndex(of: 0) ?? slice.endIndex
            var text = String(decoding: slice[slice.startIndex..<end], as: UTF8.self)
            if H5Tget_strpad(fileType) == H5T_STR_SPACEPAD {
                while text.hasSuffix(" ") { text.removeLast() }
            }
            return text
        }
    }
}
