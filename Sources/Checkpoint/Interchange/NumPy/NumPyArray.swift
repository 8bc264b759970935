import Foundation

/// Reads and writes single arrays in NumPy's `.npy` format
/// (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
///
/// Layout: magic `\x93NUMPY`, major and minor version (1.0, 2.0 or 3.0), header length (uint16 LE
/// for 1.0, uint32 LE for 2.0/3.0), the header dict (Latin-1, UTF-8 for 3.0) padded with spaces and
/// a newline so the data starts at a multiple of 64 bytes, then the raw data.
///
/// Readable dtypes (`descr`, any byte order `<` `>` `|` `=`): `f8 f4 f2 i8 i4 i2 i1 u1 b1`. Big-endian
/// data is byte-swapped and Fortran-ordered data (`fortran_order: True`) transposed, so the result
/// is always a C-contiguous little-endian `Tensor`; 0-dim arrays get shape `[]`, empty arrays a
/// shape containing 0. Object arrays (`|O`) are refused without unpickling anything.
public enum NumPyArray {
    /// An array as decoded, before its dtype is mapped to a `DType`.
    struct Decoded {
        /// NumPy kind and item size after byte-order normalisation, e.g. `f4`, `u2`, `b1`.
        var code: String
        var shape: [Int]
        /// C-ordered, little-endian.
        var data: Data
        /// Non-fatal findings (trailing bytes after the data).
        var warnings: [String]
    }

    static let dtypeByCode: [String: DType] = [
        "f8": .float64, "f4": .float32, "f2": .float16, "i8": .int64, "i4": .int32, "i2": .int16,
        "i1": .int8, "u1": .uint8, "b1": .bool,
    ]

    /// The `.npy` type code (without byte order) bissl writes for `dtype`; bfloat16 has no NumPy
    /// dtype and is written as its raw bits, `u2` (see `NumPyArchive`).
    static func code(of dtype: DType) -> String {
        switch dtype {
        case .float64: return "f8"
        case .float32: return "f4"
        case .float16: return "f2"
        case .bfloat16: return "u2"
        case .int64: return "i8"
        case .int32: return "i4"
        case .int16: return "i2"
        case .int8: return "i1"
        case .uint8: return "u1"
        case .bool: return "b1"
        }
    }

    /// Reads a standalone `.npy` file.
    /// - Returns: the array as a C-contiguous little-endian tensor.
    /// - Throws: as `decode(_:name:)`; `CheckpointError.io` when the file cannot be read.
    public static func read(_ url: URL) throws -> Tensor {
        let file = try MappedFile(url)   // refuses FIFOs, devices and sockets before opening them
        return try decode(file.data(0, file.size), name: url.lastPathComponent)
    }

    /// Decodes the bytes of one `.npy` array.
    /// - Parameter name: file or member name used in messages.
    /// - Throws: `CheckpointError.corrupt` for a bad magic, version, header or too little data;
    ///   `.unsafe` for object arrays; `.unsupported` for other dtypes (`<u2`, `<c8`, strings, structured).
    public static func decode(_ data: Data, name: String) throws -> Tensor {
        let d = try decodeRaw(data, name: name)
        guard let dtype = dtypeByCode[d.code] else {
            throw CheckpointError.unsupported("\(name): NumPy dtype '\(d.code)' is not supported (supported: \(dtypeByCode.keys.sorted().joined(separator: " ")))")
        }
        return try Tensor(dtype: dtype, shape: d.shape, data: d.data)
    }

    /// Decodes a `.npy` array to C order and little-endian, keeping its NumPy type code.
    static func decodeRaw(_ bytes: Data, name: String) throws -> Decoded {
        func corrupt(_ m: String) -> CheckpointError { .corrupt("\(name): \(m)") }
        let data = bytes.startIndex == 0 ? bytes : Data(bytes)
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard data.count >= 10, Array(data.prefix(6)) == magic else {
            throw corrupt("not a .npy array (no \\x93NUMPY magic)")
        }
        let major = data[6], minor = data[7]
        let headerLength: Int, headerStart: Int
        switch (major, minor) {
        case (1, 0):
            headerLength = Int(data[8]) | Int(data[9]) << 8
            headerStart = 10
        case (2, 0), (3, 0):
            guard data.count >= 12 else { throw corrupt("truncated .npy header") }
            headerLength = Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
            headerStart = 12
        default:
            throw CheckpointError.unsupported("\(name): .npy format version \(major).\(minor) is not supported (1.0, 2.0, 3.0 are)")
        }
        let dataStart = headerStart + headerLength
        guard dataStart <= data.count else {
            throw corrupt("truncated .npy header: it claims \(headerLength) bytes, \(data.count - headerStart) remain")
        }
        let headerBytes = data.subdata(in: headerStart..<dataStart)
        let text: String
        if major == 3 {
            guard let s = String(data: headerBytes, encoding: .utf8) else { throw corrupt("the array header is not valid UTF-8") }
            text = s
        } else {
            text = String(String.UnicodeScalarView(headerBytes.map { Unicode.Scalar($0) }))  // Latin-1
        }
        let header: NumPyHeader
        do {
            header = try NumPyHeader.parse(text)
        } catch let f as NumPyHeader.Failure {
            switch f.kind {
            case .corrupt: throw corrupt(f.reason)
            case .unsafe: throw CheckpointError.unsafe("\(name) \(f.reason)")
            case .unsupported: throw CheckpointError.unsupported("\(name) \(f.reason)")
            }
        }

        // descr: byte order + kind + size.
        let descr = header.descr
        guard descr.count >= 3, let order = descr.first, "<>|=".contains(order) else {
            throw CheckpointError.unsupported("\(name): NumPy dtype '\(descr)' is not supported")
        }
        let code = String(descr.dropFirst())
        guard let kind = code.first, "fiub".contains(kind), let size = Int(code.dropFirst()), [1, 2, 4, 8].contains(size) else {
            throw CheckpointError.unsupported("\(name): NumPy dtype '\(descr)' is not supported (supported: \(dtypeByCode.keys.sorted().joined(separator: " ")))")
        }

        guard let needed = ([size] + header.shape).checkedProduct else { throw corrupt("shape \(header.shape) is too large") }
        let available = data.count - dataStart
        guard available >= needed else {
            throw corrupt("truncated array data: shape \(header.shape) of '\(descr)' needs \(needed) bytes, \(available) present")
        }
        var warnings: [String] = []
        if available > needed {
            warnings.append("\(name): \(available - needed) bytes after the array data were ignored")
        }
        var payload = data.subdata(in: dataStart..<(dataStart + needed))
        if order == ">" && size > 1 { byteSwap(&payload, size: size) }
        if header.fortranOrder && header.shape.count > 1 && needed > 0 {
            payload = fortranToC(payload, shape: header.shape, size: size)
        }
        return Decoded(code: code, shape: header.shape, data: payload, warnings: warnings)
    }

