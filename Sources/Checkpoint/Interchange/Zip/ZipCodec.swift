import CZlib
import Foundation

/// zlib primitives used by the ZIP reader and writer: CRC-32 (the ZIP/PNG polynomial, as
/// APPNOTE 4.4.7 specifies) and raw DEFLATE (RFC 1951, no zlib header: window bits -15, as
/// APPNOTE 4.4.5 method 8 stores it).
///
/// All functions take arbitrary sizes; zlib's 32-bit length parameters are fed in chunks.
enum ZipCodec {
    /// Largest chunk handed to zlib in one call (its lengths are `uInt`).
    private static let chunk = 1 << 30

    /// CRC-32 of `bytes`, continuing from `crc` (0 to start), computed by zlib's `crc32`.
    static func crc32(_ bytes: UnsafeRawBufferPointer, crc: UInt32 = 0) -> UInt32 {
        var value = uLong(crc)
        guard var p = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self) else { return crc }
        var left = bytes.count
        while left > 0 {
            let n = min(left, chunk)
            value = CZlib.crc32(value, p, uInt(n))
            p += n
            left -= n
        }
        return UInt32(truncatingIfNeeded: value)
    }

    /// CRC-32 of `data`.
    static func crc32(_ data: Data) -> UInt32 {
        data.withUnsafeBytes { crc32($0) }
    }

    /// Inflates a raw DEFLATE stream that must expand to exactly `expectedSize` bytes.
    /// - Throws: `CheckpointError.corrupt` naming `name` when the stream is invalid, ends early,
    ///   expands to a different size, or declares more than DEFLATE can expand its bytes to (checked
    ///   before the output is allocated).
    static func inflate(_ input: Data, expectedSize: Int, name: String) throws -> Data {
        // Refused before allocating: no DEFLATE stream expands beyond bissl_deflate_max_expansion.
        let (bound, overflow) = input.count.multipliedReportingOverflow(by: Int(bissl_deflate_max_expansion))
        guard expectedSize >= 0, overflow || expectedSize <= bound + 64 else {
            throw CheckpointError.corrupt(
                "\(name) declares \(expectedSize) bytes but its \(input.count) compressed bytes cannot inflate to more than \(bound)")
        }
        var output = Data(count: expectedSize)
        var stream = z_stream()
        guard inflateInit2_(&stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw CheckpointError.io("zlib could not start inflating \(name)")
        }
        defer { inflateEnd(&stream) }
        let produced: Int = try input.withUnsafeBytes { (src: UnsafeRawBufferPointer) -> Int in
            try output.withUnsafeMutableBytes { (dst: UnsafeMutableRawBufferPointer) -> Int in
                var inLeft = src.count
                var outLeft = dst.count
                // A 1-byte dummy target lets zlib report trailing output beyond expectedSize.
                var spare: UInt8 = 0
                stream.next_in = UnsafeMutablePointer(mutating: src.baseAddress?.assumingMemoryBound(to: Bytef.self))
                stream.next_out = dst.baseAddress?.assumingMemoryBound(to: Bytef.self)
                while true {
                    let feedIn = min(inLeft, chunk)
                    let feedOut = min(outLeft, chunk)
                    stream.avail_in = uInt(feedIn)
                    if feedOut == 0 {
                        withUnsafeMutablePointer(to: &spare) { stream.next_out = $0 }
                        stream.avail_out = 1
                    } else {
                        stream.avail_out = uInt(feedOut)
                    }
                    let status = CZlib.inflate(&stream, Z_NO_FLUSH)
                    let consumed = feedIn - Int(stream.avail_in)
                    inLeft -= consumed
                    if feedOut == 0 {
                        if stream.avail_out == 0 {
                            throw CheckpointError.corrupt("\(name) inflates to more than the \(expectedSize) bytes its header declares")
                        }
                    } else {
                        outLeft -= feedOut - Int(stream.avail_out)
                    }
                    switch status {
                    case Z_STREAM_END:
                        return dst.count - outLeft
                    case Z_OK:
                        continue
                    case Z_BUF_ERROR where inLeft == 0:
                        throw CheckpointError.corrupt("\(name): compressed data ends early (truncated deflate stream)")
                    case Z_BUF_ERROR:
                        continue
                    default:
                        let msg = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                        throw CheckpointError.corrupt("\(name): invalid deflate data (\(msg))")
                    }
                }
            }
        }
        guard produced == expectedSize else {
            throw CheckpointError.corrupt("\(name) inflates to \(produced) bytes, its header declares \(expectedSize)")
        }
        return output
    }

    /// Compresses `input` to a raw DEFLATE stream (zlib level 6, the default of `zipfile` and miniz).
    static func deflate(_ input: Data) throws -> Data {
        var stream = z_stream()
        guard deflateInit2_(&stream, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
                            Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw CheckpointError.io("zlib could not start deflating")
        }
        defer { deflateEnd(&stream) }
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        try input.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
            var inLeft = src.count
            stream.next_in = UnsafeMutablePointer(mutating: src.baseAddress?.assumingMemoryBound(to: Bytef.self))
            while true {
                let feed = min(inLeft, chunk)
                stream.avail_in = uInt(feed)
                let flush = inLeft - feed == 0 ? Z_FINISH : Z_NO_FLUSH
                var status: Int32 = Z_OK
                repeat {
                    status = buffer.withUnsafeMutableBufferPointer { out -> Int32 in
                        stream.next_out = out.baseAddress
                        stream.avail_out = uInt(out.count)
                        let s = CZlib.deflate(&stream, flush)
                        output.append(out.baseAddress!, count: out.count - Int(stream.avail_out))
                        return s
                    }
                    guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                        throw CheckpointError.io("zlib deflate failed with status \(status)")
                    }
                } while stream.avail_out == 0
                inLeft -= feed - Int(stream.avail_in)
                if flush == Z_FINISH {
                    if status == Z_STREAM_END { return }
                }
            }
        }
        return output
    }
}
