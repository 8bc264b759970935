import Collections

/// Finds the dicts of tensors in a source document's object tree and the places inside them where
/// a ResNet backbone's keys start. Rules are listed in `LayoutResolver`'s header.
enum CandidateSearch {
    /// A dict whose values are mostly tensors, with its key path.
    struct TensorDict {
        var path: [String]
        var tensors: OrderedDictionary<String, SourceTensor>
        /// Keys of non-tensor values (other than `_metadata`) in this dict.
        var otherKeys: [String]
        /// The `_metadata` entry (module prefix -> `{"version": N}`), if present.
        var metadata: ObjectValue?
        /// Prefixes whose ResNet was saved as indexed children and read under torchvision's names
        /// (`IndexedChildren`); `tensors` holds the renamed keys.
        var indexedPrefixes: [String] = []
        /// Renamed key -> the key the file holds, for the keys `IndexedChildren` renamed.
        var sourceNames: [String: String] = [:]
        var keyPath: String { path.joined(separator: ".") }
        /// The key the file holds for `key` of `tensors`.
        func sourceName(_ key: String) -> String { sourceNames[key] ?? key }
    }

    /// Result of walking the tree.
    struct Walk {
        var dicts: [TensorDict] = []
        /// Key paths of optimizer states (dicts with `state` and `param_groups`), never candidates.
        var optimizers: [[String]] = []
    }

    /// A pickled `torch.optim.Optimizer.state_dict()`: a dict with `state` and `param_groups`.
    static func isOptimizerState(_ entries: [ObjectValue.DictEntry]) -> Bool {
        let keys = Set(entries.compactMap { $0.key.stringValue })
        return keys.contains("state") && keys.contains("param_groups")
    }

    static func walk(_ root: ObjectValue) -> Walk {
        var result = Walk()
        visit(root, path: [], into: &result)
        return result
    }

    private static func visit(_ value: ObjectValue, path: [String], into result: inout Walk) {
        switch value {
        case .dict(let entries):
            if isOptimizerState(entries) {
                result.optimizers.append(path)
                return
            }
            var tensors = OrderedDictionary<String, SourceTensor>()
            var others: [String] = []
            var metadata: ObjectValue?
            var opaque = 0
            for e in entries {
                let key = e.key.keyText
                if key == "_metadata", case .dict = e.value { metadata = e.value; continue }
                if case .opaque = e.value { opaque += 1 }
                if case .tensor(let t) = e.value, e.key.stringValue != nil { tensors[key] = t } else { others.append(key) }
            }
            // An opaque field (a global we never run, already warned about by the reader) is a
            // non-tensor entry that is dropped, but it does not count against "mostly tensors".
            if !tensors.isEmpty && tensors.count * 2 > tensors.count + others.count - opaque {
                let indexed = IndexedChildren.rename(tensors)
                result.dicts.append(TensorDict(path: path, tensors: indexed.tensors, otherKeys: others, metadata: metadata,
                                               indexedPrefixes: indexed.prefixes, sourceNames: indexed.sourceNames))
            }
            for e in entries {
                switch e.value {
                case .dict, .list, .tuple: visit(e.value, path: path + [e.key.keyText], into: &result)
                default: break
                }
            }
        case .list(let items), .tuple(let items):
            for (i, item) in items.enumerated() {
                switch item {
                case .dict, .list, .tuple: visit(item, path: path + [String(i)], into: &result)
                default: break
                }
            }
        default:
            break
        }
    }

    // MARK: backbone prefixes

    /// True when the first segment of `rest` is a ResNet backbone module: `conv1`, `bn1`, `layer<N>`.
    static func isBackboneKey(_ rest: Substring) -> Bool {
        let first = rest.prefix { $0 != "." }
        guard first.count < rest.count else { return false }
        if first == "conv1" || first == "bn1" { return true }
        return first.hasPrefix("layer") && first.count > 5 && first.dropFirst(5).allSatisfy(\.isNumber)
    }

    /// True when `rest` starts with `fc.`.
    static func isFCKey(_ rest: Substring) -> Bool { rest.hasPrefix("fc.") }

