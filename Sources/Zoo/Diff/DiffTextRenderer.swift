import Checkpoint

/// Renders a `CheckpointDiff` for a terminal: a summary, the per-stage table, architecture,
/// provenance and hyperparameter changes, then one table per tensor section (weights, BN
/// statistics, counters) listing tensors in the report's order (largest relative change first).
///
/// Key changes are marked `~` (changed, `a -> b`), `+` (only in B) and `-` (only in A). Numbers use
/// 4 significant digits, cosine similarity 6 decimals, `-` where a quantity is undefined. Names,
/// keys and values from the checkpoints (tensor keys, provenance text) are written with their control
/// characters escaped (`String.escapingControlCharacters`): one line each, no terminal sequence.
public enum DiffTextRenderer {
    /// The whole report, lines joined by `\n`, ending with a newline.
    /// - Parameter maxTensorRows: per tensor section, list at most this many tensors (the largest
    ///   changes come first) and say how many more there are; nil lists all.
    public static func render(_ diff: CheckpointDiff, maxTensorRows: Int? = nil) -> String {
        var out: [String] = []
        out.append("diff \(diff.labelA.escapingControlCharacters) -> \(diff.labelB.escapingControlCharacters)")
        if diff.summary.identical {
            out.append("  identical: same tensors, architecture and provenance")
            return out.joined(separator: "\n") + "\n"
        }
        if let change = diff.summary.architecturesDiffer {
            out.append("  architectures differ (\(change)): weights not comparable")
        }
        out.append("")
        out += summary(diff)
        out.append("")
        out += stages(diff)
        for (title, changes) in [("architecture", diff.architecture), ("provenance", diff.provenance),
                                 ("hyperparameters", diff.hyperparameters)] where !changes.isEmpty {
            out.append("")
            out.append(title)
            out += keyChanges(changes)
        }
        for section in diff.sections where !section.tensors.isEmpty {
            out.append("")
            var shown = section
            if let limit = maxTensorRows, section.tensors.count > limit {
                shown.tensors = Array(section.tensors.prefix(limit))
                out += tensors(shown)
                out.append("  ... \(section.tensors.count - limit) more (--all lists every tensor)")
            } else {
                out += tensors(shown)
            }
        }
        return out.joined(separator: "\n") + "\n"
    }

    // MARK: - Parts

    static func summary(_ diff: CheckpointDiff) -> [String] {
        var table = TextTable()
        for section in diff.sections {
            let differing = section.total - section.unchanged
            var text: String
            if section.total == 0 {
                text = "none"
            } else if differing == 0 {
                text = "unchanged (\(section.total) tensor\(section.total == 1 ? "" : "s"))"
            } else {
                text = "\(differing) of \(section.total) tensor\(section.total == 1 ? "" : "s") "
                    + (differing == 1 ? "differs" : "differ") + " (" + counts(section) + ")"
            }
            if section.section == .weights, differing > 0, let r = diff.summary.relativeChange {
                text += ", relative change \(DiffFormat.number(r))"
            }
            if section.section == .counters, differing > 0 { text += "; counters are not weight changes" }
            table.add([section.section.title, text])
        }
        for (title, changes) in [("architecture", diff.architecture), ("provenance", diff.provenance),
                                 ("hyperparameters", diff.hyperparameters)] {
            if diff.provenanceOmitted && title != "architecture" { continue }
            var text = changes.isEmpty ? "identical" : changes.count == 1 ? "1 key differs" : "\(changes.count) keys differ"
            if title == "provenance" && diff.hiddenVolatile > 0 {
                text += changes.isEmpty ? " but for " : "; "
                text += "\(diff.hiddenVolatile) volatile key\(diff.hiddenVolatile == 1 ? "" : "s") hidden (times, durations, derived seeds; --all shows them)"
            }
            table.add([title, text])
        }
        return ["summary"] + table.lines()
    }

    /// A stage's structural notes for the table: all of them up to 3, else the count and the first 3
    /// (the JSON report keeps every note).
    static func shortNotes(_ notes: [String]) -> String {
        guard notes.count > 3 else { return notes.joined(separator: "; ") }
        return "\(notes.count) tensors: " + notes.prefix(3).joined(separator: "; ") + "; ..."
    }

