import Collections

/// Finds the ResNet state dict in a decoded source file and maps it to checkpoint components.
///
/// Rules, applied in this order (each applied rule is recorded in `Resolution.rules`):
/// 1. **Candidates.** Every dict in the object tree whose values are mostly tensors (more than half
///    of its entries, neither `_metadata` nor opaque values — objects built from a global we do not
///    run, dropped with the reader's warning — counted) is a tensor dict, at any key path (`state_dict`,
///    `model`, `model_ema`, `student`, `teacher`, list elements `0`, `1`, ...). Inside a tensor dict,
///    every key prefix `P` (empty or ending in `.`) followed by `conv1.*`, `bn1.*` or `layerN.<i>.*`
///    is a backbone candidate; its score is the number of canonical backbone keys of its (guessed)
///    architecture present under `P` with the canonical shape and dtype, over their count.
///    A candidate is *complete* when nothing is missing (except `num_batches_tracked`), wrong or
///    unexpected among its backbone keys.
///    A ResNet saved as its children in an `nn.Sequential` (`nn.Sequential(*list(resnet.children())[:-1])`:
///    `encoder.0.weight`, `encoder.1.running_mean`, `encoder.4.0.conv1.weight`) is read under torchvision's
///    names first (`IndexedChildren`: 0 conv1, 1 bn1, 4-7 layer1-layer4), recorded as a rule; keys
///    dropped from it are listed as the file names them. A prefix with `conv2.*` keys is a residual
///    block, never a candidate.
/// 2. **Optimizer state** (a dict with `state` and `param_groups`) is never a candidate and never
///    searched; it is dropped and listed.
/// 3. **Choice.** With `--select S`: the candidate whose selector (key path + prefix, dotted) is `S`,
///    else the one complete candidate whose selector starts with `S.`. Without it: the one complete
///    candidate. Among several complete candidates, one rule prefers: a network trained by gradient
///    over its momentum copy under the branch names of the method that keeps both (MoCo's
///    `encoder_q` over `encoder_k`, `base_encoder` over `momentum_encoder`, BYOL's `online_network`
///    over `target_network`, `online_network_state_dict` over `target_network_state_dict`; `MomentumCopies`), recorded as a rule; `--select` picks the copy.
///    The one complete candidate is refused (`CheckpointError.invalid`) when it is the momentum
///    copy of an incomplete trained network (an `encoder_q` missing a key beside a complete
///    `encoder_k`, or one damaged past being a candidate, found by its name and judged against the
///    copy's architecture), unless `--select` names the copy itself: the refusal says what the
///    trained network lacks.
///    Any other set of complete candidates (EMA of a whole model, teacher/student) is refused with
///    `CheckpointError.ambiguous` listing them with their scores, since neither the EMA nor the
///    online weights are right for every use.
///    No complete candidate: refused with the best candidates and the differences; when some but
///    not all keys of a dict carry a prefix and stripping it from those would complete the backbone,
///    the refusal says so with counts and keys on each side.
/// 4. **Prefixes.** The backbone's prefix `P` is removed from its keys only (recorded as
///    `strippedPrefix`); other keys are never rewritten, and nothing inside a key is ever rewritten
///    (`head.module.x` stays). A wrapper shared by every key (`module.`) is reported as such.
///    `--strip-prefix W` asserts the wrapper: `W` is whole dot-separated key segments (`module` is
///    read as `module.`; `mod` does not match `module.x`, refused as "no key starts with 'mod.'"),
///    every tensor key of the chosen dict must start with `W` (refused with the keys that do not)
///    and `P` must start with `W`.
/// 5. **Components.** Backbone keys in torchvision order. `P + fc.*`, and groups next to the backbone,
///    become `classifier`, `projector`, `predictor` or are kept under their own name
///    (`HeadAssignment`). Keys of another backbone candidate in the same dict, together with every
///    key under that candidate's side of the tree (for `target_network.encoder.` beside
///    `online_network.encoder.`: all of `target_network.*`, its projector included), keys with no group
///    (`queue`), non-tensor entries and every other sub-tree of the document are dropped and
///    listed in `droppedKeys` (sub-trees by their key path). With a momentum copy chosen, selected
///    or the only backbone (`target_network.encoder`, `module.momentum_encoder`: its prefix holds
///    the method's name of the copy, `MomentumCopies.copy(at:)`), a predictor group outside the copy's
///    side (`predictor.*`, `online_predictor.*`, `module.predictor.*`) belongs to the trained network
///    (BYOL and MoCo v3 give the copy none): it is dropped with a rule. `--component backbone` keeps
///    only the backbone and lists everything else as dropped.
/// 6. **num_batches_tracked** is an optional int64 buffer: a missing one (next to a
///    `running_var` of the backbone or of a recognised head) is filled with 0 (`torch.tensor(0)`, as
///    `_NormBase._load_from_state_dict` does for BatchNorm version < 2) and listed in `filledKeys`;
///    the rule says what `_metadata` (the entry `_metadata` of the chosen dict, which is how the
///    pickle reader exposes the state dict's BUILD state: source module name -> `{"version": N}`)
///    says about those modules' BatchNorm version. Components kept unrecognised are never filled.
/// 7. **Validation.** The backbone must match `ArchitectureInference.canonicalKeys` exactly (shapes,
///    dtypes); heads must take the sizes they are given. Failures throw `CheckpointError.invalid`
///    naming the first differences with counts.
/// 8. **Aliases**: kept names whose source tensors share storage key, offset, shape and
///    stride (non-empty) map to the first such name. **Locations**: device tags seen.
///    **BatchNorm statistics** with zero, negative, inf or NaN variance are warned about.
public enum LayoutResolver {
    /// Path segments that name a training branch, recorded as `Resolution.branch`.
    public static let branchNames: Set<String> = [
        "teacher", "student", "model_ema", "ema", "state_dict_ema", "ema_model", "online_network", "target_network",
        "online", "target", "encoder_q", "encoder_k", "momentum_encoder", "base_encoder", "model", "state_dict",
        "online_network_state_dict", "target_network_state_dict",
    ]
    static let genericContainers: Set<String> = ["model", "state_dict"]

