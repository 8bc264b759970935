import CZlib
import Foundation

/// Gzip (RFC 1952) decompression through zlib's `inflateInit2` with `16 + MAX_WBITS`, which
/// reads the gzip header and checks the CRC-32 and length trailer. Concatenated members (as
/// `cat a.gz b.gz` makes, and as gzip itself accepts) are decoded one after another.
enum Gzip {
    /// True when `data` starts with the gzip magic bytes 1f 8b.
    static func isGzip(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
    }

    /// Decompresses a whole gzip file held in memory.
    /// - Throws: `DatasetError.corrupt` naming `name` when the stream is damaged or cut short.
    static func decompress(_ data: Data, name: String) throws -> Data {
        var output = Data()
        // The ISIZE trailer (length mod 2^32) is a good first guess for the output size.
        if data.count >= 18 {
            let t = data.count - 4
            let isize = Int(data[t]) | Int(data[t + 1]) << 8 | Int(data[t + 2]) << 16 | Int(data[t + 3]) << 24
            output.reserveCapacity(min(isize, 1 << 31))
        }
        try data.withUnsafeBytes { (input: UnsafeRawBufferPointer) in
            var stream = z_stream()
            guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw DatasetError.corrupt("\(name): zlib could not start")
            }
            defer { inflateEnd(&stream) }
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            let chunk = 1 << 20
            var buffer = [UInt8](repeating: 0, count: chunk)
            while true {
                let status: Int32 = buffer.withUnsafeMutableBufferPointer { b in
                    stream.next_out = b.baseAddress
                    stream.avail_out = uInt(chunk)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk - Int(stream.avail_out)
                if produced > 0 { output.append(contentsOf: buffer[0..<produced]) }
                switch status {
                case Z_STREAM_END:
                    if stream.avail_in == 0 { return }
                    guard inflateReset(&stream) == Z_OK else { throw DatasetError.corrupt("\(name): damaged gzip stream") }
                case Z_OK:
                    continue
                case Z_BUF_ERROR:
                    if stream.avail_in == 0 {
                        throw DatasetError.corrupt("\(name): gzip data ends early (truncated file)")
                    }
                    continue
                default:
                    let reason = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                    throw DatasetError.corrupt("\(name): damaged gzip stream (\(reason))")
                }
            }
        }
        return output
    }
}
