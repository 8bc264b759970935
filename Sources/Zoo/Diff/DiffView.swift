import Checkpoint

/// What `bissl diff` shows by default, and the parsed form of command lines it compares.
///
/// **Volatile keys** differ between any two runs without saying anything about the models: wall-clock
/// times (`startedAt`, `endedAt`), durations (`metrics.durationSeconds`), run bookkeeping of resumed
/// runs (`hyperparameters.run.*`), and the derived per-purpose seeds (`seeds.*`), which follow from
/// the `seed` hyperparameter that stays visible (and from the stage, so entries of different stages
/// always differ there). `hidingVolatile()` drops them and counts what it dropped; `--all` keeps them.
///
/// **Command lines** are compared by name: `commandLine.command` (the program's subcommand words),
/// `commandLine.--batch-size` (an option's value, `true` for a flag) and `commandLine.arguments`
/// (the other positional words, joined by spaces), so one changed option shows once instead of every
/// argument after it shifting.
public enum DiffView {
    /// True for a provenance key (as `KeyedDiff` flattens it) that is volatile (see above).
    public static func isVolatile(_ key: String) -> Bool {
        key == "startedAt" || key == "endedAt" || key == "metrics.durationSeconds"
            || key.hasPrefix("seeds.") || key.hasPrefix("run.")
    }

    /// `args` (`argv`, program first) as named leaves: `command`, `--option` values, `arguments`.
    /// A word after `--option` is its value unless it starts with `-`; `--option=value` is split.
    public static func parse(commandLine args: [String]) -> [(key: String, value: String)] {
        guard !args.isEmpty else { return [] }
        var command: [String] = [String(args[0].split(separator: "/").last ?? "")]
        var options: [(String, String)] = []
        var positional: [String] = []
        var i = 1
        var sawOption = false
        while i < args.count {
            let word = args[i]
            if word.hasPrefix("-") && word.count > 1 && Double(word) == nil {
                sawOption = true
                if let eq = word.firstIndex(of: "=") {
                    options.append((String(word[..<eq]), String(word[word.index(after: eq)...])))
                } else if i + 1 < args.count, !(args[i + 1].hasPrefix("-") && Double(args[i + 1]) == nil) {
                    options.append((word, args[i + 1]))
                    i += 1
                } else {
                    options.append((word, "true"))
                }
            } else if !sawOption && positional.isEmpty && word.allSatisfy({ $0.isLowercase || $0 == "-" }) && command.count < 3 {
                command.append(word)   // subcommand words come first (`runs show`)
            } else {
                positional.append(word)
            }
            i += 1
        }
        var out: [(String, String)] = [("command", command.joined(separator: " "))]
        var seen: [String: Int] = [:]
        for (name, value) in options {
            // A repeated option (`--tag a --tag b`) gets one leaf per occurrence.
            let n = seen[name, default: 0]
            seen[name] = n + 1
            out.append((n == 0 ? name : "\(name)[\(n)]", value))
        }
        if !positional.isEmpty { out.append(("arguments", positional.joined(separator: " "))) }
        return out
    }
}

extension CheckpointDiff {
    /// This report without volatile provenance keys (`DiffView.isVolatile`); `hiddenVolatile` counts them.
    public func hidingVolatile() -> CheckpointDiff {
        var d = self
        let kept = provenance.filter { !DiffView.isVolatile($0.key) }
        let keptHyper = hyperparameters.filter { !DiffView.isVolatile($0.key) }
        d.hiddenVolatile += (provenance.count - kept.count) + (hyperparameters.count - keptHyper.count)
        d.provenance = kept
        d.hyperparameters = keptHyper
        return d
    }

    /// This report without its provenance and hyperparameter changes (`--no-provenance`).
    public func withoutProvenance() -> CheckpointDiff {
        var d = self
        d.provenance = []
        d.hyperparameters = []
        d.provenanceOmitted = true
        return d
    }
}