    /// Prefixes `P` (empty or ending in `.`) such that some key is `P + conv1.*|bn1.*|layerN.<i>.*`,
    /// excluding prefixes that end inside a block (`layer1.0.`) or a downsample (`...downsample.`),
    /// and prefixes of a residual block itself: torchvision's `BasicBlock` and `Bottleneck` both have
    /// `conv2`, a ResNet has none at its top level, so a prefix with `P + conv2.*` keys is a block
    /// (`encoder.4.0.` of a ResNet saved as indexed children that were not recognised), not a ResNet.
    static func backbonePrefixes(_ keys: some Collection<String>) -> [String] {
        var seen = OrderedSet<String>()
        var blocks = Set<String>()
        for key in keys where key == "conv2.weight" || key.hasSuffix(".conv2.weight") {
            blocks.insert(String(key.dropLast("conv2.weight".count)))
        }
        for key in keys {
            var starts = [key.startIndex]
            var i = key.startIndex
            while let dot = key[i...].firstIndex(of: ".") {
                i = key.index(after: dot)
                starts.append(i)
            }
            for s in starts {
                let rest = key[s...]
                guard isAnchor(rest) else { continue }
                let prefix = String(key[..<s])
                if endsInsideResNet(prefix) || blocks.contains(prefix) { continue }
                seen.append(prefix)
            }
        }
        return Array(seen)
    }

    private static func isAnchor(_ rest: Substring) -> Bool {
        let parts = rest.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return false }
        if parts[0] == "conv1" || parts[0] == "bn1" { return parts.count == 2 }
        guard parts[0].hasPrefix("layer"), parts[0].count == 6, let s = Int(parts[0].dropFirst(5)), (1...4).contains(s),
              parts.count == 3, Int(parts[1]) != nil else { return false }
        return true
    }

    private static func endsInsideResNet(_ prefix: String) -> Bool {
        let segs = prefix.split(separator: ".")
        if segs.last == "downsample" { return true }
        if segs.count >= 2, Int(segs[segs.count - 1]) != nil, segs[segs.count - 2].hasPrefix("layer") { return true }
        return false
    }

    /// The backbone keys under `prefix` (prefix removed), excluding `fc.*`.
    static func backboneSubset(_ dict: TensorDict, prefix: String) -> StateDict {
        var sub = StateDict()
        for (key, t) in dict.tensors where key.hasPrefix(prefix) {
            let rest = key.dropFirst(prefix.count)
            if isBackboneKey(rest) { sub[String(rest)] = t.tensor }
        }
        return sub
    }

    /// Scores every backbone prefix of every tensor dict; dicts without one are listed with no architecture.
    static func candidates(_ walk: Walk) -> [Candidate] {
        var out: [Candidate] = []
        for dict in walk.dicts {
            let prefixes = backbonePrefixes(dict.tensors.keys)
            if prefixes.isEmpty {
                out.append(Candidate(keyPath: dict.keyPath, prefix: "", tensorCount: dict.tensors.count, architecture: nil,
                                     matched: 0, total: 0, complete: false, differences: ""))
                continue
            }
            for prefix in prefixes {
                let sub = backboneSubset(dict, prefix: prefix)
                guard let arch = ArchitectureInference.guess(sub) else {
                    out.append(Candidate(keyPath: dict.keyPath, prefix: prefix, tensorCount: dict.tensors.count,
                                         architecture: nil, matched: 0, total: 0, complete: false, differences: "",
                                         misfit: ArchitectureInference.misfit(sub)))
                    continue
                }
                let diff = ArchitectureInference.compare(sub, to: ArchitectureInference.backboneKeys(for: arch))
                out.append(Candidate(keyPath: dict.keyPath, prefix: prefix, tensorCount: dict.tensors.count,
                                     architecture: arch, matched: diff.matched, total: diff.total,
                                     complete: diff.isEmpty, differences: diff.summary))
            }
        }
        // Best first: complete before incomplete, then by score; ties keep document order.
        return out.enumerated().sorted { a, b in
            if a.element.complete != b.element.complete { return a.element.complete }
            if a.element.score != b.element.score { return a.element.score > b.element.score }
            return a.offset < b.offset
        }.map(\.element)
    }
}
