import Collections

/// Reads a torchvision ResNet saved as its children in an `nn.Sequential`
/// (`nn.Sequential(*list(resnet.children())[:-1])`, the encoder of common BYOL and SimCLR code) under
/// torchvision's names.
///
/// `torchvision.models.ResNet.children()` are, in order: 0 `conv1`, 1 `bn1`, 2 `relu`, 3 `maxpool`,
/// 4-7 `layer1`-`layer4`, 8 `avgpool`, 9 `fc` (dropped by `[:-1]`); only 0, 1 and 4-7 hold tensors. Under a
/// key prefix `P` (empty or ending in `.`) the form is recognised when `P0.weight` is a 4-d tensor,
/// `P1.*` are BatchNorm entries (`weight bias running_mean running_var num_batches_tracked`, with
/// `P1.running_mean` present), `P4.0.*` exists, every key under `P` whose first segment is a number
/// is `P0.weight`, `P1.<bn entry>` or `P<4-7>.<block>.*`, and no key under `P` already starts with
/// `conv1.`, `bn1.` or `layer1.`-`layer4.`. Its keys are then renamed (`P0.weight` -> `Pconv1.weight`,
/// `P1.x` -> `Pbn1.x`, `P<4+s>.<rest>` -> `Player<1+s>.<rest>`); nothing after the index is touched,
/// and the architecture is validated afterwards as for any other layout.
enum IndexedChildren {
    /// Child index -> torchvision attribute name, for the children that hold tensors.
    static let names: [Int: String] = [0: "conv1", 1: "bn1", 4: "layer1", 5: "layer2", 6: "layer3", 7: "layer4"]

    /// The keys of one dict with every recognised prefix's children renamed.
    struct Renamed {
        /// The dict's tensors in their original order, renamed keys in place of the source ones.
        var tensors: OrderedDictionary<String, SourceTensor>
        /// Renamed key -> the key the file holds.
        var sourceNames: [String: String]
        /// The prefixes read as indexed children, in first-seen order.
        var prefixes: [String]
    }

    /// Renames the indexed children under every prefix of `tensors` that has the form (see above).
    /// One pass over the keys and their dot-separated leading parts.
    static func rename(_ tensors: OrderedDictionary<String, SourceTensor>) -> Renamed {
        // Prefixes with a 4-d `0.weight`, and what the keys under each say about the form.
        var state = OrderedDictionary<String, (fits: Bool, bn: Bool, layer1: Bool)>()
        for (key, t) in tensors where t.tensor.shape.count == 4 && (key == "0.weight" || key.hasSuffix(".0.weight")) {
            state[String(key.dropLast("0.weight".count))] = (true, false, false)
        }
        guard !state.isEmpty else { return Renamed(tensors: tensors, sourceNames: [:], prefixes: []) }
        for key in tensors.keys {
            for p in leadingParts(key) where state[p] != nil {
                let parts = key.dropFirst(p.count).split(separator: ".", omittingEmptySubsequences: false)
                guard parts.count >= 2 else { continue }
                if ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"].contains(parts[0]) { state[p]!.fits = false; continue }
                guard let index = Int(parts[0]) else { continue }
                switch index {
                case 0: if parts.count != 2 || parts[1] != "weight" { state[p]!.fits = false }
                case 1:
                    if parts.count != 2 || !ArchitectureInference.batchNormSuffixes.contains(String(parts[1])) { state[p]!.fits = false }
                    if parts[1] == "running_mean" { state[p]!.bn = true }
                case 4...7:
                    if parts.count < 3 || Int(parts[1]) == nil { state[p]!.fits = false }
                    if index == 4 && parts[1] == "0" { state[p]!.layer1 = true }
                default: state[p]!.fits = false
                }
            }
        }
        let prefixes = state.filter { $0.value.fits && $0.value.bn && $0.value.layer1 }.map { $0.key }
        guard !prefixes.isEmpty else { return Renamed(tensors: tensors, sourceNames: [:], prefixes: []) }
        let recognised = Set(prefixes)
        var out = OrderedDictionary<String, SourceTensor>()
        var sourceNames: [String: String] = [:]
        for (key, t) in tensors {
            // The longest recognised prefix owns the key.
            guard let p = leadingParts(key).filter({ recognised.contains($0) }).max(by: { $0.count < $1.count }),
                  let renamed = renamed(key.dropFirst(p.count)), out[p + renamed] == nil else { out[key] = t; continue }
            out[p + renamed] = t
            sourceNames[p + renamed] = key
        }
        return Renamed(tensors: out, sourceNames: sourceNames, prefixes: prefixes)
    }

    /// "" and every leading part of `key` ending in `.` (`a.b.c` -> "", `a.`, `a.b.`).
    static func leadingParts(_ key: String) -> [String] {
        var out = [""]
        var i = key.startIndex
        while let dot = key[i...].firstIndex(of: ".") {
            i = key.index(after: dot)
            out.append(String(key[..<i]))
        }
        return out
    }

    /// `4.0.conv1.weight` -> `layer1.0.conv1.weight`; nil when the first segment is not a child index
    /// holding tensors.
    static func renamed(_ rest: Substring) -> String? {
        guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]), let name = names[index] else { return nil }
        return name + rest[dot...]
    }

    /// The rule recorded when the chosen backbone was read this way.
    static func rule(prefix p: String) -> String {
        "read '\(p)0.*', '\(p)1.*', '\(p)4.*'-'\(p)7.*' as torchvision ResNet children by index (nn.Sequential(*list(resnet.children())[:-1])): "
            + "0 conv1, 1 bn1, 4-7 layer1-layer4 (2 relu, 3 maxpool and 8 avgpool hold no tensors; fc is not among them)"
    }
}