    /// Resolves `doc` with `options`.
    /// - Throws: `CheckpointError.ambiguous` (several complete candidates, partial prefix, two heads
    ///   for one component, `--strip-prefix` not shared by every key), `CheckpointError.invalid`
    ///   (no ResNet found, `--select` matching nothing, keys or shapes differing from the canonical set).
    public static func resolve(_ doc: SourceDocument, options: LayoutOptions = LayoutOptions()) throws -> Resolution {
        let walk = CandidateSearch.walk(doc.root)
        var candidates = CandidateSearch.candidates(walk)
        let resnetCandidates = candidates.filter { $0.architecture != nil }
        guard !resnetCandidates.isEmpty else {
            if walk.dicts.isEmpty { throw CheckpointError.invalid("no dict of tensors found in this \(doc.container) file") }
            if let misfit = candidates.first(where: { $0.misfit != nil }) {
                let place = misfit.selector.isEmpty ? "the root dict" : "'\(misfit.selector)'"
                throw CheckpointError.invalid("\(place) has ResNet backbone keys (conv1.*, bn1.*, layerN.*), but they fit no ResNet: \(misfit.misfit!)")
            }
            throw CheckpointError.invalid("no ResNet backbone keys (conv1.*, bn1.*, layerN.*) in \(walk.dicts.count) dict(s) of tensors; first keys: \(walk.dicts[0].tensors.keys.prefix(3).joined(separator: ", "))")
        }
        var pool = resnetCandidates
        // A prefix is whole dot-separated key segments: 'module' means 'module.', 'mod' never
        // strips 'module.'.
        let stripPrefix = options.stripPrefix.map { $0.hasSuffix(".") ? $0 : $0 + "." }
        if let given = options.stripPrefix, let w = stripPrefix {
            guard given != ".", !given.isEmpty else { throw CheckpointError.invalid("--strip-prefix needs a key prefix such as 'module.'") }
            guard walk.dicts.contains(where: { $0.tensors.keys.contains { $0.hasPrefix(w) } }) else {
                throw CheckpointError.invalid("--strip-prefix '\(given)': no key starts with '\(w)' (a prefix is whole dot-separated parts of a key, e.g. 'module.')")
            }
            pool = pool.filter { $0.prefix.hasPrefix(w) }
            guard !pool.isEmpty else {
                throw CheckpointError.invalid("--strip-prefix '\(w)': no backbone found under that prefix; candidates: \(list(resnetCandidates))")
            }
        }
        let (chosen, preference) = try choose(from: pool, all: resnetCandidates, select: options.select, walk: walk)
        let dict = walk.dicts.first { $0.keyPath == chosen.keyPath }!
        candidates = candidates.filter { $0 != chosen }
        candidates.insert(chosen, at: 0)

        var rules: [String] = []
        var warnings: [String] = []
        var dropped: [String] = []
        let where_ = chosen.keyPath.isEmpty ? "the root dict" : "'\(chosen.keyPath)'"
        rules.append("state dict at \(where_) (\(dict.tensors.count) tensors), one of \(walk.dicts.count) dict(s) of tensors")
        if let preference { rules.append(preference) }

        // Wrapper and stripped prefix.
        let p = chosen.prefix
        if let w = stripPrefix {
            let lacking = dict.tensors.keys.filter { !$0.hasPrefix(w) }
            guard lacking.isEmpty else {
                throw CheckpointError.ambiguous("--strip-prefix '\(w)': \(lacking.count) of \(dict.tensors.count) keys in \(where_) do not start with it (\(lacking.prefix(3).joined(separator: ", "))\(lacking.count > 3 ? ", ..." : "")); a prefix is stripped only when every key has it")
            }
        }
        let wrapper = HeadAssignment.ancestors(of: p).first { a in dict.tensors.keys.allSatisfy { $0.hasPrefix(a) } } ?? ""

        // Backbone (strict validation).
        let subset = CandidateSearch.backboneSubset(dict, prefix: p)
        let arch0: Architecture
        do { arch0 = try ArchitectureInference.inferBackbone(subset) } catch let CheckpointError.invalid(m) {
            throw CheckpointError.invalid("'\(chosen.selector.isEmpty ? "<root>" : chosen.selector)': \(m)")
        }
        var arch = arch0
        let canonical = ArchitectureInference.backboneKeys(for: arch)
        let ruleName = p.isEmpty ? "bare torchvision names" : "prefix \(p)"
        if dict.indexedPrefixes.contains(p) { rules.append(IndexedChildren.rule(prefix: p)) }
        rules.append("matched \(chosen.matched)/\(chosen.total) backbone keys of \(arch.label) by rule '\(ruleName)'")
        if !p.isEmpty {
            if wrapper == p {
                rules.append("stripped prefix '\(p)' shared by all \(dict.tensors.count) keys")
            } else {
                let outside = dict.tensors.keys.filter { !$0.hasPrefix(p) }.count
                rules.append("stripped prefix '\(p)' from the backbone keys only (\(outside) other keys do not have it\(wrapper.isEmpty ? "" : "; wrapper '\(wrapper)' shared by all keys"))")
            }
        }

        // Sort the dict's keys: chosen backbone, chosen fc, other candidates, the rest.
        let otherPrefixes = CandidateSearch.backbonePrefixes(dict.tensors.keys).filter { $0 != p }
        var backboneSource = OrderedDictionary<String, SourceTensor>()
        var fcTensors = OrderedDictionary<String, SourceTensor>()
        var rest: [(String, SourceTensor)] = []
        var unselected = OrderedDictionary<String, [String]>()
        // Each unselected ResNet's side of the tree: its prefix cut one segment past where it parts
        // from the chosen one's (`target_network.` for `target_network.encoder.` beside
        // `online_network.encoder.`), unless that side holds the chosen backbone too.
        let resnetPrefixes = Set(resnetCandidates.filter { $0.keyPath == dict.keyPath }.map(\.prefix))
        let sides = otherPrefixes.filter { resnetPrefixes.contains($0) }.compactMap { o -> (prefix: String, side: String)? in
            let side = sideRoot(o, apartFrom: p)
            return side.isEmpty || p.hasPrefix(side) ? nil : (o, side)
        }
        for (key, t) in dict.tensors {
            // The owner is the longest candidate prefix under which the key is a backbone or fc key.
            let owners = ([p] + otherPrefixes).filter { q in
                key.hasPrefix(q) && (CandidateSearch.isBackboneKey(key.dropFirst(q.count)) || CandidateSearch.isFCKey(key.dropFirst(q.count)))
            }
            let owner = owners.max { $0.count < $1.count }
            if owner == p {
                let r = String(key.dropFirst(p.count))
                if CandidateSearch.isFCKey(r[...]) { fcTensors[String(r.dropFirst(3))] = t } else { backboneSource[r] = t }
            } else if let o = owner {
                unselected[o, default: []].append(key)
            } else if let s = sides.filter({ key.hasPrefix($0.side) }).max(by: { $0.side.count < $1.side.count }) {
                unselected[s.prefix, default: []].append(key)
            } else {
                rest.append((key, t))
            }
        }
        for (o, keys) in unselected {
            let sel = Candidate(keyPath: dict.keyPath, prefix: o, tensorCount: 0, architecture: nil, matched: 0, total: 0,
                                complete: false, differences: "").selector
            let side = sides.first { $0.prefix == o }?.side ?? o
            rules.append("dropped \(keys.count) keys of the unselected candidate '\(sel)'" + (side == o ? "" : ": everything under '\(side)', its heads included"))
            dropped += keys.map { join(dict.keyPath, dict.sourceName($0)) }
        }

        // Components.
        var components = OrderedDictionary<String, OrderedDictionary<String, SourceTensor>>()
        var componentSource: [String: String] = ["backbone": p]
        var backbone = OrderedDictionary<String, SourceTensor>()
        for (key, _) in canonical { if let t = backboneSource[key] { backbone[key] = t } }
        components["backbone"] = backbone
        let features = ArchitectureInference.featureDimension(arch)
        let fcGroup = fcTensors.isEmpty ? nil : HeadAssignment.Group(sourcePrefix: p + "fc.", name: "fc", tensors: fcTensors)
        let grouped = HeadAssignment.group(rest, backbonePrefix: p)
        var groups = grouped.groups
        let loose = grouped.loose
        // A momentum copy chosen (selected, or the only backbone of the file): a predictor beside it,
        // outside its side of the tree, belongs to the network trained by gradient (BYOL's online
        // network, MoCo v3's base encoder), whether the file holds that network or not; the copy has none.
        if let copy = MomentumCopies.copy(at: p) {
            let trained = MomentumCopies.copy(at: chosen.selector)?.trainedPath ?? copy.trainedPath
            let held = tensors(under: trained, walk: walk).isEmpty ? ", which this file does not hold" : ""
            let foreign = groups.filter { HeadAssignment.predictorNames.contains($0.name) && !$0.sourcePrefix.hasPrefix(copy.copySide) }
            for g in foreign {
                rules.append("dropped the predictor '\(g.sourcePrefix)*' (\(g.tensors.count) keys): it belongs to '\(trained)', the network trained by gradient\(held); its momentum copy '\(chosen.selector)', \(options.select == nil ? "the only backbone" : "selected"), has none (\(copy.pair.method))")
                dropped += g.tensors.keys.map { join(dict.keyPath, dict.sourceName(g.sourcePrefix + $0)) }
            }
            groups.removeAll { g in foreign.contains { $0.sourcePrefix == g.sourcePrefix } }
        }
        if !loose.isEmpty {
            // With --component all the user asked for the whole model: losing tensors is a warning.
            let names = loose.prefix(10).joined(separator: ", ") + (loose.count > 10 ? ", ... (\(loose.count - 10) more)" : "")
            if options.components == .all {
                warnings.append("dropped \(loose.count) \(loose.count == 1 ? "tensor that is" : "tensors that are") not part of the model: \(names)")
            } else {
                rules.append("dropped \(loose.count) keys that belong to no component: \(names)")
            }
            dropped += loose.map { join(dict.keyPath, dict.sourceName($0)) }
        }
        if options.components == .all {
            for a in try HeadAssignment.assign(fcGroup: fcGroup, groups: groups, features: features) {
                components[a.component] = a.tensors
                componentSource[a.component] = a.sourcePrefix
                if let h = a.head { arch.heads[a.component] = h }
                rules.append(a.rule)
                if let w = a.warning { warnings.append(w) }
            }
        } else {
            var droppedHeads: [String] = []
            for g in (fcGroup.map { [$0] } ?? []) + groups {
                droppedHeads.append(g.sourcePrefix + "*")
                dropped += g.tensors.keys.map { join(dict.keyPath, dict.sourceName(g.sourcePrefix + $0)) }
            }
            if !droppedHeads.isEmpty {
                rules.append("--component backbone: dropped \(droppedHeads.joined(separator: ", "))")
            }
        }
        let order = ["backbone", "classifier", "projector", "predictor"]
        components.sort { a, b in
            (order.firstIndex(of: a.key) ?? order.count) < (order.firstIndex(of: b.key) ?? order.count)
        }

        // Non-tensor entries of the chosen dict, and every other sub-tree of the document.
        if !dict.otherKeys.isEmpty {
            dropped += dict.otherKeys.map { join(dict.keyPath, $0) }
            rules.append("dropped \(dict.otherKeys.count) non-tensor entries of \(where_): \(dict.otherKeys.prefix(5).joined(separator: ", "))")
        }
        let outside = siblings(of: dict.path, in: doc.root, walk: walk)
        let nested = nestedOptimizers(walk, dropped: outside.others + outside.candidates)
        for o in outside.optimizers + nested { rules.append("dropped optimizer state at '\(o)'") }
        for c in outside.candidates { rules.append("dropped '\(c)', which holds other tensors") }
        if !outside.others.isEmpty {
            rules.append("dropped \(outside.others.count) other \(outside.others.count == 1 ? "entry" : "entries"): \(outside.others.prefix(5).joined(separator: ", "))\(outside.others.count > 5 ? ", ..." : "")")
        }
        dropped += outside.optimizers + outside.candidates + outside.others

        // num_batches_tracked.
        var final = OrderedDictionary<String, StateDict>()
        var filled: [String] = []
        var filledModules: [String] = []   // source module names (`encoder.layer1.0.bn1`), for _metadata
        var sources: [(String, SourceTensor)] = []
        for (component, tensors) in components {
            var out = StateDict()
            let prefix = Checkpoint.unprefixedComponents.contains(component) ? "" : component + "."
            // Only modules whose layout we know get counters: the backbone and recognised heads.
            let fill = component == "backbone" || arch.heads[component] != nil
            for (key, t) in tensors {
                out[key] = t.tensor
                sources.append((prefix + key, t))
                if fill && key.hasSuffix("running_var") {
                    let module = String(key.dropLast("running_var".count))
                    let nbt = module + "num_batches_tracked"
                    if tensors[nbt] == nil {
                        out[nbt] = Tensor(int64: 0)
                        filled.append(prefix + nbt)
                        filledModules.append((componentSource[component] ?? "") + String(module.dropLast()))
                    }
                }
            }
            final[component] = out
        }
        if !filled.isEmpty {
            rules.append("filled \(filled.count) missing num_batches_tracked with 0 (int64) \(bnVersionNote(filledModules, metadata: dict.metadata))")
        }

        // Validate the backbone once more, as finally assembled, with its classifier.
        var check = final["backbone"] ?? StateDict()
        if let cls = final["classifier"] { for (k, t) in cls { check[k] = t } }
        let diff = ArchitectureInference.compare(check, to: ArchitectureInference.canonicalKeys(for: arch))
        guard diff.isEmpty else { throw CheckpointError.invalid("'\(chosen.selector.isEmpty ? "<root>" : chosen.selector)': not a valid \(arch.label): \(diff.summary)") }

        // Aliases, locations, BN statistics.
        let aliases = StorageAliases.find(sources.map { (name: $0.0, tensor: $0.1) })
        let locations = OrderedSet(sources.compactMap { $0.1.location })
        if !aliases.isEmpty {
            rules.append("\(aliases.count) name(s) share storage with an earlier name: \(Checkpoint.describeAliases(aliases))")
        }
        for (component, tensors) in final { warnings += BatchNormCheck.warnings(tensors, component: component) }

        let branch = branchOf(dict.path + HeadAssignment.ancestors(of: p).reversed().dropFirst().map { String($0.split(separator: ".").last!) })
        if let b = branch { rules.append("branch '\(b)' (selector '\(chosen.selector)')") }

        return Resolution(components: final, architecture: arch, keyPath: chosen.keyPath, selector: chosen.selector,
                          branch: branch, strippedPrefix: p.isEmpty ? nil : p, rules: rules, droppedKeys: dropped,
                          filledKeys: filled, aliases: aliases, locations: Array(locations), warnings: warnings,
                          candidates: candidates)
    }

