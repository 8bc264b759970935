import Foundation

/// The paper's augmentation pipelines (docs/bissl.md, "Augmentations and pixel scale"), as a parameter draw followed by
/// a deterministic application, so a run is reproducible from its seed and every step can be
/// checked against Pillow with the same parameters.
public enum Augment {
    /// How pixels become floats before normalisation (docs/bissl.md, "Augmentations and pixel scale").
    public enum PixelScale: Sendable {
        /// torchvision `ToTensor`: v / 255, values in [0, 1].
        case unit
        /// timm `ToTensor` as used by the paper's pretext code: the raw 0...255 values.
        case raw
        var divisor: Float { self == .unit ? 255 : 1 }
    }

    /// One of ColorJitter's four adjustments.
    public enum Jitter: Equatable, Sendable {
        case brightness(Float), contrast(Float), saturation(Float), hue(Float)
    }

    /// Everything random about one augmented view.
    public struct ViewParameters: Equatable, Sendable {
        public var crop: ImageTransforms.CropBox
        public var flip: Bool
        /// The jitters in the order applied, or empty when ColorJitter was not applied.
        public var jitter: [Jitter]
        public var grayscale: Bool
        /// The Gaussian blur radius (PIL `GaussianBlur(radius)`), or nil for no blur.
        public var blurRadius: Float?
        public var solarize: Bool

        public init(crop: ImageTransforms.CropBox, flip: Bool, jitter: [Jitter] = [], grayscale: Bool = false,
                    blurRadius: Float? = nil, solarize: Bool = false) {
            self.crop = crop; self.flip = flip; self.jitter = jitter; self.grayscale = grayscale
            self.blurRadius = blurRadius; self.solarize = solarize
        }
    }

    /// One pretext view (docs/bissl.md, "Augmentations and pixel scale"): `RandomResizedCrop(size, scale, ratio, bicubic)`, flip
    /// p = 0.5, `ColorJitter(0.4, 0.4, 0.2, 0.1)` with p = 0.8 in random order, grayscale p = 0.2,
    /// Gaussian blur (radius U[0.1, 2.0]) with `blurProbability`, solarize with `solarizeProbability`.
    ///
    /// The reference implementation's crop ratio is reproduced on purpose (docs/bissl.md, "Augmentations and pixel scale"): `ratio` defaults to (0.5, 1.0) as an aspect-ratio range
    /// (what the paper's code passes), with the default area range (0.08, 1.0).
    public struct PretextView: Sendable {
        public var size = 96
        public var interpolation = Interpolation.bicubic
        public var scale: ClosedRange<Double> = 0.08...1.0
        public var ratio: ClosedRange<Double> = 0.5...1.0
        public var flipProbability = 0.5
        public var jitterProbability = 0.8
        public var brightness = 0.4, contrast = 0.4, saturation = 0.2, hue = 0.1
        public var grayscaleProbability = 0.2
        public var blurProbability: Double
        public var blurRadius: ClosedRange<Double> = 0.1...2.0
        public var solarizeProbability: Double

        public init(blurProbability: Double, solarizeProbability: Double) {
            self.blurProbability = blurProbability
            self.solarizeProbability = solarizeProbability
        }

        /// View 1 of the table in 6.1: blur always, never solarize.
        public static let view1 = PretextView(blurProbability: 1.0, solarizeProbability: 0.0)
        /// View 2: blur p = 0.1, solarize p = 0.2.
        public static let view2 = PretextView(blurProbability: 0.1, solarizeProbability: 0.2)

        /// Draws the parameters of one view of an image of `height` x `width`, in torchvision's order
        /// of draws (crop, flip, jitter gate, jitter order and factors, grayscale, blur, solarize).
        public func sample(height: Int, width: Int, using rng: inout SeededGenerator) -> ViewParameters {
            let crop = ImageTransforms.randomResizedCropBox(height: height, width: width, scale: scale, ratio: ratio) { rng.uniform() }
            let flip = rng.bernoulli(flipProbability)
            var jitter: [Jitter] = []
            if rng.bernoulli(jitterProbability) {
                var order = [0, 1, 2, 3]
                order.shuffle(using: &rng)
                let b = Float(rng.uniform(max(0, 1 - brightness), 1 + brightness))
                let c = Float(rng.uniform(max(0, 1 - contrast), 1 + contrast))
                let s = Float(rng.uniform(max(0, 1 - saturation), 1 + saturation))
                let h = Float(rng.uniform(-hue, hue))
                jitter = order.map { [Jitter.brightness(b), .contrast(c), .saturation(s), .hue(h)][$0] }
            }
            let gray = rng.bernoulli(grayscaleProbability)
            let blur = rng.bernoulli(blurProbability) ? Float(rng.uniform(blurRadius.lowerBound, blurRadius.upperBound)) : nil
            let solarize = rng.bernoulli(solarizeProbability)
            return ViewParameters(crop: crop, flip: flip, jitter: jitter, grayscale: gray, blurRadius: blur, solarize: solarize)
        }

