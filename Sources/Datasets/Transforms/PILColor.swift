import Foundation

/// Pillow's colour operations on 8-bit RGB, reproduced bit for bit (libImaging Convert.c and
/// Blend.c, PIL.ImageEnhance, PIL.ImageOps.solarize) and torchvision's `adjust_hue` for PIL images.
enum PILColor {
    /// ITU-R 601-2 luma as Pillow's `convert("L")`: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
    @inline(__always) static func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
        let sum: Int = Int(r) * 19595 + Int(g) * 38470 + Int(b) * 7471
        return UInt8((sum + 0x8000) >> 16)
    }

    /// `Image.blend(degenerate, image, alpha)` (Blend.c): `in1 + alpha * (in2 - in1)` in C float,
    /// truncated to 8 bits; clipped to 0...255 when alpha is outside [0, 1].
    static func blend(_ degenerate: [UInt8], _ image: RGBImage, alpha: Float) -> RGBImage {
        var out = image
        let interpolate = alpha >= 0 && alpha <= 1
        degenerate.withUnsafeBufferPointer { d in
            image.pixels.withUnsafeBufferPointer { src in
                out.pixels.withUnsafeMutableBufferPointer { o in
                    for i in 0..<o.count {
                        let in1 = Int(d[i]), in2 = Int(src[i])
                        let temp = Float(in1) + alpha * Float(in2 - in1)
                        if interpolate {
                            o[i] = UInt8(temp)
                        } else {
                            o[i] = temp <= 0 ? 0 : temp >= 255 ? 255 : UInt8(temp)
                        }
                    }
                }
            }
        }
        return out
    }

    /// `ImageEnhance.Brightness(image).enhance(factor)`: blend with black.
    static func brightness(_ image: RGBImage, factor: Float) -> RGBImage {
        blend([UInt8](repeating: 0, count: image.pixels.count), image, alpha: factor)
    }

    /// `ImageEnhance.Contrast(image).enhance(factor)`: blend with the grey level
    /// `int(mean(convert("L")) + 0.5)`.
    static func contrast(_ image: RGBImage, factor: Float) -> RGBImage {
        var sum = 0
        let p = image.pixels
        for i in stride(from: 0, to: p.count, by: 3) { sum += Int(luma(p[i], p[i + 1], p[i + 2])) }
        let mean = Int(Double(sum) / Double(max(1, p.count / 3)) + 0.5)
        return blend([UInt8](repeating: UInt8(clamping: mean), count: p.count), image, alpha: factor)
    }

    /// `ImageEnhance.Color(image).enhance(factor)` (saturation): blend with `convert("L").convert("RGB")`.
    static func saturation(_ image: RGBImage, factor: Float) -> RGBImage {
        blend(grayscale(image).pixels, image, alpha: factor)
    }

    /// `image.convert("L").convert("RGB")`, i.e. torchvision `Grayscale(num_output_channels=3)`.
    static func grayscale(_ image: RGBImage) -> RGBImage {
        var out = image
        out.pixels.withUnsafeMutableBufferPointer { o in
            for i in stride(from: 0, to: o.count, by: 3) {
                let l = luma(o[i], o[i + 1], o[i + 2])
                o[i] = l
                o[i + 1] = l
                o[i + 2] = l
            }
        }
        return out
    }

    /// `ImageOps.solarize(image, threshold)`: values >= threshold become 255 - value.
    static func solarize(_ image: RGBImage, threshold: Int = 128) -> RGBImage {
        var out = image
        for i in 0..<out.pixels.count where Int(out.pixels[i]) >= threshold { out.pixels[i] = 255 - out.pixels[i] }
        return out
    }

    /// torchvision `F.adjust_hue` on a PIL image: convert to HSV (Pillow's rgb2hsv), add
    /// `uint8(int32(hueFactor * 255))` to H with wrap-around, convert back (Pillow's hsv2rgb).
    /// `hueFactor` in [-0.5, 0.5].
    static func hue(_ image: RGBImage, factor: Float) -> RGBImage {
        let shift = UInt8(truncatingIfNeeded: Int32(factor * 255))
        var out = image
        out.pixels.withUnsafeMutableBufferPointer { o in
            for i in stride(from: 0, to: o.count, by: 3) {
                var (h, s, v) = rgbToHSV(o[i], o[i + 1], o[i + 2])
                h = h &+ shift
                (o[i], o[i + 1], o[i + 2]) = hsvToRGB(h, s, v)
            }
        }
        return out
    }

    /// Pillow Convert.c `rgb2hsv_row` (after Python's colorsys).
    static func rgbToHSV(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> (UInt8, UInt8, UInt8) {
        let maxc = max(r, g, b), minc = min(r, g, b)
        if minc == maxc { return (0, 0, maxc) }
        let cr = Float(maxc - minc)
        let s: Float = cr / Float(maxc)
        let rc: Float = Float(maxc - r) / cr
        let gc: Float = Float(maxc - g) / cr
        let bc: Float = Float(maxc - b) / cr
        var h: Float
        if r == maxc { h = bc - gc } else if g == maxc { h = Float(2.0 + Double(rc) - Double(bc)) } else { h = Float(4.0 + Double(gc) - Double(rc)) }
        h = Float(fmod(Double(h) / 6.0 + 1.0, 1.0))
        let uh = clip8(Int(Double(h) * 255.0))
        let us = clip8(Int(Double(s) * 255.0))
        return (uh, us, maxc)
    }

    /// Pillow Convert.c `hsv2rgb`.
    static func hsvToRGB(_ h: UInt8, _ s: UInt8, _ v: UInt8) -> (UInt8, UInt8, UInt8) {
        if s == 0 { return (v, v, v) }
        let i = Int((Double(Float(h)) * 6.0 / 255.0).rounded(.down))
        let f = Float(Double(Float(h)) * 6.0 / 255.0 - Double(Float(i)))
        let fs = Float(Double(Float(s)) / 255.0)
        let fv = Double(Float(v))
        let p = clip8(Int((fv * (1.0 - Double(fs))).rounded()))
        let q = clip8(Int((fv * (1.0 - Double(fs * f))).rounded()))
        let t = clip8(Int((fv * (1.0 - Double(fs * (1 - f)))).rounded()))
        switch i % 6 {
        case 0: return (v, t, p)
        case 1: return (q, v, p)
        case 2: return (p, v, t)
        case 3: return (p, q, v)
        case 4: return (t, p, v)
        default: return (v, p, q)
        }
    }

    @inline(__always) static func clip8(_ v: Int) -> UInt8 { v <= 0 ? 0 : v >= 255 ? 255 : UInt8(v) }
}
