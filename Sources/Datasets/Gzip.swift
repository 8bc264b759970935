import CZlib
import Foundation

/// Gzip (RFC 1952) decompression through zlib's `inflateInit2` with `16 + MAX_WBITS`, which
/// reads the gzip header and checks the CRC-32 and length trailer. Concatenated members (as
/// `cat a.gz b.gz` makes, and as gzip itself accepts) are decoded one after another.
///
/// Output is bounded before it is produced: callers say how many bytes they accept, inflating
/// stops there, and no buffer larger than that (nor than `maxRatio` times the input) is reserved.
enum Gzip {
    /// DEFLATE's largest expansion (`bissl_deflate_max_expansion`, Sources/CZlib/shim.h): a valid
    /// stream of n bytes never decodes to more than `maxRatio * n` bytes.
    static let maxRatio = Int(bissl_deflate_max_expansion)

    /// True when `data` starts with the gzip magic bytes 1f 8b.
    static func isGzip(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
    }

    /// The first `count` decompressed bytes (fewer if the stream is shorter); the rest is not inflated.
    /// - Throws: `DatasetError.corrupt` naming `name` when those bytes are damaged.
    static func prefix(_ data: Data, count: Int, name: String) throws -> Data {
        try inflate(data, name: name, limit: count, stopAtLimit: true)
    }

    /// Decompresses a whole gzip file held in memory, refusing it as soon as it would decode to more
    /// than `maxBytes` bytes.
    /// - Throws: `DatasetError.corrupt` naming `name` when the stream is damaged, cut short, or longer
    ///   than `maxBytes`.
    static func decompress(_ data: Data, name: String, maxBytes: Int) throws -> Data {
        try inflate(data, name: name, limit: maxBytes, stopAtLimit: false)
    }

    private static func inflate(_ data: Data, name: String, limit: Int, stopAtLimit: Bool) throws -> Data {
        var output = Data()
        let (bound, overflow) = data.count.multipliedReportingOverflow(by: maxRatio)
        output.reserveCapacity(min(limit, overflow ? limit : bound, 1 << 30))
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
                // Ask for at most one byte past the limit: enough to tell "longer than allowed".
                let room = min(chunk, limit - output.count + 1)
                if room <= 0 || (stopAtLimit && output.count >= limit) { break }
                let status: Int32 = buffer.withUnsafeMutableBufferPointer { b in
                    stream.next_out = b.baseAddress
                    stream.avail_out = uInt(room)
                    return CZlib.inflate(&stream, Z_NO_FLUSH)
                }
                let produced = room - Int(stream.avail_out)
                if produced > 0 { output.append(contentsOf: buffer[0..<produced]) }
                if output.count > limit {
                    if stopAtLimit { break }
                    throw DatasetError.corrupt("\(name): gzip data decodes to more than the \(limit) bytes expected")
                }
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
        return stopAtLimit ? output.prefix(limit) : output
    }
}