    /// Lists the candidates of `doc` (best first) without resolving, for `bissl inspect`.
    public static func candidates(_ doc: SourceDocument) -> [Candidate] {
        CandidateSearch.candidates(CandidateSearch.walk(doc.root))
    }

    // MARK: choice

    static func list(_ cs: [Candidate]) -> String {
        let shown = cs.prefix(6).map(\.line).joined(separator: ", ")
        return shown + (cs.count > 6 ? ", and \(cs.count - 6) more" : "")
    }

    /// The candidate to resolve, and the rule that preferred it among several complete ones (a
    /// network trained by gradient over its momentum copy, `MomentumCopies`), if one did.
    private static func choose(from pool: [Candidate], all: [Candidate], select: String?, walk: CandidateSearch.Walk) throws -> (Candidate, String?) {
        if let s = select {
            if let exact = pool.first(where: { $0.selector == s }) { return (exact, nil) }
            let under = pool.filter { s.isEmpty || $0.selector.hasPrefix(s + ".") }
            guard !under.isEmpty else {
                throw CheckpointError.invalid("--select '\(s)' matches no candidate; candidates: \(list(all))")
            }
            let complete = under.filter(\.complete)
            if complete.count == 1 { try refuseCopyOfIncomplete(complete[0], all: all, walk: walk); return (complete[0], nil) }
            if let preferred = MomentumCopies.preferred(complete) { return (preferred.0, preferred.rule) }
            if complete.count > 1 {
                throw CheckpointError.ambiguous("--select '\(s)' still matches \(complete.count) complete backbones: \(list(complete)); pick one with --select \(complete[0].selector)")
            }
            if under.count == 1 { return (under[0], nil) }
            throw CheckpointError.invalid("--select '\(s)' matches no complete backbone: \(list(under))")
        }
        let complete = pool.filter(\.complete)
        if complete.count == 1 { try refuseCopyOfIncomplete(complete[0], all: all, walk: walk); return (complete[0], nil) }
        if let preferred = MomentumCopies.preferred(complete) { return (preferred.0, preferred.rule) }
        if complete.count > 1 {
            throw CheckpointError.ambiguous("\(complete.count) complete ResNet backbones found: \(list(complete)); no rule prefers one (an EMA copy, a teacher or a student may each be the one wanted): pick one with --select KEYPATH, e.g. --select \(complete[0].selector)")
        }
        if let partial = partialPrefix(walk) { throw partial }
        throw CheckpointError.invalid("no complete ResNet backbone: " + closest(pool[0], walk: walk))
    }

