import Collections

/// Assigns the tensors of the chosen dict that are not backbone keys to head components.
///
/// Each such key is placed relative to the longest leading part `A` of the backbone prefix `P` that
/// it starts with (`P` itself, then `P` minus its last segment, ..., down to ""), and grouped by the
/// first segment `g` of the rest. Groups map to components:
/// - `P + fc.*`: a plain linear (`weight [out, in]`, `bias [out]`) -> `classifier` (keys `fc.weight`,
///   `fc.bias`); an `nn.Sequential` MLP -> `projector` (keys `0.weight`, `1.running_mean`, ...);
/// - `g` in `projector projection projection_head proj_head projector_head projetion` -> `projector`;
///   `g` in `predictor prediction prediction_head pred_head online_predictor` -> `predictor`;
///   a projector or predictor whose keys all sit under one module of its own (`projector.net.0.weight`,
///   the `MLP.net` wrapper of common BYOL code) is read from inside that module;
///   `g` in `fc classifier linear head` holding a plain linear that takes the backbone features ->
///   `classifier`, renamed to `fc.weight`/`fc.bias` (rule recorded);
/// - any other group, or a named head whose layout is not a Linear/MLP -> kept as component `g`
///   with its keys unchanged (never rewritten inside: `head.module.weight` stays `module.weight`
///   of component `head`), warned, no architecture record;
/// - a key with no `.` after `A` (`queue`, `queue_ptr`) -> dropped and listed.
/// Two groups claiming one component name are refused (`CheckpointError.ambiguous`).
enum HeadAssignment {
    /// `projetion` (sic) is the projector's attribute name in sthalles/PyTorch-BYOL's `ResNet18` model.
    static let projectorNames: Set<String> = ["projector", "projection", "projection_head", "proj_head", "projector_head", "projetion"]
    static let predictorNames: Set<String> = ["predictor", "prediction", "prediction_head", "pred_head", "online_predictor"]
    static let classifierNames: Set<String> = ["fc", "classifier", "linear", "head"]

    struct Group {
        /// Source prefix of the group's keys (`encoder.fc.`, `predictor.`).
        var sourcePrefix: String
        var name: String
        var tensors: OrderedDictionary<String, SourceTensor>
    }

    struct Assigned {
        var component: String
        var sourcePrefix: String
        /// Component key -> source tensor.
        var tensors: OrderedDictionary<String, SourceTensor>
        var head: Architecture.Head?
        var rule: String
        var warning: String?
    }

    /// A recognised head's keys in `state_dict()` order whatever the source order (safetensors lists
    /// names sorted): by module index, then `weight bias running_mean running_var num_batches_tracked`.
    static func moduleOrder(_ tensors: OrderedDictionary<String, SourceTensor>) -> OrderedDictionary<String, SourceTensor> {
        func rank(_ key: String) -> (Int, Int) {
            let parts = key.split(separator: ".")
            let index = parts.count == 2 ? Int(parts[0]) ?? -1 : -1
            let name = parts.last.map(String.init) ?? key
            return (index, ArchitectureInference.batchNormSuffixes.firstIndex(of: name) ?? 99)
        }
        var out = tensors
        out.sort { a, b in rank(a.key) < rank(b.key) }
        return out
    }

    /// Leading parts of `prefix`, longest first: `a.b.` -> [`a.b.`, `a.`, ``].
    static func ancestors(of prefix: String) -> [String] {
        var segs = prefix.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if segs.last == "" { segs.removeLast() }
        var out: [String] = []
        while !segs.isEmpty {
            out.append(segs.joined(separator: ".") + ".")
            segs.removeLast()
        }
        out.append("")
        return out
    }

    /// Groups `keys` (not backbone keys of the chosen prefix) by the rules above.
    /// - Returns: groups in first-seen order, and keys that belong to no group (to be dropped).
    static func group(_ keys: [(String, SourceTensor)], backbonePrefix: String) -> (groups: [Group], loose: [String]) {
        let parts = ancestors(of: backbonePrefix)
        var groups = OrderedDictionary<String, Group>()
        var loose: [String] = []
        for (key, t) in keys {
            guard let a = parts.first(where: { key.hasPrefix($0) }) else { loose.append(key); continue }
            let rest = key.dropFirst(a.count)
            guard let dot = rest.firstIndex(of: ".") else { loose.append(key); continue }
            let name = String(rest[..<dot])
            let sourcePrefix = a + name + "."
            groups[sourcePrefix, default: Group(sourcePrefix: sourcePrefix, name: name, tensors: [:])]
                .tensors[String(rest[rest.index(after: dot)...])] = t
        }
        return (Array(groups.values), loose)
    }

    /// The group seen from inside its single child module when every key starts with the same
    /// non-numeric segment (`net.0.weight`, `net.1.running_mean` -> `0.weight`, ... under `<prefix>net.`).
    static func unwrapped(_ g: Group) -> Group? {
        let firsts = Set(g.tensors.keys.map { $0.split(separator: ".", maxSplits: 1).first.map(String.init) ?? "" })
        guard firsts.count == 1, let wrapper = firsts.first, Int(wrapper) == nil,
              g.tensors.keys.allSatisfy({ $0.hasPrefix(wrapper + ".") }) else { return nil }
        var inner = OrderedDictionary<String, SourceTensor>()
        for (k, t) in g.tensors { inner[String(k.dropFirst(wrapper.count + 1))] = t }
        return Group(sourcePrefix: g.sourcePrefix + wrapper + ".", name: g.name, tensors: inner)
    }