    /// `60 changed, 2 reshaped in replaced classifier, 1 added`: tensors whose shape changed (a
    /// replaced head) are counted apart from those whose values changed, naming their stages, as the
    /// stage table calls them `replaced`.
    static func counts(_ s: CheckpointDiff.Section) -> String {
        var parts: [String] = []
        let reshaped = s.tensors.filter { $0.status == .changed && $0.shapeChanged }
        if s.changed - reshaped.count > 0 { parts.append("\(s.changed - reshaped.count) changed") }
        if !reshaped.isEmpty {
            var stages: [String] = []
            for t in reshaped where !stages.contains(t.stage) { stages.append(t.stage) }
            parts.append("\(reshaped.count) reshaped in replaced \(stages.joined(separator: ", "))")
        }
        if s.added > 0 { parts.append("\(s.added) added") }
        if s.removed > 0 { parts.append("\(s.removed) removed") }
        return parts.joined(separator: ", ")
    }

    static func stages(_ diff: CheckpointDiff) -> [String] {
        var table = TextTable()
        table.add(["stage", "status", "weights", "relative", "L2", "BN stats", "counters", "notes"])
        for s in diff.stages {
            table.add([s.stage, s.status.rawValue, "\(s.changedWeights)/\(s.weightTensors)",
                       DiffFormat.optional(s.relativeChange), DiffFormat.optional(s.l2),
                       "\(s.changedBNStatistics)/\(s.bnStatistics)", "\(s.changedCounters)/\(s.counters)",
                       shortNotes(s.notes)])
        }
        return ["stages (changed/total tensors; relative = ||B - A|| / ||A|| over the stage's weights)"]
            + table.lines()
    }

    static func keyChanges(_ changes: [KeyChange]) -> [String] {
        var table = TextTable()
        for c in changes {
            switch c.kind {
            case .changed: table.add(["~", c.key, DiffFormat.value(c.a) + " -> " + DiffFormat.value(c.b)])
            case .added: table.add(["+", c.key, DiffFormat.value(c.b)])
            case .removed: table.add(["-", c.key, DiffFormat.value(c.a)])
            }
        }
        return table.lines()
    }

    static func tensors(_ section: CheckpointDiff.Section) -> [String] {
        let differing = section.total - section.unchanged
        var header = "\(section.section.title): \(differing) of \(section.total) "
            + (differing == 1 ? "differs" : "differ")
        if differing > 0 { header += " (" + counts(section) + ")" }
        var table = TextTable()
        if section.section == .counters {
            table.add(["", "tensor", "A", "B", "note"])
            for e in section.tensors {
                table.add([mark(e), e.name, e.valueA.map(DiffFormat.number) ?? DiffFormat.shape(e.shapeA),
                           e.valueB.map(DiffFormat.number) ?? DiffFormat.shape(e.shapeB), note(e)])
            }
        } else {
            table.add(["", "tensor", "shape", "L2", "relative", "cosine", "max abs", "note"])
            for e in section.tensors {
                let shape = e.shapeChanged ? DiffFormat.shape(e.shapeA) + " -> " + DiffFormat.shape(e.shapeB)
                    : DiffFormat.shape(e.shapeA ?? e.shapeB)
                if let d = e.delta {
                    table.add([mark(e), e.name, shape, DiffFormat.number(d.l2), DiffFormat.optional(d.relative),
                               DiffFormat.cosine(d.cosine), DiffFormat.number(d.maxAbs), note(e)])
                } else {
                    table.add([mark(e), e.name, shape, "-", "-", "-", "-", note(e)])
                }
            }
        }
        return [header] + table.lines()
    }

    /// `~` changed, `+` added, `-` removed, `=` unchanged.
    static func mark(_ e: CheckpointDiff.TensorEntry) -> String {
        switch e.status {
        case .changed, .replaced: return "~"
        case .added: return "+"
        case .removed: return "-"
        case .unchanged: return "="
        }
    }

    static func note(_ e: CheckpointDiff.TensorEntry) -> String {
        var parts: [String] = []
        switch e.status {
        case .added: parts.append("only in B (\(e.dtypeB!.rawValue))")
        case .removed: parts.append("only in A (\(e.dtypeA!.rawValue))")
        default: break
        }
        if e.shapeChanged { parts.append("shape changed") }
        if e.dtypeChanged { parts.append("dtype \(e.dtypeA!.rawValue) -> \(e.dtypeB!.rawValue)") }
        if let d = e.delta, d.changedElements > 0, d.changedElements < d.count {
            parts.append("\(d.changedElements) of \(d.count) elements differ")
        }
        return parts.joined(separator: "; ")
    }
}
