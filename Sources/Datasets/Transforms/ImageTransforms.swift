import Foundation

/// The augmentations of the paper's recipe (docs/bissl.md, "Augmentations and pixel scale"), each matching the
/// torchvision transform applied to a PIL image (torchvision.transforms.functional's PIL path,
/// which calls Pillow), so results equal torchvision's bit for bit given the same parameters.
/// All take and return 8-bit RGB HWC images.
public enum ImageTransforms {
    /// A crop rectangle: top row `i`, left column `j`, height `h`, width `w` (torchvision order).
    public struct CropBox: Equatable, Sendable {
        public var i: Int, j: Int, h: Int, w: Int
        public init(i: Int, j: Int, h: Int, w: Int) { self.i = i; self.j = j; self.h = h; self.w = w }
    }

    /// `PIL.Image.resize((width, height), interpolation)` (torchvision `F.resize` on PIL; always antialiased).
    public static func resize(_ image: RGBImage, height: Int, width: Int, interpolation: Interpolation) -> RGBImage {
        PILResample.resize(image, height: height, width: width, filter: interpolation)
    }

    /// torchvision `Resize(size)` with an int size: the shorter side becomes `size`, the longer
    /// `int(size * long / short)` (truncated).
    public static func resizeShorterSide(_ image: RGBImage, to size: Int, interpolation: Interpolation) -> RGBImage {
        let short = min(image.height, image.width), long = max(image.height, image.width)
        let newLong = Int(Double(size) * Double(long) / Double(short))
        let (h, w) = image.height <= image.width ? (size, newLong) : (newLong, size)
        return resize(image, height: h, width: w, interpolation: interpolation)
    }

    /// The sub-image rows `i..<i+h`, columns `j..<j+w` (must lie inside the image).
    public static func crop(_ image: RGBImage, _ box: CropBox) -> RGBImage {
        precondition(box.i >= 0 && box.j >= 0 && box.h > 0 && box.w > 0 && box.i + box.h <= image.height && box.j + box.w <= image.width,
                     "crop \(box) outside a \(image.height)x\(image.width) image")
        var out = [UInt8](repeating: 0, count: box.h * box.w * 3)
        for y in 0..<box.h {
            let src = ((box.i + y) * image.width + box.j) * 3
            out.replaceSubrange((y * box.w * 3)..<((y + 1) * box.w * 3), with: image.pixels[src..<(src + box.w * 3)])
        }
        return RGBImage(height: box.h, width: box.w, pixels: out, sourceChannels: image.sourceChannels)
    }

    /// torchvision `F.center_crop` for a crop no larger than the image: top `int(round((H - h) / 2))`,
    /// left `int(round((W - w) / 2))`, with Python's round-half-to-even.
    public static func centerCrop(_ image: RGBImage, height: Int, width: Int) -> RGBImage {
        let top = Int((Double(image.height - height) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(image.width - width) / 2).rounded(.toNearestOrEven))
        return crop(image, CropBox(i: top, j: left, h: height, w: width))
    }

    /// Mirror left-right (`PIL.Image.transpose(FLIP_LEFT_RIGHT)`).
    public static func horizontalFlip(_ image: RGBImage) -> RGBImage {
        var out = image
        for y in 0..<image.height {
            for x in 0..<image.width {
                for c in 0..<3 { out.pixels[(y * image.width + x) * 3 + c] = image.pixels[(y * image.width + image.width - 1 - x) * 3 + c] }
            }
        }
        return out
    }