    /// The best incomplete candidate in words: where it is, how many of the keys its (guessed)
    /// architecture requires it holds (`num_batches_tracked` is optional, so not counted), and the
    /// differences.
    static func closest(_ best: Candidate, walk: CandidateSearch.Walk) -> String {
        let place = best.selector.isEmpty ? "the root dict" : "'\(best.selector)'"
        guard let holdings = holdings(best, walk: walk) else { return "the closest is \(place): \(best.differences)" }
        return "the closest, \(place), " + holdings
    }

    /// `holds 317 of the 318 keys a resnet50 requires (...); differences: ...` for an incomplete
    /// candidate with a guessed architecture; nil without one.
    static func holdings(_ c: Candidate, walk: CandidateSearch.Walk) -> String? {
        guard let arch = c.architecture, let dict = walk.dicts.first(where: { $0.keyPath == c.keyPath }) else { return nil }
        let diff = ArchitectureInference.compare(CandidateSearch.backboneSubset(dict, prefix: c.prefix),
                                                 to: ArchitectureInference.backboneKeys(for: arch))
        return "holds \(diff.required - diff.missing.count) of the \(diff.required) keys a \(arch.label) requires "
            + "(architecture guessed from the keys present); differences: \(diff.summary)"
    }

    /// Refuses `only`, the one complete backbone, when it is the momentum copy of an incomplete
    /// network trained by gradient (MoCo's `encoder_k` beside an `encoder_q` missing a key): a user
    /// who asks for the backbone wants the trained network, so the copy is imported only when
    /// `--select` names it.
    /// - Throws: `CheckpointError.invalid` naming the incomplete network, what it lacks, and the
    ///   `--select` that imports the copy.
    ///
    /// A trained network damaged past recognition as a ResNet (no backbone key left, or keys that fit
    /// no ResNet, so it is no candidate) is found by its method's name beside the copy
    /// (`MomentumCopies.copy(at:)`: `encoder_q` for `encoder_k`) and judged against the copy's
    /// architecture, which a momentum copy shares with its network. A file holding nothing under
    /// that name (the copy alone) imports the copy.
    static func refuseCopyOfIncomplete(_ only: Candidate, all: [Candidate], walk: CandidateSearch.Walk) throws {
        let refusal = { (trained: String, pair: MomentumCopies.Pair, lacking: String) in
            CheckpointError.invalid("the network trained by gradient, '\(trained)', is incomplete: it \(lacking); "
                + "the only complete backbone, '\(only.selector)', is its momentum copy (\(pair.method)) and is not imported in its place: "
                + "--select \(only.selector) imports the momentum copy deliberately")
        }
        if let (trained, pair) = MomentumCopies.trained(of: only, among: all) {
            guard !trained.complete else { return }
            throw refusal(trained.selector, pair, holdings(trained, walk: walk) ?? "differences: \(trained.differences)")
        }
        guard let copy = MomentumCopies.copy(at: only.selector), let arch = only.architecture else { return }
        let held = tensors(under: copy.trainedPath, walk: walk)
        guard !held.isEmpty else { return }
        var backbone = StateDict()
        for (key, t) in held where CandidateSearch.isBackboneKey(key[...]) { backbone[key] = t.tensor }
        let diff = ArchitectureInference.compare(backbone, to: ArchitectureInference.backboneKeys(for: arch))
        throw refusal(copy.trainedPath, copy.pair, "holds \(held.count) tensor\(held.count == 1 ? "" : "s"), with \(diff.required - diff.missing.count) of the \(diff.required) keys a \(arch.label) requires "
            + "(the architecture of its momentum copy; too few or misshapen to be recognised as a ResNet); differences: \(diff.summary)")
    }

