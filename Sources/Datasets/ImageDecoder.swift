import CJPEG
import CPNG
import Foundation

/// PNG and JPEG decoding through the system libpng and libjpeg-turbo. The decoding itself runs in
/// the C functions `bissl_png_decode` / `bissl_jpeg_decode` (Sources/CPNG, Sources/CJPEG shim.h),
/// which keep the libraries' setjmp/longjmp error handling inside C and return an error code and
/// message instead.
public enum ImageDecoder {
    public enum Format: String, Sendable { case png, jpeg }

    /// The most pixels an image may have (2^26, e.g. 8192 x 8192: 192 MiB decoded). Checked from
    /// the header (PNG IHDR, JPEG frame header) before the decoder allocates the image; libjpeg's
    /// working memory is capped at 8 bytes per allowed pixel.
    public static let maxPixels = 1 << 26

    /// The format of `data` from its signature (`89 50 4E 47 0D 0A 1A 0A` or `FF D8 FF`), or nil.
    public static func format(of data: Data) -> Format? {
        let b = [UInt8](data.prefix(8))
        if b.count >= 8 && b == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        if b.count >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF { return .jpeg }
        return nil
    }

    /// Decodes a PNG or JPEG file's bytes to 8-bit RGB (see `RGBImage`).
    ///
    /// PNG: palette expanded, gray of any depth replicated to RGB, alpha dropped without
    /// compositing (PIL `Image.convert("RGB")`), 16-bit samples reduced to their high byte.
    /// JPEG: libjpeg defaults (islow IDCT, fancy upsampling; PIL's settings), gray replicated;
    /// CMYK/YCCK refused.
    /// - Parameter name: the file name used in error messages.
    /// - Throws: `DatasetError.corrupt` (damaged or truncated file, unknown signature, more than
    ///   `maxPixels` pixels) or `.unsupported` (CMYK JPEG), with `name` in the message.
    public static func decode(_ data: Data, name: String) throws -> RGBImage {
        guard let format = format(of: data) else {
            throw DatasetError.corrupt("\(name): not a PNG or JPEG file (unknown signature)")
        }
        var out: UnsafeMutablePointer<UInt8>?
        var width: UInt32 = 0
        var height: UInt32 = 0
        var sourceChannels: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status: Int32 = data.withUnsafeBytes { p in
            let base = p.bindMemory(to: UInt8.self).baseAddress
            switch format {
            case .png: return bissl_png_decode(base, p.count, &out, &width, &height, &sourceChannels, UInt64(maxPixels), &message, message.count)
            case .jpeg: return bissl_jpeg_decode(base, p.count, &out, &width, &height, &sourceChannels, UInt64(maxPixels), &message, message.count)
            }
        }
        guard status == 0, let out else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if status == 2 { throw DatasetError.unsupported("\(name): \(reason)") }
            throw DatasetError.corrupt("\(name): damaged \(format == .png ? "PNG" : "JPEG") (\(reason))")
        }
        defer { free(out) }
        guard width > 0, height > 0 else { throw DatasetError.corrupt("\(name): the image is \(height)x\(width) pixels") }
        let count = Int(width) * Int(height) * 3
        return RGBImage(height: Int(height), width: Int(width), pixels: Array(UnsafeBufferPointer(start: out, count: count)),
                        sourceChannels: Int(sourceChannels))
    }
}