    /// Encodes a tensor as a `.npy` array exactly as `numpy.save` writes it: version 1.0 (2.0 when the
    /// header does not fit in 65535 bytes), little-endian `descr`, C order, header padded with spaces
    /// and a newline so the data starts at a multiple of 64 bytes (`_wrap_header`).
    /// bfloat16 is written as `<u2` raw bit patterns (NumPy has no bfloat16).
    public static func encode(_ tensor: Tensor) -> Data {
        let c = code(of: tensor.dtype)
        let order = tensor.dtype.size == 1 ? "|" : "<"
        let dict = NumPyHeader(descr: order + c, fortranOrder: false, shape: tensor.shape).text
        var header = Array(dict.utf8)  // ASCII: descr and digits only
        // _wrap_header: hlen = len(header) + 1 (newline); padlen = 64 - ((magic + len field + hlen) % 64);
        // version 1.0 unless hlen + padlen overflows its uint16 length field.
        let hlen = header.count + 1
        var version: UInt8 = 1
        var lengthField = 2
        var padlen = 64 - ((6 + 2 + lengthField + hlen) % 64)
        if hlen + padlen > 0xFFFF {
            version = 2
            lengthField = 4
            padlen = 64 - ((6 + 2 + lengthField + hlen) % 64)
        }
        header += [UInt8](repeating: 0x20, count: padlen)
        header.append(0x0A)
        var out = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0])
        var n = UInt32(header.count)
        out.append(contentsOf: withUnsafeBytes(of: &n) { Array($0.prefix(lengthField)) })
        out.append(contentsOf: header)
        out.append(tensor.data)
        return out
    }

    /// Reverses the bytes of every `size`-byte element in place.
    static func byteSwap(_ data: inout Data, size: Int) {
        data.withUnsafeMutableBytes { raw in
            switch size {
            case 2:
                let p = raw.bindMemory(to: UInt16.self)
                for i in p.indices { p[i] = p[i].byteSwapped }
            case 4:
                let p = raw.bindMemory(to: UInt32.self)
                for i in p.indices { p[i] = p[i].byteSwapped }
            case 8:
                let p = raw.bindMemory(to: UInt64.self)
                for i in p.indices { p[i] = p[i].byteSwapped }
            default:
                break
            }
        }
    }

    /// Reorders column-major (Fortran) data of `shape` into row-major (C) order.
    /// A Fortran array of shape `s` is a C array of shape `reversed(s)`; element `(i0, ..., ik)` sits at
    /// `sum(ij * prod(s[0..<j]))`. Walks the output in C order with an odometer over the source offset.
    static func fortranToC(_ source: Data, shape: [Int], size: Int) -> Data {
        let n = shape.count
        var strides = [Int](repeating: 1, count: n)  // Fortran strides, in elements
        for k in 1..<n { strides[k] = strides[k - 1] * shape[k - 1] }
        let count = shape.reduce(1, *)
        var out = Data(count: count * size)
        source.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                func run<T>(_: T.Type) {
                    let s = src.bindMemory(to: T.self), d = dst.bindMemory(to: T.self)
                    var index = [Int](repeating: 0, count: n)
                    var offset = 0
                    let last = n - 1, innerStride = strides[last], innerCount = shape[last]
                    var o = 0
                    while o < count {
                        // innermost axis in one run
                        var so = offset
                        for _ in 0..<innerCount { d[o] = s[so]; so += innerStride; o += 1 }
                        // carry into the outer axes
                        var k = last - 1
                        while k >= 0 {
                            index[k] += 1
                            offset += strides[k]
                            if index[k] < shape[k] { break }
                            offset -= strides[k] * shape[k]
                            index[k] = 0
                            k -= 1
                        }
                    }
                }
                switch size {
                case 1: run(UInt8.self)
                case 2: run(UInt16.self)
                case 4: run(UInt32.self)
                default: run(UInt64.self)
                }
            }
        }
        return out
    }
}