    /// The tensors of the document whose full key (key path and key, dotted) starts with
    /// `selector` + `.`, by the rest of the key.
    static func tensors(under selector: String, walk: CandidateSearch.Walk) -> [(String, SourceTensor)] {
        walk.dicts.flatMap { dict in
            dict.tensors.compactMap { key, t -> (String, SourceTensor)? in
                let full = join(dict.keyPath, key)
                return full.hasPrefix(selector + ".") ? (String(full.dropFirst(selector.count + 1)), t) : nil
            }
        }
    }

    /// Some, not all, keys of a tensor dict start with `S.`, and removing it from those gives
    /// a complete backbone. Returns the refusal describing both sides.
    static func partialPrefix(_ walk: CandidateSearch.Walk) -> CheckpointError? {
        for dict in walk.dicts {
            var firsts = OrderedDictionary<String, Int>()
            for key in dict.tensors.keys {
                if let dot = key.firstIndex(of: ".") { firsts[String(key[...dot]), default: 0] += 1 }
            }
            for (s, n) in firsts where n < dict.tensors.count {
                var stripped = OrderedDictionary<String, SourceTensor>()
                var collision = false
                for (k, t) in dict.tensors {
                    let name = k.hasPrefix(s) ? String(k.dropFirst(s.count)) : k
                    if stripped[name] != nil { collision = true; break }
                    stripped[name] = t
                }
                guard !collision else { continue }
                var probe = dict
                probe.tensors = stripped
                let sub = CandidateSearch.backboneSubset(probe, prefix: "")
                guard let arch = ArchitectureInference.guess(sub),
                      ArchitectureInference.compare(sub, to: ArchitectureInference.backboneKeys(for: arch)).isEmpty else { continue }
                let without = dict.tensors.keys.filter { !$0.hasPrefix(s) }
                let with = dict.tensors.keys.filter { $0.hasPrefix(s) }
                let where_ = dict.keyPath.isEmpty ? "the root dict" : "'\(dict.keyPath)'"
                return .ambiguous("partial prefix '\(s)' in \(where_): \(n) of \(dict.tensors.count) keys start with it (\(with.prefix(2).joined(separator: ", ")), ...) and \(without.count) do not (\(without.prefix(3).joined(separator: ", "))\(without.count > 3 ? ", ..." : "")); a prefix is stripped only when every key has it: re-save the state dict with consistent names")
            }
        }
        return nil
    }

