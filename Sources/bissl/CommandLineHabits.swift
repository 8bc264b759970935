import ArgumentParser
import Checkpoint
import Foundation

/// What the CLI does about common command-line slips, before and after ArgumentParser parses:
/// `bissl --zoo DIR list` (the zoo given before the command), a misspelt command or option (a
/// "did you mean" suggestion), and error texts that ArgumentParser spreads over several lines
/// (folded into the one `error:` line).
enum CommandLineHabits {
    /// The command names at each level, from the root: `["list", "runs", ...]`, and for `runs`
    /// `["show", "rm", ...]`.
    static func subcommands(of command: ParsableCommand.Type) -> [String: ParsableCommand.Type] {
        var out: [String: ParsableCommand.Type] = [:]
        for sub in command.configuration.subcommands {
            out[sub._commandName] = sub
            for alias in sub.configuration.aliases { out[alias] = sub }
        }
        return out
    }

    /// The subcommand path the arguments name (`runs show` -> [Bissl, Runs, RunsShow]) and the index
    /// of the first argument after it.
    static func commandPath(_ args: [String], root: ParsableCommand.Type) -> (path: [ParsableCommand.Type], next: Int) {
        var path: [ParsableCommand.Type] = [root]
        var i = 0
        while i < args.count, let sub = subcommands(of: path.last!)[args[i]] {
            path.append(sub)
            i += 1
        }
        return (path, i)
    }

    /// Moves a `--zoo DIR` (or `--zoo=DIR`) given before the command to just after it, where the
    /// command's own `--zoo` option reads it: `--zoo z list` -> `list --zoo z`.
    static func movingLeadingZoo(_ args: [String], root: ParsableCommand.Type) -> [String] {
        var args = args
        var moved: [String] = []
        while let first = args.first {
            if first == "--zoo", args.count >= 2 {
                moved += args.prefix(2)
                args.removeFirst(2)
            } else if first.hasPrefix("--zoo=") {
                moved.append(first)
                args.removeFirst()
            } else {
                break
            }
        }
        guard !moved.isEmpty else { return args }
        let (_, next) = commandPath(args, root: root)
        args.insert(contentsOf: moved, at: next)
        return args
    }

    /// The error for a word where a command is expected and none has that name, with the closest
    /// name when one is near (`lsit` -> `list`); nil when the word names a command or the command
    /// reached takes arguments of its own.
    static func unknownCommand(_ args: [String], root: ParsableCommand.Type) -> CLIError? {
        let (path, next) = commandPath(args, root: root)
        let names = subcommands(of: path.last!)
        guard next < args.count, !names.isEmpty, !args[next].hasPrefix("-") else { return nil }
        let word = args[next]
        let where_ = path.dropFirst().map { $0._commandName }.joined(separator: " ")
        let command = (["bissl"] + (where_.isEmpty ? [] : [where_])).joined(separator: " ")
        let hint = closest(to: word, among: Array(names.keys)).map { "; did you mean '\($0)'?" } ?? ""
        return CLIError("'\(word)' is not a \(command) command\(hint) (\(command) --help lists them)")
    }

    /// Folds ArgumentParser's several-line messages into one line: a list of allowed values after
    /// "Please provide one of the following:" becomes `a, b, c`; an unknown option that ArgumentParser
    /// found no suggestion for gets the closest option of that command (`closest`, which also matches
    /// a prefix); a bare `--remote` gets which commands need its name and the zoo's remotes
    /// (`RemoteNotes.bareRemote`).
    static func oneLine(_ message: String, args: [String], root: ParsableCommand.Type) -> String {
        var lines = message.split(separator: "\n", omittingEmptySubsequences: true).map { String($0) }
        guard var first = lines.first else { return "unknown error" }
        lines.removeFirst()
        if first.hasPrefix("Error: ") { first.removeFirst("Error: ".count) }   // ArgumentParser's prefix
        let bullets = lines.compactMap { line -> String? in
            let t = line.trimmingCharacters(in: .whitespaces)
            return t.hasPrefix("- ") ? String(t.dropFirst(2)) : nil
        }
        if first.hasSuffix("Please provide one of the following:"), !bullets.isEmpty {
            first = String(first.dropLast("Please provide one of the following:".count)) + "Allowed: " + bullets.joined(separator: ", ")
        }
        if first.hasPrefix("Unknown option '"), !first.contains("Did you mean"), let end = first.dropFirst(16).firstIndex(of: "'") {
            let option = String(first[first.index(first.startIndex, offsetBy: 16)..<end])
            let command = commandPath(args, root: root).path.last!
            if let near = closest(to: option, among: optionNames(of: command)) {
                first += ". Did you mean '\(near)'?"
            }
        }
        if first == "Missing value for '--remote <NAME>'" {
            first += RemoteNotes.bareRemote(command: commandPath(args, root: root).path.last!._commandName, args: args)
        }
        return first
    }