        /// Applies drawn parameters: the augmented 8-bit image, `size` x `size`.
        public func apply(_ image: RGBImage, _ p: ViewParameters) -> RGBImage {
            var x = ImageTransforms.resizedCrop(image, p.crop, height: size, width: size, interpolation: interpolation)
            if p.flip { x = ImageTransforms.horizontalFlip(x) }
            for j in p.jitter {
                switch j {
                case .brightness(let f): x = ImageTransforms.adjustBrightness(x, f)
                case .contrast(let f): x = ImageTransforms.adjustContrast(x, f)
                case .saturation(let f): x = ImageTransforms.adjustSaturation(x, f)
                case .hue(let f): x = ImageTransforms.adjustHue(x, f)
                }
            }
            if p.grayscale { x = ImageTransforms.grayscale(x) }
            if let r = p.blurRadius { x = ImageTransforms.gaussianBlur(x, radius: r) }
            if p.solarize { x = ImageTransforms.solarize(x) }
            return x
        }
    }

    /// The SimCLR/BYOL/VICReg-style pair of pretext views: two views of one image as normalised CHW
    /// float32 (`3 * size * size` each), drawn view 1 then view 2 from `rng`. `pixelScale` defaults
    /// to `.raw`, reproducing the paper's pretext code (docs/bissl.md, "Augmentations and pixel scale"); pass `.unit` for [0, 1] inputs.
    public static func pretextPair(_ image: RGBImage, using rng: inout SeededGenerator,
                                   views: (PretextView, PretextView) = (.view1, .view2),
                                   pixelScale: PixelScale = .raw) -> ([Float], [Float]) {
        let p1 = views.0.sample(height: image.height, width: image.width, using: &rng)
        let p2 = views.1.sample(height: image.height, width: image.width, using: &rng)
        return (ImageTransforms.toTensor(views.0.apply(image, p1), divisor: pixelScale.divisor),
                ImageTransforms.toTensor(views.1.apply(image, p2), divisor: pixelScale.divisor))
    }

    /// Downstream training transform: `RandomResizedCrop(size, ratio=(0.5, 1.0))`
    /// (aspect ratio, docs/bissl.md, "Augmentations and pixel scale"; default area range, bilinear; v1 used bicubic), flip p = 0.5, `ToTensor` ([0, 1]),
    /// ImageNet normalisation (`DownstreamAugmentation.standard`). Returns CHW float32.
    public static func downstreamTrain(_ image: RGBImage, using rng: inout SeededGenerator, size: Int = 96,
                                       interpolation: Interpolation = .bilinear) -> [Float] {
        DownstreamAugmentation.standard.apply(image, using: &rng, size: size, interpolation: interpolation)
    }

    /// Downstream test transform (docs/bissl.md, "Augmentations and pixel scale"): shorter side to `int(size * 256 / 224)` (109 for
    /// 96), centre crop `size`, `ToTensor`, ImageNet normalisation. Returns CHW float32.
    public static func downstreamTestImage(_ image: RGBImage, size: Int = 96, interpolation: Interpolation = .bilinear) -> RGBImage {
        let resized = ImageTransforms.resizeShorterSide(image, to: size * 256 / 224, interpolation: interpolation)
        return ImageTransforms.centerCrop(resized, height: size, width: size)
    }

    /// `downstreamTestImage` as normalised CHW float32.
    public static func downstreamTest(_ image: RGBImage, size: Int = 96, interpolation: Interpolation = .bilinear) -> [Float] {
        ImageTransforms.toTensor(downstreamTestImage(image, size: size, interpolation: interpolation))
    }
}