    /// Maps groups to components and infers their heads.
    /// - Parameters:
    ///   - fcGroup: the `fc.*` keys under the backbone prefix (may be empty), with its source prefix.
    ///   - features: backbone feature size (`ArchitectureInference.featureDimension`).
    /// - Throws: `CheckpointError.ambiguous` when two groups claim one component;
    ///   `CheckpointError.invalid` when a recognised head's input size does not fit.
    static func assign(fcGroup: Group?, groups: [Group], features: Int) throws -> [Assigned] {
        var out: [Assigned] = []
        func tensors(_ g: Group) -> StateDict {
            var d = StateDict()
            for (k, t) in g.tensors { d[k] = t.tensor }
            return d
        }
        func claim(_ a: Assigned) throws {
            if let other = out.first(where: { $0.component == a.component }) {
                throw CheckpointError.ambiguous(
                    "both '\(other.sourcePrefix)*' and '\(a.sourcePrefix)*' would become component '\(a.component)'; keep one with --component backbone or re-save the checkpoint")
            }
            out.append(a)
        }
        func asLinearClassifier(_ g: Group, _ head: Architecture.Head) -> Assigned {
            var renamed = OrderedDictionary<String, SourceTensor>()
            for (k, t) in moduleOrder(g.tensors) { renamed["fc." + k] = t }
            let rule = g.name == "fc"
                ? "'\(g.sourcePrefix)*' is a linear layer \(head.dims[0]) -> \(head.dims[1]): component classifier"
                : "'\(g.sourcePrefix)*' is a linear layer \(head.dims[0]) -> \(head.dims[1]): component classifier, keys renamed to fc.weight/fc.bias"
            return Assigned(component: "classifier", sourcePrefix: g.sourcePrefix, tensors: renamed, head: head, rule: rule)
        }
        func kept(_ g: Group, reason: String) -> Assigned {
            Assigned(component: g.name, sourcePrefix: g.sourcePrefix, tensors: g.tensors, head: nil,
                     rule: "kept \(g.tensors.count) keys under '\(g.sourcePrefix)' as component '\(g.name)' unchanged (\(reason))",
                     warning: "component '\(g.name)' (\(g.tensors.count) tensors from '\(g.sourcePrefix)*') is \(reason); it is kept as found and has no architecture record")
        }

        if let fc = fcGroup {
            let head = try ArchitectureInference.inferHead(tensors(fc), name: String(fc.sourcePrefix.dropLast()))
            guard head.dims[0] == features else {
                throw CheckpointError.invalid("'\(fc.sourcePrefix)*' takes \(head.dims[0]) inputs but the backbone gives \(features) features")
            }
            if head.kind == "linear" && fc.tensors.keys.allSatisfy({ $0 == "weight" || $0 == "bias" }) {
                try claim(asLinearClassifier(fc, head))
            } else {
                try claim(Assigned(component: "projector", sourcePrefix: fc.sourcePrefix, tensors: moduleOrder(fc.tensors), head: head,
                                   rule: "'\(fc.sourcePrefix)*' is an MLP \(head.dims.map(String.init).joined(separator: "-")): component projector"))
            }
        }
        for g in groups {
            let name = g.name
            let role = projectorNames.contains(name) ? "projector" : predictorNames.contains(name) ? "predictor"
                : classifierNames.contains(name) ? "classifier" : nil
            guard let component = role else {
                try claim(kept(g, reason: "not a recognised head name"))
                continue
            }
            var g = g
            var head = try? ArchitectureInference.inferHead(tensors(g), name: String(g.sourcePrefix.dropLast()))
            if head == nil, component != "classifier", let inner = unwrapped(g) {
                head = try? ArchitectureInference.inferHead(tensors(inner), name: String(inner.sourcePrefix.dropLast()))
                if head != nil { g = inner }
            }
            guard let head else {
                try claim(kept(g, reason: "not a Linear or Linear-BatchNorm1d MLP layout"))
                continue
            }
            if component == "classifier" {
                guard head.kind == "linear", head.dims[0] == features, g.tensors.keys.allSatisfy({ $0 == "weight" || $0 == "bias" }) else {
                    try claim(kept(g, reason: "not a linear layer on the \(features) backbone features"))
                    continue
                }
                try claim(asLinearClassifier(g, head))
            } else {
                try claim(Assigned(component: component, sourcePrefix: g.sourcePrefix, tensors: moduleOrder(g.tensors), head: head,
                                   rule: "'\(g.sourcePrefix)*' is \(head.kind == "mlp" ? "an MLP" : "a linear layer") \(head.dims.map(String.init).joined(separator: "-")): component \(component)"))
            }
        }
        // Input sizes: projector on the backbone features, predictor on the projector output.
        if let p = out.first(where: { $0.component == "projector" }), let h = p.head, h.dims[0] != features {
            throw CheckpointError.invalid("projector '\(p.sourcePrefix)*' takes \(h.dims[0]) inputs but the backbone gives \(features) features")
        }
        if let q = out.first(where: { $0.component == "predictor" }), let h = q.head,
           let p = out.first(where: { $0.component == "projector" })?.head, h.dims[0] != p.outputs {
            throw CheckpointError.invalid("predictor '\(q.sourcePrefix)*' takes \(h.dims[0]) inputs but the projector gives \(p.outputs)")
        }
        return out
    }
}