    /// torchvision `RandomResizedCrop.get_params`: up to 10 tries of an area fraction
    /// `U(scale)` and an aspect ratio `exp(U(log ratio))` (width / height), `w = round(sqrt(A*r))`,
    /// `h = round(sqrt(A/r))`, accepted when it fits, placed uniformly; else the central crop with
    /// the ratio clamped to `ratio`. `uniform()` must return values in [0, 1); each try draws two,
    /// an accepted try two more (row, column).
    public static func randomResizedCropBox(height: Int, width: Int, scale: ClosedRange<Double> = 0.08...1.0,
                                            ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0),
                                            uniform: () -> Double) -> CropBox {
        let area = Double(height * width)
        let logLo = Foundation.log(ratio.lowerBound), logHi = Foundation.log(ratio.upperBound)
        for _ in 0..<10 {
            let targetArea = area * (scale.lowerBound + (scale.upperBound - scale.lowerBound) * uniform())
            let aspect = Foundation.exp(logLo + (logHi - logLo) * uniform())
            let w = Int((targetArea * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((targetArea / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let i = min(height - h, Int(uniform() * Double(height - h + 1)))
                let j = min(width - w, Int(uniform() * Double(width - w + 1)))
                return CropBox(i: i, j: j, h: h, w: w)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return CropBox(i: (height - h) / 2, j: (width - w) / 2, h: h, w: w)
    }

    /// torchvision `F.resized_crop`: crop `box`, then resize to `height` x `width`.
    public static func resizedCrop(_ image: RGBImage, _ box: CropBox, height: Int, width: Int, interpolation: Interpolation) -> RGBImage {
        resize(crop(image, box), height: height, width: width, interpolation: interpolation)
    }

    /// torchvision `F.adjust_brightness` (PIL `ImageEnhance.Brightness`), factor >= 0.
    public static func adjustBrightness(_ image: RGBImage, _ factor: Float) -> RGBImage { PILColor.brightness(image, factor: factor) }
    /// torchvision `F.adjust_contrast` (PIL `ImageEnhance.Contrast`), factor >= 0.
    public static func adjustContrast(_ image: RGBImage, _ factor: Float) -> RGBImage { PILColor.contrast(image, factor: factor) }
    /// torchvision `F.adjust_saturation` (PIL `ImageEnhance.Color`), factor >= 0.
    public static func adjustSaturation(_ image: RGBImage, _ factor: Float) -> RGBImage { PILColor.saturation(image, factor: factor) }
    /// torchvision `F.adjust_hue` on PIL (HSV round trip, H shifted by `uint8(int32(factor*255))`), factor in [-0.5, 0.5].
    public static func adjustHue(_ image: RGBImage, _ factor: Float) -> RGBImage { PILColor.hue(image, factor: factor) }
    /// torchvision `Grayscale(3)` / `RandomGrayscale` on PIL: `convert("L").convert("RGB")`.
    public static func grayscale(_ image: RGBImage) -> RGBImage { PILColor.grayscale(image) }
    /// PIL `ImageOps.solarize(image, threshold)`: values >= threshold (default 128) become 255 - value.
    public static func solarize(_ image: RGBImage, threshold: Int = 128) -> RGBImage { PILColor.solarize(image, threshold: threshold) }
    /// PIL `ImageFilter.GaussianBlur(radius)`: three extended box blurs approximating a Gaussian of
    /// standard deviation `radius` pixels.
    public static func gaussianBlur(_ image: RGBImage, radius: Float) -> RGBImage { PILBlur.gaussianBlur(image, radius: radius) }

    /// ImageNet statistics used by the recipe (docs/bissl.md, "Augmentations and pixel scale": ImageNet normalisation).
    public static let imagenetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imagenetStd: [Float] = [0.229, 0.224, 0.225]

    /// torchvision `ToTensor` then `Normalize(mean, std)`: CHW float32, `(v / divisor - mean[c]) / std[c]`
    /// in float32 as torch computes it. `divisor` 255 is torchvision's `ToTensor` ([0, 1]); 1
    /// reproduces timm's `ToTensor` (docs/bissl.md, "Augmentations and pixel scale": no rescaling, values up to about 1100).
    public static func toTensor(_ image: RGBImage, divisor: Float = 255, mean: [Float] = imagenetMean,
                                std: [Float] = imagenetStd) -> [Float] {
        let plane = image.height * image.width
        var out = [Float](repeating: 0, count: 3 * plane)
        for p in 0..<plane {
            for c in 0..<3 { out[c * plane + p] = (Float(image.pixels[p * 3 + c]) / divisor - mean[c]) / std[c] }
        }
        return out
    }
}
