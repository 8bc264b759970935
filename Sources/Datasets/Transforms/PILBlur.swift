import Foundation

/// `image.filter(ImageFilter.GaussianBlur(radius))`: Pillow approximates a Gaussian of standard
/// deviation `radius` by three passes of an extended box blur (libImaging BoxBlur.c, after Gwosdek
/// et al., SSVM 2011), horizontally then vertically, in 8-bit fixed point. Reproduced bit for bit.
enum PILBlur {
    /// The extended box radius for `passes` passes (`_gaussian_blur_radius` of BoxBlur.c), in C float.
    static func boxRadius(_ radius: Float, passes: Int) -> Float {
        let sigma2: Float = radius * radius / Float(passes)
        let L: Float = Float((12.0 * Double(sigma2) + 1.0).squareRoot())
        let l: Float = Float(((Double(L) - 1.0) / 2.0).rounded(.down))
        var a: Float = (2 * l + 1) * (l * (l + 1) - 3 * sigma2)
        a /= 6 * (sigma2 - (l + 1) * (l + 1))
        return l + a
    }

    static func gaussianBlur(_ image: RGBImage, radius: Float, passes: Int = 3) -> RGBImage {
        if radius == 0 { return image }
        let r = boxRadius(radius, passes: passes)
        var out = image
        guard r != 0 else { return out }
        // horizontal passes over rows
        for _ in 0..<passes { out.pixels = horizontal(out.pixels, height: out.height, width: out.width, radius: r) }
        // vertical passes: transpose, blur rows, transpose back
        var t = transpose(out.pixels, height: out.height, width: out.width)
        for _ in 0..<passes { t = horizontal(t, height: out.width, width: out.height, radius: r) }
        out.pixels = transpose(t, height: out.width, width: out.height)
        return out
    }

    static func transpose(_ p: [UInt8], height: Int, width: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: p.count)
        p.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    for x in 0..<width {
                        let a = (x * height + y) * 3, b = (y * width + x) * 3
                        dst[a] = src[b]
                        dst[a + 1] = src[b + 1]
                        dst[a + 2] = src[b + 2]
                    }
                }
            }
        }
        return out
    }

    /// `ImagingHorizontalBoxBlur` + `BoxBlurLine` for every row.
    static func horizontal(_ p: [UInt8], height: Int, width: Int, radius floatRadius: Float) -> [UInt8] {
        let radius = Int(floatRadius)
        let ww = UInt32(Float(1 << 24) / (floatRadius * 2 + 1))
        let fw = UInt32((UInt32(1 << 24) &- UInt32(radius * 2 + 1) &* ww) / 2)
        let edgeA = min(radius + 1, width)
        let edgeB = max(width - radius - 1, 0)
        let lastx = width - 1
        var out = [UInt8](repeating: 0, count: p.count)
        p.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    for c in 0..<3 {
                        line(src, dst, base: y * width * 3 + c, radius: radius, edgeA: edgeA, edgeB: edgeB, lastx: lastx, ww: ww, fw: fw)
                    }
                }
            }
        }
        return out
    }

    /// `BoxBlurLine` of BoxBlur.c for one channel of one row starting at `base` (stride 3).
    @inline(__always)
    private static func line(_ src: UnsafeBufferPointer<UInt8>, _ dst: UnsafeMutableBufferPointer<UInt8>, base: Int,
                             radius: Int, edgeA: Int, edgeB: Int, lastx: Int, ww: UInt32, fw: UInt32) {
        @inline(__always) func px(_ x: Int) -> UInt32 { UInt32(src[base + x * 3]) }
        var acc: UInt32 = px(0) &* UInt32(radius + 1)
        var x = 0
        while x < edgeA - 1 { acc = acc &+ px(x); x += 1 }
        acc = acc &+ px(lastx) &* UInt32(truncatingIfNeeded: radius - edgeA + 1)
        @inline(__always) func step(_ x: Int, _ sub: Int, _ add: Int, _ left: Int, _ right: Int) {
            acc = acc &+ px(add) &- px(sub)
            let bulk = acc &* ww &+ (px(left) &+ px(right)) &* fw
            dst[base + x * 3] = UInt8(truncatingIfNeeded: (bulk &+ (1 << 23)) >> 24)
        }
        if edgeA <= edgeB {
            for x in 0..<edgeA { step(x, 0, x + radius, 0, x + radius + 1) }
            for x in edgeA..<max(edgeA, edgeB) { step(x, x - radius - 1, x + radius, x - radius - 1, x + radius + 1) }
            for x in edgeB...lastx { step(x, x - radius - 1, lastx, x - radius - 1, lastx) }
        } else {
            for x in 0..<edgeB { step(x, 0, x + radius, 0, x + radius + 1) }
            for x in edgeB..<edgeA { step(x, 0, lastx, 0, lastx) }
            if edgeA <= lastx { for x in edgeA...lastx { step(x, x - radius - 1, lastx, x - radius - 1, lastx) } }
        }
    }
}