    // MARK: helpers

    /// `other` cut one dot-separated segment past the segments it shares with `chosen`
    /// (`sideRoot("target_network.encoder.", apartFrom: "online_network.encoder.")` is
    /// `target_network.`; `module.encoder_k.` apart from `module.encoder_q.` is `module.encoder_k.`);
    /// "" when `other` is empty.
    static func sideRoot(_ other: String, apartFrom chosen: String) -> String {
        let a = other.split(separator: ".", omittingEmptySubsequences: true)
        let b = chosen.split(separator: ".", omittingEmptySubsequences: true)
        var shared = 0
        while shared < a.count, shared < b.count, a[shared] == b[shared] { shared += 1 }
        guard shared < a.count else { return "" }
        return a[...shared].joined(separator: ".") + "."
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// Everything in the document outside the chosen dict's path, by key path: optimizer states
    /// (also those nested in a dropped sub-tree), sub-trees holding other dicts of tensors, and the rest.
    static func siblings(of path: [String], in root: ObjectValue, walk: CandidateSearch.Walk) -> (optimizers: [String], candidates: [String], others: [String]) {
        var result: (optimizers: [String], candidates: [String], others: [String]) = ([], [], [])
        func startsWith(_ a: [String], _ b: [String]) -> Bool { a.count >= b.count && Array(a.prefix(b.count)) == b }
        var node = root
        var prefix: [String] = []
        for step in path {
            let children: [(String, ObjectValue)]
            switch node {
            case .dict(let entries): children = entries.map { ($0.key.keyText, $0.value) }
            case .list(let items), .tuple(let items): children = items.enumerated().map { (String($0.offset), $0.element) }
            default: children = []
            }
            for (key, _) in children where key != step {
                if key == "_metadata" { continue }
                let p = prefix + [key]
                let text = p.joined(separator: ".")
                if walk.optimizers.contains(p) { result.optimizers.append(text); continue }
                if walk.dicts.contains(where: { startsWith($0.path, p) }) { result.candidates.append(text) } else { result.others.append(text) }
            }
            guard let next = children.first(where: { $0.0 == step }) else { break }
            node = next.1
            prefix.append(step)
        }
        return result
    }

    /// Optimizer states nested inside dropped sub-trees (not direct siblings), for the rules.
    static func nestedOptimizers(_ walk: CandidateSearch.Walk, dropped: [String]) -> [String] {
        walk.optimizers.map { $0.joined(separator: ".") }.filter { o in
            !dropped.contains(o) && dropped.contains { o.hasPrefix($0 + ".") }
        }
    }

    /// The most specific path segment naming a branch (`teacher`, `model_ema`, `encoder_q`);
    /// generic containers (`model`, `state_dict`) only when nothing more specific is present.
    static func branchOf(_ segments: [String]) -> String? {
        let named = segments.filter { branchNames.contains($0) }
        return named.last(where: { !genericContainers.contains($0) })
    }

    /// What `_metadata` says about the BatchNorm version of the modules (source names) whose counters were filled.
    static func bnVersionNote(_ modules: [String], metadata: ObjectValue?) -> String {
        guard case .dict(let entries)? = metadata else {
            return "(no _metadata: torch's load_state_dict fills them with 0 as well)"
        }
        var versions: [String: Int64] = [:]
        for e in entries {
            guard let module = e.key.stringValue, case .dict(let fields) = e.value else { continue }
            for f in fields where f.key.stringValue == "version" { if case .int(let v) = f.value { versions[module] = v } }
        }
        var old = 0, current = 0, unknown = 0
        for module in modules {
            if let v = versions[module] { if v < 2 { old += 1 } else { current += 1 } } else { unknown += 1 }
        }
        var parts: [String] = []
        if old > 0 { parts.append("_metadata says BatchNorm version 1 for \(old): modules saved before the buffer existed, torch's load_state_dict fills 0 too") }
        if current > 0 { parts.append("_metadata says BatchNorm version 2 for \(current): torch's strict load_state_dict would report them missing") }
        if unknown > 0 { parts.append("no _metadata entry for \(unknown)") }
        return "(" + parts.joined(separator: "; ") + ")"
    }
}
