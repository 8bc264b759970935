/// Tied tensors: which names of a flat state dict share one tensor.
extension Checkpoint {
    /// The sharing writers honour for `flat` (a `flatStateDict(only:)` of this checkpoint): the
    /// entries of `aliases` whose two names are both in `flat`, differ, and hold equal non-empty
    /// tensors (same dtype, shape and bytes; empty tensors are never aliases). Names linked
    /// through chains or in either direction form one group; every name of a group maps to the
    /// group's first name in `flat` order, which itself is not a key. Entries made stale by editing
    /// one of the tensors, or naming a tensor outside `flat`, are dropped.
    /// - Returns: alias -> first name, both flat state-dict names (`decoder.weight` -> `encoder.weight`).
    public func sharedAliases(in flat: StateDict) -> [String: String] {
        guard !aliases.isEmpty else { return [:] }
        var parent = Array(flat.keys.indices)
        func root(_ i: Int) -> Int {
            var i = i
            while parent[i] != i { parent[i] = parent[parent[i]]; i = parent[i] }
            return i
        }
        for (alias, target) in aliases {
            guard alias != target, let a = flat.index(forKey: alias), let b = flat.index(forKey: target) else { continue }
            let ta = flat.values[a], tb = flat.values[b]
            guard ta.count > 0, ta == tb else { continue }
            let (ra, rb) = (root(a), root(b))
            if ra != rb { parent[max(ra, rb)] = min(ra, rb) }   // the root is always the group's first index
        }
        var shared: [String: String] = [:]
        for i in parent.indices where root(i) != i {
            shared[flat.keys[i]] = flat.keys[root(i)]
        }
        return shared
    }

    /// `decoder.weight = encoder.weight, ...`: the first `limit` pairs of `shared` sorted by alias
    /// name, then `, ...` when there are more; for messages.
    public static func describeAliases(_ shared: [String: String], limit: Int = 3) -> String {
        let pairs = shared.keys.sorted().prefix(limit).map { "\($0) = \(shared[$0]!)" }
        return pairs.joined(separator: ", ") + (shared.count > limit ? ", ..." : "")
    }
}
