import BisslCore
import Foundation

/// The random augmentation of downstream training images (`bissl finetune` and `bissl align
/// --augment`), written `none`, or `+`-joined components:
///
/// - `crop[:MIN_AREA]`: torchvision `RandomResizedCrop(size, scale=(MIN_AREA, 1), ratio=(0.5, 1))`,
///   bilinear (the aspect-ratio range of docs/bissl.md, "Augmentations and pixel scale"); MIN_AREA in
///   (0, 1], default 0.08 (torchvision's default);
/// - `flip`: `RandomHorizontalFlip(p=0.5)`.
///
/// The default `crop:0.08+flip` is the ImageNet-training convention (RandomResizedCrop then
/// RandomHorizontalFlip) and the paper's downstream transform, `Augment.downstreamTrain`, draw for
/// draw. Without `crop` the image goes through the downstream test geometry first (shorter side to
/// `int(size·256/224)`, centre crop `size`), so `none` trains on exactly what `bissl eval` sees.
/// Every variant ends in `ToTensor` and ImageNet normalisation (CHW float32). Small images of
/// symbols (digits) usually want no flip and a larger MIN_AREA, e.g. `crop:0.5`.
public struct DownstreamAugmentation: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// RandomResizedCrop's lower area bound, or nil for no random crop.
    public var cropMinArea: Double?
    public var flip: Bool

    public init(cropMinArea: Double?, flip: Bool) {
        self.cropMinArea = cropMinArea
        self.flip = flip
    }

    /// `crop:0.08+flip`, the paper's transform (and what every run before `--augment` used).
    public static let standard = DownstreamAugmentation(cropMinArea: 0.08, flip: true)

    /// Parses `none`, `flip`, `crop`, `crop:0.5`, `crop:0.5+flip` (components in any order, once each).
    /// - Throws: `DatasetError.invalid`, one line naming the text.
    public init(parsing text: String) throws {
        func bad(_ why: String) -> DatasetError {
            .invalid("--augment '\(text)': \(why); give none, or crop[:MIN_AREA] and/or flip joined by '+' (e.g. crop:0.5+flip)")
        }
        cropMinArea = nil
        flip = false
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard trimmed != "none" else { return }
        var seen = Set<String>()
        for part in trimmed.split(separator: "+", omittingEmptySubsequences: false).map(String.init) {
            let pieces = part.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let name = pieces[0]
            guard seen.insert(name).inserted else { throw bad("'\(name)' given twice") }
            switch name {
            case "flip":
                guard pieces.count == 1 else { throw bad("flip takes no value") }
                flip = true
            case "crop":
                var area = 0.08
                if pieces.count == 2 {
                    guard let a = Double(pieces[1]), a.isFinite, a > 0, a <= 1 else {
                        throw bad("the crop's minimum area must be a number in (0, 1], got '\(pieces[1])'")
                    }
                    area = a
                }
                cropMinArea = area
            default:
                throw bad("unknown component '\(name)'")
            }
        }
    }

    /// A recorded `augment` (run config): nil (recorded before the option existed) is `standard`.
    /// - Throws: `DatasetError.invalid` for text that does not parse (a damaged run config).
    public init(recorded text: String?) throws {
        self = try text.map { try DownstreamAugmentation(parsing: $0) } ?? .standard
    }

    /// The canonical text: `none`, `flip`, `crop:0.5`, `crop:0.08+flip` (MIN_AREA as given, shortest form).
    public var description: String {
        var parts: [String] = []
        if let a = cropMinArea { parts.append("crop:\(a)") }
        if flip { parts.append("flip") }
        return parts.isEmpty ? "none" : parts.joined(separator: "+")
    }

    /// One augmented image as normalised CHW float32 (`3·size·size`). Draws, in order: the crop
    /// (RandomResizedCrop's up to 10 tries) when cropping, then the flip coin when flipping.
    public func apply(_ image: RGBImage, using rng: inout SeededGenerator, size: Int,
                      interpolation: Interpolation = .bilinear) -> [Float] {
        var x: RGBImage
        if let a = cropMinArea {
            let box = ImageTransforms.randomResizedCropBox(height: image.height, width: image.width, scale: a...1.0,
                                                           ratio: 0.5...1.0) { rng.uniform() }
            x = ImageTransforms.resizedCrop(image, box, height: size, width: size, interpolation: interpolation)
        } else {
            x = Augment.downstreamTestImage(image, size: size, interpolation: interpolation)
        }
        if flip, rng.bernoulli(0.5) { x = ImageTransforms.horizontalFlip(x) }
        return ImageTransforms.toTensor(x)
    }
}
