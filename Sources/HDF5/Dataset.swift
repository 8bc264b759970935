import CHDF5
import Foundation

/// An HDF5 dataset: a numeric array (or scalar) read and written as raw little-endian bytes, or a
/// string / string array.
public final class Dataset: Object, @unchecked Sendable {
    /// Dimensions in C order; `[]` for a scalar dataset.
    public let shape: [Int]
    /// The numeric element type, or nil for strings and types this wrapper does not map.
    public let elementType: ElementType?
    /// True when the stored datatype is a string (fixed- or variable-length).
    public let isString: Bool

    init(handle: Handle, path: String, fileName: String, shape: [Int], elementType: ElementType?, isString: Bool) {
        self.shape = shape
        self.elementType = elementType
        self.isString = isString
        super.init(handle: handle, path: path, fileName: fileName)
    }

    /// Number of elements (1 for scalar).
    public var count: Int { shape.reduce(1, *) }

    /// Bytes of the whole array in memory: `count * elementType.size` (0 for non-numeric; `Int.max`
    /// when that overflows, which `readData` refuses).
    public var byteCount: Int {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: elementType?.size ?? 0)
        return overflow ? Int.max : bytes
    }

    /// Writes the whole dataset from little-endian bytes of its element type, in C order.
    /// - Throws: `HDF5Error` when the byte count is not `byteCount` or the write fails.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        Library.quiet()
        guard let elementType else { throw HDF5Error("dataset \(where_) is not numeric; cannot write raw bytes") }
        guard bytes.count == byteCount else {
            throw HDF5Error("dataset \(where_) of shape \(shape) needs \(byteCount) bytes, got \(bytes.count)")
        }
        if byteCount == 0 { return }
        let memType = try elementType.makeType()
        try Library.check(H5Dwrite(id, memType.id, bissl_H5S_ALL(), bissl_H5S_ALL(), bissl_H5P_DEFAULT(), bytes.baseAddress),
                          "cannot write dataset \(where_)")
    }

    /// Writes the whole dataset from `data` (see `write(_: UnsafeRawBufferPointer)`).
    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Reads the whole dataset into `buffer` as little-endian values of its element type (HDF5
    /// converts other byte orders); `buffer.count` must be `byteCount`. A contiguous uncompressed
    /// dataset of a file opened read-only is copied with one `pread` (see `DirectRead.swift`).
    /// - Throws: `HDF5Error` when the read fails or the file is shorter than the dataset claims.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws {
        Library.quiet()
        guard let elementType else { throw HDF5Error("dataset \(where_) is not a numeric array") }
        guard buffer.count == byteCount else {
            throw HDF5Error("dataset \(where_) of shape \(shape) holds \(byteCount) bytes, buffer has \(buffer.count)")
        }
        if byteCount == 0 { return }
        if try readDirect(into: buffer) { return }
        let memType = try elementType.makeType()
        try Library.check(H5Dread(id, memType.id, bissl_H5S_ALL(), bissl_H5S_ALL(), bissl_H5P_DEFAULT(), buffer.baseAddress),
                          "cannot read dataset \(where_)")
    }

    /// Reads the whole dataset into a new `Data` of `byteCount` bytes, straight from HDF5 into the
    /// buffer (no per-element work, no zero-fill).
    /// - Throws: `HDF5Error` when the dataset declares more bytes than its storage in the file can
    ///   hold (`ReadLimits`), before anything is allocated.
    public func readData() throws -> Data {
        guard let elementType else { throw HDF5Error("dataset \(where_) is not a numeric array") }
        let n = try ReadLimits.checkedBytes(count: count, elementSize: elementType.size, storedBytes: H5Dget_storage_size(id),
                                            what: "dataset \(where_)")
        if n == 0 { return Data() }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        do {
            try read(into: UnsafeMutableRawBufferPointer(start: memory, count: n))
        } catch {
            memory.deallocate()
            throw error
        }
        return Data(bytesNoCopy: memory, count: n, deallocator: .custom { pointer, _ in pointer.deallocate() })
    }

    /// The string of a scalar string dataset.
    /// - Throws: `HDF5Error` if the dataset is not a scalar string.
    public func readString() throws -> String {
        guard shape.isEmpty else { throw HDF5Error("dataset \(where_) is not a scalar string (shape \(shape))") }
        return try readAllStrings()[0]
    }

    /// The strings of a 1-D (or scalar) string dataset, in order.
    public func readStrings() throws -> [String] {
        guard shape.count <= 1 else { throw HDF5Error("dataset \(where_) is not a 1-D string array (shape \(shape))") }
        return try readAllStrings()
    }

    private func readAllStrings() throws -> [String] {
        Library.quiet()
        let type = Handle.type(try Library.check(H5Dget_type(id), "cannot read the datatype of \(where_)"))
        let space = Handle.space(try Library.check(H5Dget_space(id), "cannot read the dataspace of \(where_)"))
        return try Strings.read(fileType: type.id, space: space.id, count: count, storedBytes: H5Dget_storage_size(id),
                                what: "dataset \(where_)") { memType, buffer in
            H5Dread(id, memType, bissl_H5S_ALL(), bissl_H5S_ALL(), bissl_H5P_DEFAULT(), buffer)
        }
    }

    func writeStrings(_ values: [String], type: hid_t) throws {
        guard values.count == count else { throw HDF5Error("dataset \(where_) holds \(count) strings, got \(values.count)") }
        if values.isEmpty { return }
        try Strings.withCStrings(values) { buffer in
            try Library.check(H5Dwrite(id, type, bissl_H5S_ALL(), bissl_H5S_ALL(), bissl_H5P_DEFAULT(), buffer),
                              "cannot write strings to \(where_)")
        }
    }
}
