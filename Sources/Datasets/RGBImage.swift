/// One decoded image: 8-bit RGB, row-major HWC (`pixels[(y * width + x) * 3 + c]`, c = R, G, B).
/// Grayscale sources are replicated to three equal channels (PIL `convert("RGB")` semantics).
public struct RGBImage: Equatable, Sendable {
    public var height: Int
    public var width: Int
    /// `height * width * 3` bytes.
    public var pixels: [UInt8]
    /// Channels in the source before conversion: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (alpha dropped).
    public var sourceChannels: Int

    public init(height: Int, width: Int, pixels: [UInt8], sourceChannels: Int = 3) {
        precondition(pixels.count == height * width * 3, "RGBImage needs height*width*3 bytes")
        self.height = height
        self.width = width
        self.pixels = pixels
        self.sourceChannels = sourceChannels
    }

    /// Builds an RGB image from `channels`-interleaved bytes (1 = gray, replicated; 3 = RGB).
    init(height: Int, width: Int, interleaved: UnsafeBufferPointer<UInt8>, channels: Int) {
        if channels == 3 {
            self.init(height: height, width: width, pixels: Array(interleaved), sourceChannels: 3)
            return
        }
        var out = [UInt8](repeating: 0, count: height * width * 3)
        out.withUnsafeMutableBufferPointer { o in
            for i in 0..<(height * width) {
                let v = interleaved[i]
                o[3 * i] = v
                o[3 * i + 1] = v
                o[3 * i + 2] = v
            }
        }
        self.init(height: height, width: width, pixels: out, sourceChannels: 1)
    }
}
