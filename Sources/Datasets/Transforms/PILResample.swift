import Foundation

/// Resizing with Pillow's convolution resampler (`Image.resize(size, BILINEAR | BICUBIC)`,
/// libImaging/Resample.c), reproduced bit for bit: the filter support grows with the downscale
/// factor (so downscaling is antialiased, as torchvision's PIL path always is), coefficients are
/// normalised, turned into 22-bit fixed point, and the image is resampled horizontally then
/// vertically with 8-bit rounding in between.
public enum Interpolation: String, Sendable, CaseIterable {
    /// Triangle filter, support 1 (PIL `Image.BILINEAR`).
    case bilinear
    /// Keys cubic with a = -0.5, support 2 (PIL `Image.BICUBIC`).
    case bicubic

    var support: Double { self == .bilinear ? 1 : 2 }

    func weight(_ x: Double) -> Double {
        let x = abs(x)
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
    }
}

enum PILResample {
    static let precisionBits = 32 - 8 - 2

    /// Per output pixel: first input index, tap count, and fixed-point weights (`ksize` per pixel).
    struct Coefficients {
        var bounds: [(Int, Int)]
        var ksize: Int
        var weights: [Int32]
    }

    /// `precompute_coeffs` + `normalize_coeffs_8bpc` of Resample.c for the box [0, inSize).
    static func coefficients(inSize: Int, outSize: Int, filter: Interpolation) -> Coefficients {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var bounds: [(Int, Int)] = []
        var weights = [Int32](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            var ww = 0.0
            let ss = 1.0 / filterScale
            var xmin = Int(center - support + 0.5)  // C (int) cast: truncation
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            for x in 0..<ksize { k[x] = 0 }
            for x in 0..<xmax {
                let w = filter.weight((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for x in 0..<xmax where ww != 0 { k[x] /= ww }
            for x in 0..<ksize {
                let v = k[x] * Double(1 << precisionBits)
                weights[xx * ksize + x] = Int32(v < 0 ? (-0.5 + v).rounded(.towardZero) : (0.5 + v).rounded(.towardZero))
            }
            bounds.append((xmin, xmax))
        }
        return Coefficients(bounds: bounds, ksize: ksize, weights: weights)
    }

    @inline(__always) static func clip8(_ v: Int) -> UInt8 {
        if v >= (1 << precisionBits) << 8 { return 255 }
        if v <= 0 { return 0 }
        return UInt8(v >> precisionBits)
    }

    /// Resizes `image` to `height` x `width` like `PIL.Image.resize((width, height), filter)`.
    static func resize(_ image: RGBImage, height: Int, width: Int, filter: Interpolation) -> RGBImage {
        precondition(height > 0 && width > 0, "resize to an empty image")
        if height == image.height && width == image.width { return image }
        var current = image
        if width != image.width {
            let c = coefficients(inSize: image.width, outSize: width, filter: filter)
            var out = [UInt8](repeating: 0, count: image.height * width * 3)
            let inWidth = image.width
            image.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    c.weights.withUnsafeBufferPointer { weights in
                        for y in 0..<image.height {
                            let row = y * inWidth * 3
                            for xx in 0..<width {
                                let (xmin, xmax) = c.bounds[xx]
                                let kBase = xx * c.ksize
                                var s0 = 1 << (precisionBits - 1), s1 = s0, s2 = s0
                                for x in 0..<xmax {
                                    let k = Int(weights[kBase + x])
                                    let p = row + (x + xmin) * 3
                                    s0 += Int(src[p]) * k
                                    s1 += Int(src[p + 1]) * k
                                    s2 += Int(src[p + 2]) * k
                                }
                                let o = (y * width + xx) * 3
                                dst[o] = clip8(s0)
                                dst[o + 1] = clip8(s1)
                                dst[o + 2] = clip8(s2)
                            }
                        }
                    }
                }
            }
            current = RGBImage(height: image.height, width: width, pixels: out, sourceChannels: image.sourceChannels)
        }
        if height != current.height {
            let c = coefficients(inSize: current.height, outSize: height, filter: filter)
            var out = [UInt8](repeating: 0, count: height * width * 3)
            let stride = width * 3
            current.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    c.weights.withUnsafeBufferPointer { weights in
                        var acc = [Int](repeating: 0, count: stride)
                        for yy in 0..<height {
                            let (ymin, ymax) = c.bounds[yy]
                            let kBase = yy * c.ksize
                            for x in 0..<stride { acc[x] = 1 << (precisionBits - 1) }
                            for y in 0..<ymax {
                                let k = Int(weights[kBase + y])
                                let rowStart = (y + ymin) * stride
                                for x in 0..<stride { acc[x] += Int(src[rowStart + x]) * k }
                            }
                            for x in 0..<stride { dst[yy * stride + x] = clip8(acc[x]) }
                        }
                    }
                }
            }
            current = RGBImage(height: height, width: width, pixels: out, sourceChannels: image.sourceChannels)
        }
        return current
    }
}
