import ArgumentParser
import Checkpoint
import Foundation
import Zoo

/// `bissl remote add|list|remove`: the S3 remotes a zoo shares entries through (schemas/remote.md).
struct RemoteGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remote",
        abstract: "Manage the zoo's remotes: S3-compatible object stores shared with other zoos.",
        discussion: """
            Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else the \
            profile AWS_PROFILE (default: default) of ~/.aws/credentials; they are never stored in the zoo.
            """,
        subcommands: [RemoteAdd.self, RemoteList.self, RemoteRemove.self])
}

struct RemoteAdd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a remote (stored in <zoo>/remotes.json).")

    @Argument(help: "Remote name: 1-64 characters of A-Z a-z 0-9 . _ -.")
    var name: String
    @Argument(help: "s3://BUCKET or s3://BUCKET/PREFIX.")
    var url: String
    @Option(help: ArgumentHelp("S3-compatible server (default: AWS S3).", valueName: "URL"))
    var endpoint: String?
    @Option(help: "Signing region (default: $AWS_REGION, else $AWS_DEFAULT_REGION, else us-east-1).")
    var region: String?
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let config = try RemoteConfig(name: name, url: url, endpoint: endpoint, region: region)
        try Remotes.add(config, zooOptions.layout)
        let added = "added remote \(name) \(url)\(endpoint.map { " at \($0)" } ?? "")"
        // What the URL holds, so that a mistyped prefix shows now rather than as an empty remote later.
        let survey: RemoteSurvey
        do {
            survey = try RemoteZoo(config).survey()
        } catch {
            return print("\(added) (not checked: \(error))")
        }
        if survey.isZoo { return print("\(added): a bissl zoo with \(survey.entries) entr\(survey.entries == 1 ? "y" : "ies")") }
        print("\(added): it holds no bissl zoo yet\(survey.otherKeys ? " (it holds other keys)" : ""); the first push starts one there")
        if !survey.nearby.isEmpty { print(RemoteNotes.nearby(survey.nearby, remote: name)) }
    }
}

struct RemoteList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the zoo's remotes.")

    @OptionGroup var zooOptions: ZooOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let remotes = try Remotes.load(zooOptions.layout)
        if json { return try ZooOutput.printJSON(remotes) }
        if remotes.isEmpty { return print("no remotes (bissl remote add NAME s3://BUCKET/PREFIX)") }
        print(ZooOutput.table(["NAME", "URL", "ENDPOINT", "REGION"],
                              remotes.map { [$0.name, $0.url, $0.endpoint ?? "-", $0.region ?? "-"] }))
    }
}

struct RemoteRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Forget a remote (nothing on it changes).")

    @Argument(help: "Remote name.")
    var name: String
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let removed = try Remotes.remove(name, zooOptions.layout)
        print("removed remote \(removed.name) (\(removed.url)); nothing on it changed")
    }
}

/// Lines shared by the remote commands.
enum RemoteNotes {
    /// One `warning:` line on stderr per ref or manifest a command skipped because it does not
    /// decode: `warning: skipped damaged ref s3://.../refs/x (not ...); bissl gc --remote NAME --remove-damaged removes it`.
    static func warn(_ damaged: [RemoteDamage]) {
        for d in damaged {
            FileHandle.standardError.write(Data("warning: skipped damaged \(d.kind.rawValue) \(d.url) (\(d.problem)); \(d.remedy)\n".utf8))
        }
    }

