import Checkpoint

/// The card body's one guard against what a file or a run recorded: every string of a lineage
/// (labels, architecture, and every field of each stage's provenance: source file name, key path,
/// rules, prefixes, metadata, dataset URIs, hyperparameter keys and values, metric and seed names,
/// warnings, command line, times) with its control characters written as escapes
/// (`String.escapingControlCharacters`: `\n`, `\r`, `\t`, else `\u{1B}`-style; categories Cc, Zl, Zp).
/// `ModelCard.body` renders only from this copy, so a tensor key such as `enc\u{1B}[2J\n.` can
/// neither start a new Markdown line (break a table row, inject a heading) nor reach a terminal or a
/// README.md as a control sequence. Table cells escape `|` on top (`ModelCard.cell`). The front
/// matter quotes the original strings exactly instead (`YAMLValue.quoted`).
extension CardLineage {
    var escapingControlCharacters: CardLineage {
        CardLineage(stages: stages.map { s in
            Stage(id: s.id.escapingControlCharacters, labels: s.labels.map(\.escapingControlCharacters),
                  status: s.status, provenance: s.provenance?.escapingControlCharacters,
                  arch: s.arch?.escapingControlCharacters, components: s.components.map(\.escapingControlCharacters))
        })
    }
}

extension Provenance {
    /// Every string field, list item, dictionary key and JSON string with control characters escaped;
    /// numbers and the metric histories as they are.
    var escapingControlCharacters: Provenance {
        func e(_ s: String) -> String { s.escapingControlCharacters }
        func keys<V>(_ d: [String: V], _ value: (V) -> V) -> [String: V] {
            Dictionary(d.map { (e($0.key), value($0.value)) }, uniquingKeysWith: { a, _ in a })
        }
        var p = self
        p.stage = e(stage)
        p.method = method.map(e)
        p.parents = parents.map { Parent(id: e($0.id), relation: e($0.relation), note: $0.note.map(e)) }
        if var s = source {
            s.fileName = e(s.fileName)
            s.sha256 = e(s.sha256)
            s.format = e(s.format)
            s.container = e(s.container)
            s.rules = s.rules.map(e)
            s.keyPath = e(s.keyPath)
            s.strippedPrefix = s.strippedPrefix.map(e)
            s.droppedKeys = s.droppedKeys.map(e)
            s.filledKeys = s.filledKeys.map(e)
            s.aliases = keys(s.aliases, e)
            s.locations = s.locations.map(e)
            s.metadata = keys(s.metadata, e)
            p.source = s
        }
        p.datasets = datasets.map { Dataset(role: e($0.role), uri: e($0.uri), fingerprint: e($0.fingerprint)) }
        p.hyperparameters = keys(hyperparameters, \.escapingControlCharacters)
        p.seeds = keys(seeds, { $0 })
        p.metrics = keys(metrics, { $0 })
        p.warnings = warnings.map(e)
        p.tool = Tool(name: e(tool.name), version: e(tool.version))
        p.commandLine = commandLine.map(e)
        p.startedAt = startedAt.map(e)
        p.endedAt = endedAt.map(e)
        p.carriedFrom = carriedFrom?.map {
            CarriedStep(fileName: e($0.fileName), sha256: e($0.sha256), commandLine: $0.commandLine.map(e),
                        importedAt: e($0.importedAt), tool: Tool(name: e($0.tool.name), version: e($0.tool.version)))
        }
        p.metricHistory = keys(metricHistory, { $0 })
        return p
    }
}

extension JSONValue {
    /// Strings and object keys with control characters escaped, at any depth.
    var escapingControlCharacters: JSONValue {
        switch self {
        case .string(let s): .string(s.escapingControlCharacters)
        case .array(let a): .array(a.map(\.escapingControlCharacters))
        case .object(let o): .object(Dictionary(o.map { ($0.key.escapingControlCharacters, $0.value.escapingControlCharacters) },
                                                uniquingKeysWith: { a, _ in a }))
        default: self
        }
    }
}

extension ModelCard {
    /// `text` as one Markdown code span (CommonMark 0.31, "Code spans"): delimited by a backtick
    /// run one longer than the longest run inside it, so a backtick in a recorded field (a tensor
    /// key, a provenance string) neither closes the span early nor leaves the rest of the line
    /// as Markdown; padded with a space on each side when it starts or ends with a backtick (which
    /// would join the delimiter) or starts and ends with a space (CommonMark strips one of each,
    /// so the padding keeps them). Empty text gives the two backticks it gave before.
    static func code(_ text: String) -> String {
        var longest = 0, run = 0
        for c in text.unicodeScalars {
            run = c == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        let fence = String(repeating: "`", count: longest + 1)
        let pad = text.hasPrefix("`") || text.hasSuffix("`")
            || (text.hasPrefix(" ") && text.hasSuffix(" ") && text.contains { $0 != " " })
        return pad ? "\(fence) \(text) \(fence)" : fence + text + fence
    }
}
