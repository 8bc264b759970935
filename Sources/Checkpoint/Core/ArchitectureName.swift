/// The one naming scheme for architectures, as `Architecture.label` writes it and every option that
/// names an architecture reads it: `resnet<depth>[-w<width>][-<stem>]`, width 64 and the `imagenet`
/// stem being the defaults left out (`resnet50`, `resnet18-w8-small`, `resnet50-w1-small`).
///
/// A name given by a user may leave parts out, spell a default (`-w64`, `-imagenet`), use upper case
/// or write `resnet-50`; `matches` compares only the parts it gives.
public struct ArchitectureName: Equatable, Sendable {
    public var family: String
    public var depth: Int
    /// Nil when the name does not say.
    public var width: Int?
    /// `imagenet` or `small`; nil when the name does not say.
    public var stem: String?

    /// - Throws: `CheckpointError.invalid` for anything else, naming the expected form.
    public init(parsing text: String) throws {
        let bad = CheckpointError.invalid("'\(text)' is not an architecture name: expected resnet<depth>[-w<width>][-small|-imagenet], e.g. resnet50 or resnet18-w8-small")
        var parts = text.lowercased().split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard var head = parts.first, head.hasPrefix("resnet") else { throw bad }
        parts.removeFirst()
        if head == "resnet", let next = parts.first, Int(next) != nil {   // resnet-50
            head += next
            parts.removeFirst()
        }
        guard let depth = Int(head.dropFirst(6)), ArchitectureInference.depths.contains(where: { $0.depth == depth }) else { throw bad }
        family = "resnet"
        self.depth = depth
        for part in parts {
            if part.hasPrefix("w"), width == nil, stem == nil, let w = Int(part.dropFirst()), w > 0 {
                width = w
            } else if (part == "small" || part == "imagenet"), stem == nil {
                stem = part
            } else {
                throw bad
            }
        }
    }

    /// `--arch NAME` together with `--width W` / `--stem S`: the name's parts, filled in from the options;
    /// an option that contradicts the name is refused in words.
    /// - Throws: `CheckpointError.invalid` for a bad name or a contradiction.
    public static func resolve(_ arch: String, width: Int?, stem: String?) throws -> ArchitectureName {
        var name = try ArchitectureName(parsing: arch)
        if let w = name.width, let given = width, w != given {
            throw CheckpointError.invalid("--arch \(arch) says width \(w) but --width says \(given); give one of them")
        }
        if let s = name.stem, let given = stem, s != given {
            throw CheckpointError.invalid("--arch \(arch) says the \(s) stem but --stem says \(given); give one of them")
        }
        name.width = name.width ?? width
        name.stem = name.stem ?? stem
        return name
    }

    /// True when `architecture` has every part this name gives.
    public func matches(_ architecture: Architecture) -> Bool {
        architecture.family == family && architecture.depth == depth
            && (width == nil || width == architecture.width) && (stem == nil || stem == architecture.stem)
    }

    /// True when the label of an architecture (`Architecture.label`) has every part this name gives.
    public func matches(label: String) -> Bool {
        guard let other = try? ArchitectureName(parsing: label) else { return false }
        return other.family == family && other.depth == depth
            && (width == nil || width == (other.width ?? 64)) && (stem == nil || stem == (other.stem ?? "imagenet"))
    }
}