    /// What bissl adds to ArgumentParser's `Missing value for '--remote <NAME>'` (a bare `--remote`):
    /// push and pull take the zoo's only remote when `--remote` is left out; list, lineage and gc
    /// read or clean the local zoo unless `--remote` names a remote, so there the name is always
    /// given (schemas/remote.md, "Configuration"). The zoo's remotes are named when its
    /// `remotes.json` can be read (the zoo `--zoo DIR` in `args` names, else `$BISSL_ZOO`, else `./zoo`).
    /// - Parameters:
    ///   - command: the name of the command parsed (`list`, `push`, ...).
    ///   - args: the command line after `bissl`.
    static func bareRemote(command: String, args: [String]) -> String {
        let zoo = args.indices.last { args[$0] == "--zoo" && $0 + 1 < args.count }.map { args[$0 + 1] }
            ?? args.last { $0.hasPrefix("--zoo=") }.map { String($0.dropFirst("--zoo=".count)) }
        let layout = ZooLayout.resolve(explicit: zoo)
        let known: String
        if let names = (try? Remotes.load(layout))?.map(\.name) {
            known = names.isEmpty ? { let n = Remotes.noRemote(layout); return "\(n.reason); \(n.advice)" }()
                : "the zoo's remotes: \(names.joined(separator: ", "))"
        } else {
            known = "bissl remote list names the zoo's remotes"
        }
        if command == "push" || command == "pull" {
            return ": give the remote's name, or leave --remote out to use the zoo's only remote (\(known))"
        }
        return ": bissl \(command) works on a remote only when --remote names it, even the zoo's only one (\(known))"
    }

    /// The warning that bissl zoos lie near a remote's prefix that holds none (a mistyped URL).
    static func nearby(_ urls: [String], remote: String) -> String {
        "warning: bissl zoos nearby: \(urls.joined(separator: ", ")); if remote \(remote) should be one of them, fix its URL (bissl remote remove \(remote), then bissl remote add)"
    }
}

/// Options shared by push and pull.
struct TransferOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Remote to use (default: the zoo's only remote).", valueName: "NAME"))
    var remote: String?
    @Flag(help: "Transfer only the entry, not its ancestors the other side lacks.")
    var noAncestors = false
    @Flag(help: "Show progress (bytes and rate) on stderr even when it is not a terminal.")
    var progress = false
    @Option(help: ArgumentHelp("Limit each connection to this many bytes per second (K, M, G suffixes: 20M).", valueName: "RATE"))
    var maxRate: String?
    @Flag(help: "Print JSON instead of text.")
    var json = false

    /// `--max-rate` in bytes per second.
    func rate() throws -> Int64? {
        guard let maxRate else { return nil }
        let units: [Character: Double] = ["K": 1e3, "M": 1e6, "G": 1e9]
        let (digits, unit) = maxRate.last.flatMap { units[Character($0.uppercased())] }.map { (maxRate.dropLast(), $0) } ?? (Substring(maxRate), 1)
        guard let value = Double(digits), value >= 1, value * unit < 1e15 else {
            throw CLIError("invalid --max-rate '\(maxRate)': give bytes per second, e.g. 500K or 20M")
        }
        return Int64(value * unit)
    }

    /// A progress line on stderr when it is a terminal or `--progress` was given.
    var bar: TransferProgress? {
        guard progress || isatty(STDERR_FILENO) == 1 else { return nil }
        let line = ProgressLine()
        return { id, done, total in line.update(id, done, total) }
    }

    func report(_ r: TransferReport, verb: String) throws {
        RemoteNotes.warn(r.damaged ?? [])
        if json { return try ZooOutput.printJSON(r) }
        for e in r.entries {
            print("\(e.transferred ? verb : "have") \(ZooOutput.label(e.id, e.name))  \(ZooOutput.bytes(e.size))")
            // The lines `bissl import` prints for content gc had unlisted as damaged.
            if let restored = e.labelsRestored {
                print("  restored \(restored.joined(separator: ", ")): the labels this content had before bissl gc unlisted it as damaged")
            }
            if let notRestored = e.labelsNotRestored {
                print("  not restored: \(notRestored.joined(separator: ", ")) (another entry holds it now, or the remote names the entry otherwise)")
            }
        }
        for l in r.labels where l.action != .unchanged {
            print(l.action == .skipped ? "skipped \(l.kind.rawValue) \(l.label): it is \(l.note ?? "held by another entry")"
                                       : "\(l.action.rawValue) \(l.kind.rawValue) \(l.label) -> \(l.id.prefix(12))")
        }
        let n = r.entries.filter(\.transferred).count
        let rate = r.seconds > 0 ? ", \(ZooOutput.bytes(Int64(Double(r.bytes) / r.seconds)))/s" : ""
        print("\(verb) \(n) entr\(n == 1 ? "y" : "ies") (\(ZooOutput.bytes(r.bytes)) in \(String(format: "%.1f", r.seconds)) s\(rate)) \(verb == "pushed" ? "to" : "from") \(r.remote)")
    }
}