    /// Long option names (`--batch-size`) a command's help lists.
    static func optionNames(of command: ParsableCommand.Type) -> [String] {
        let help = command.helpMessage(columns: 1000)
        var names = Set<String>()
        var current = ""
        for ch in help + " " {
            if ch.isLetter || ch.isNumber || ch == "-" {
                current.append(ch)
            } else {
                if current.hasPrefix("--"), current.count > 2 { names.insert(current) }
                current = ""
            }
        }
        return names.sorted()
    }

    /// The candidate nearest to `word` by edit distance (insertions, deletions, substitutions and
    /// swaps of neighbours), when it is within a third of the word's length (at least 1, at most 3),
    /// or a candidate that starts with `word`.
    static func closest(to word: String, among candidates: [String]) -> String? {
        let w = Array(word.lowercased())
        let limit = min(3, max(1, w.count / 3))
        var best: (String, Int)?
        for c in candidates.sorted() {
            let d = distance(w, Array(c.lowercased()))
            if d <= limit, best.map({ d < $0.1 }) ?? true { best = (c, d) }
        }
        if let best { return best.0 }
        return w.count >= 3 ? candidates.sorted().first { $0.lowercased().hasPrefix(word.lowercased()) } : nil
    }

    /// Optimal string alignment distance.
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[a.count][b.count]
    }

    /// Refuses a path that names no file, in the one wording for it (`cannot read PATH: no such
    /// file`, PATH as given), before any reader opens it. A FIFO, device or socket is refused by the
    /// reader itself (every opener asks `RegularFile.refusal`), in the same words. An empty path
    /// (`''`, an unset shell variable) is named as such.
    static func requireFile(_ path: String) throws {
        guard !path.isEmpty else { throw CLIError("cannot read '': the path is empty (an unset shell variable?); give a file") }
        guard FileManager.default.fileExists(atPath: path) else { throw CLIError("cannot read \(path.quotedPathIfNeeded): no such file") }
    }

    /// Refuses an output path whose folder is missing (or is a file), in the one wording for it
    /// (`cannot write PATH: no such folder DIR`, both as given), before any work is done; an empty
    /// path is named as such, and so is a path that is a folder itself (`cannot write PATH: it is a
    /// folder`) unless the output is one (`folderAllowed`: a hub folder), or a device, FIFO or socket
    /// (`cannot write PATH: it is not a regular file`; symbolic links followed): the writers rename
    /// their temporary onto the output, which would put a file where `/dev/null` or a pipe was
    /// (as root, for every process on the machine). The writers say the same of
    /// a folder missing by the time they write (`TemporaryFileLock`), with absolute paths. Paths are
    /// written as `String.quotedPathIfNeeded` does.
    static func requireOutputFolder(_ path: String, folderAllowed: Bool = false) throws {
        guard !path.isEmpty else { throw CLIError("cannot write '': the path is empty (an unset shell variable?); give a file") }
        var st = stat()
        if stat(path, &st) == 0 {
            let kind = st.st_mode & S_IFMT
            if kind == S_IFDIR && !folderAllowed { throw CLIError("cannot write \(path.quotedPathIfNeeded): it is a folder") }
            if kind != S_IFDIR && kind != S_IFREG { throw CLIError("cannot write \(path.quotedPathIfNeeded): it is not a regular file") }
        }
        var isFolder: ObjCBool = false
        // The folder as typed: before the last `/` (NSString.deletingLastPathComponent traps on a
        // one-character path in swift-corelibs-foundation: `-o a` crashed).
        guard let slash = path.lastIndex(of: "/") else { return }   // a name in the working folder
        let folder = slash == path.startIndex ? "/" : String(path[..<slash])
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw CLIError("cannot write \(path.quotedPathIfNeeded): no such folder \(folder.quotedPathIfNeeded)")
        }
        guard isFolder.boolValue else { throw CLIError("cannot write \(path.quotedPathIfNeeded): \(folder.quotedPathIfNeeded) is not a folder") }
    }

    /// One wording for a file that is not there, whichever layer noticed: `cannot read PATH: no such file`.
    static func missingFile(_ error: Error) -> String? {
        let ns = error as NSError
        let missing = (ns.domain == NSCocoaErrorDomain && [NSFileNoSuchFileError, NSFileReadNoSuchFileError].contains(ns.code))
            || (ns.domain == NSPOSIXErrorDomain && ns.code == Int(ENOENT))
        guard missing else { return nil }
        let path = (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        return path.map { "cannot read \($0.quotedPathIfNeeded): no such file" } ?? "no such file"
    }
}

/// The precisions `--dtype` casts to: the floating-point types only (integer tensors are never cast).
/// Accepts the common spellings `fp16`/`half`, `bf16`, `fp32`/`float`, `fp64`/`double`.
enum CastType: String, CaseIterable, ExpressibleByArgument {
    case float16, bfloat16, float32, float64

    init?(argument: String) {
        let aliases = ["fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32",
                       "fp64": "float64", "double": "float64"]
        self.init(rawValue: aliases[argument.lowercased()] ?? argument.lowercased())
    }

    var dtype: DType { DType(rawValue: rawValue)! }
}
