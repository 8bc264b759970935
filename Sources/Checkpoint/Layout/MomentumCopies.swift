/// The one preference `LayoutResolver` applies between complete backbones: a network trained by
/// gradient over its momentum (moving-average) copy, when the two sit side by side under the branch
/// names of the method that keeps them.
///
/// Methods and names (the trained network first; the copy is updated as
/// `copy = m * copy + (1 - m) * trained` and never receives a gradient):
/// - MoCo v1/v2 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning",
///   Section 3.2): `encoder_q` (query) and `encoder_k` (key); the authors' linear evaluation
///   (`main_lincls.py` of facebookresearch/moco) loads `module.encoder_q`.
/// - MoCo v3 (Chen et al. 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
///   Section 2): `base_encoder` and `momentum_encoder`.
/// - BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", Section 3.1): the online network
///   (`online_network`, `online_encoder`, `online`; `online_network_state_dict`, the key under which
///   sthalles/PyTorch-BYOL's trainer saves its state dict) and the target network (`target_network`,
///   `target_encoder`, `target`, `target_network_state_dict`); the paper evaluates the online encoder.
///
/// Teacher/student pairs (DINO evaluates the teacher) and EMA copies of a whole model (`model_ema`)
/// have no such convention, so they stay ambiguous until `--select` picks one.
enum MomentumCopies {
    struct Pair {
        var trained: String
        var average: String
        var method: String
    }

    static let pairs: [Pair] = [
        Pair(trained: "encoder_q", average: "encoder_k", method: "MoCo: the query encoder is trained by gradient, the key encoder is its momentum copy"),
        Pair(trained: "base_encoder", average: "momentum_encoder", method: "MoCo v3: the base encoder is trained by gradient, the momentum encoder is its moving average"),
        Pair(trained: "online_network", average: "target_network", method: "BYOL: the online network is trained by gradient, the target network is its moving average"),
        Pair(trained: "online_encoder", average: "target_encoder", method: "BYOL: the online encoder is trained by gradient, the target encoder is its moving average"),
        Pair(trained: "online", average: "target", method: "BYOL: the online network is trained by gradient, the target network is its moving average"),
        Pair(trained: "online_network_state_dict", average: "target_network_state_dict", method: "BYOL: the online network is trained by gradient, the target network is its moving average"),
    ]

    /// The pair under which `copy`'s selector is the moving average of `trained`'s: both selectors
    /// have the same dot-separated segments except one, which is the pair's average name in `copy`
    /// and its trained name in `trained`.
    static func pair(copy: Candidate, of trained: Candidate) -> Pair? {
        let a = copy.selector.split(separator: ".", omittingEmptySubsequences: false)
        let b = trained.selector.split(separator: ".", omittingEmptySubsequences: false)
        guard a.count == b.count else { return nil }
        let differing = zip(a, b).enumerated().filter { $0.element.0 != $0.element.1 }
        guard differing.count == 1, let only = differing.first else { return nil }
        return pairs.first { $0.average == only.element.0 && $0.trained == only.element.1 }
    }

    /// Where `path` (a dotted selector or key prefix, `module.encoder_k` or `target_network.encoder.`)
    /// lies in a momentum copy by its method's names: the pair whose average name is its last such
    /// segment, `path` up to that segment with a trailing dot (`target_network.`: the copy's side of
    /// the tree), and `path` with the pair's trained name in its place (`online_network.encoder.`:
    /// where the network trained by gradient sits in a file that keeps both). Nil when no segment
    /// of `path` is an average name.
    static func copy(at path: String) -> (pair: Pair, copySide: String, trainedPath: String)? {
        let segments = path.split(separator: ".", omittingEmptySubsequences: false)
        for i in segments.indices.reversed() {
            guard let pair = pairs.first(where: { $0.average == segments[i] }) else { continue }
            var trained = segments
            trained[i] = Substring(pair.trained)
            return (pair, segments[...i].joined(separator: ".") + ".", trained.joined(separator: "."))
        }
        return nil
    }

    /// The candidate of `all` (other than `copy`) of which `copy` is the momentum copy, with the
    /// pair; nil when `copy` is no such copy.
    static func trained(of copy: Candidate, among all: [Candidate]) -> (Candidate, Pair)? {
        for c in all where c != copy {
            if let found = pair(copy: copy, of: c) { return (c, found) }
        }
        return nil
    }

    /// When every candidate of `complete` but one is the momentum copy of another candidate of it,
    /// that one, with the rule that chose it (for `Resolution.rules`); nil otherwise.
    static func preferred(_ complete: [Candidate]) -> (Candidate, rule: String)? {
        guard complete.count > 1 else { return nil }
        var copies: [(Candidate, Pair)] = []
        var rest: [Candidate] = []
        for c in complete {
            if let found = complete.lazy.compactMap({ d in pair(copy: c, of: d) }).first { copies.append((c, found)) } else { rest.append(c) }
        }
        guard rest.count == 1, let chosen = rest.first else { return nil }
        let over = copies.map { "'\($0.0.selector)'" }.joined(separator: ", ")
        let methods = Array(Set(copies.map(\.1.method))).sorted().joined(separator: "; ")
        return (chosen, "chose '\(chosen.selector)' over its momentum copy \(over) (\(methods)); --select \(copies[0].0.selector) picks the copy")
    }
}