/// `bissl push REF`.
struct Push: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upload an entry (and the ancestors the remote lacks) with its name and tags to a remote.",
        discussion: """
            Objects are written only where absent (If-None-Match: *) and labels by compare-and-swap, so \
            concurrent pushes are safe: a label another entry holds on the remote is refused, naming that entry.
            """)

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String
    @Flag(help: "Move a remote tag that points at another entry (names never move).")
    var force = false
    @OptionGroup var transfer: TransferOptions
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let remote = try Remotes.select(transfer.remote, zooOptions.layout)
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        let r = try zoo.push(ref, to: remote, ancestors: !transfer.noAncestors, force: force, maxRate: try transfer.rate(), progress: transfer.bar)
        if r.startedZoo == true && !transfer.json {
            print("started a bissl zoo on remote \(remote.name) (\(remote.url) held none)")
            if let nearby = r.nearbyZoos { print(RemoteNotes.nearby(nearby, remote: remote.name)) }
        }
        try transfer.report(r, verb: "pushed")
    }
}

/// `bissl pull REF`.
struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download an entry (and the ancestors this zoo lacks) with its remote labels from a remote.",
        discussion: """
            Every object's size, SHA-256 and content id are checked before it enters the zoo; a corrupt one \
            is refused and named. Pulling into a zoo that does not exist yet creates it.
            """)

    @Argument(help: "Entry on the remote: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String
    @OptionGroup var transfer: TransferOptions
    @OptionGroup var zooOptions: ZooOptions

    func run() throws {
        let remote = try Remotes.select(transfer.remote, zooOptions.layout)
        let r = try zooOptions.adding { zoo in
            try zoo.pull(ref, from: remote, ancestors: !transfer.noAncestors, maxRate: try transfer.rate(), progress: transfer.bar)
        }
        try transfer.report(r, verb: "pulled")
    }
}

/// One stderr line redrawn in place: `<id>  45.1 MB / 102 MB  44%  38 MB/s`, at most 10 times a second,
/// ended with a newline when the object is complete.
final class ProgressLine: @unchecked Sendable {
    private var id = ""
    private var started = Date()
    /// Bytes already there when the object's line started (a resumed transfer): not counted in the rate.
    private var resumedFrom: Int64 = 0
    private var shown = Date.distantPast
    private var completed: Set<String> = []

    func update(_ id: String, _ done: Int64, _ total: Int64) {
        guard !completed.contains(id) else { return }
        let now = Date()
        if id != self.id { self.id = id; started = now; resumedFrom = done; shown = .distantPast }
        let finished = done >= total
        guard finished || now.timeIntervalSince(shown) >= 0.1 else { return }
        shown = now
        let seconds = max(now.timeIntervalSince(started), 1e-3)
        let percent = total > 0 ? Int(Double(done) * 100 / Double(total)) : 100
        let line = "\r\(id.prefix(12))  \(ZooOutput.bytes(done)) / \(ZooOutput.bytes(total))  \(percent)%  \(ZooOutput.bytes(Int64(Double(done - resumedFrom) / seconds)))/s\u{1B}[K"
        FileHandle.standardError.write(Data((line + (finished ? "\n" : "")).utf8))
        if finished { completed.insert(id) }
    }
}
