import Checkpoint
import Foundation
import GRDB

/// The findings of `Zoo.verify`.
public struct VerifyReport: Codable, Equatable, Sendable {
    public enum Level: String, Codable, Sendable {
        /// Damage: an entry cannot be trusted or read (missing/corrupt object, invalid provenance,
        /// catalog row disagreeing with its object). `bissl verify` exits non-zero.
        case problem
        /// A health finding about a sound entry (degenerate BatchNorm, non-finite weights).
        case warning
        /// Files an interrupted writer left that the catalog does not list (`bissl gc` removes them,
        /// or lists an object again), and files no writer of bissl makes in the zoo's folders or that
        /// gc cannot show to be abandoned (gc keeps them; the message says why).
        case leftover
        /// What an interrupted push or pull left in `tmp/` to resume from (schemas/remote.md,
        /// "Resuming"): the next push or pull of that object continues it; `bissl gc` discards it.
        case transfer
    }

    public struct Finding: Codable, Equatable, Sendable {
        public var level: Level
        /// The entry concerned, if any.
        public var id: String?
        /// The file concerned, if any.
        public var path: String?
        public var message: String
        /// The command that repairs it, for problems (`bissl gc`, `bissl verify --reindex`, ...).
        public var fix: String?

        public init(level: Level, id: String?, path: String?, message: String, fix: String? = nil) {
            self.level = level; self.id = id; self.path = path; self.message = message; self.fix = fix
        }
    }

    /// Entries checked.
    public var checked: Int
    public var findings: [Finding]

    public var problems: [Finding] { findings.filter { $0.level == .problem } }
}

extension Zoo {
    /// Checks entries (all listed ones when `refs` is nil), and with no `refs` also the zoo's files.
    ///
    /// Per entry: the object exists, is readable HDF5 in format v1, its recomputed content id equals
    /// its name, its provenance satisfies the schema, the catalog row equals what the object implies,
    /// its labels have ref files; plus health warnings (`HealthCheck`). Zoo-wide: objects, ref files
    /// and writer files the catalog does not list are reported as leftovers, except what an
    /// interrupted push or pull keeps to resume from (`transfer`).
    /// - Throws: only for an unknown REF or an unreadable catalog; damage is reported, not thrown.
    public func verify(_ refs: [String]? = nil) throws -> VerifyReport {
        let ids: [String] = try refs.map { try $0.map(resolve) } ?? catalog.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM entries ORDER BY id")
        }
        var findings: [VerifyReport.Finding] = []
        let scan = ZooScan(layout)
        let listed = try catalog.read { db in try Catalog.allIDs(db) }
        for id in ids {
            findings += try verifyEntry(id, scan: scan, listedIDs: listed)
        }
        if refs == nil {
            findings += try lineageCycles()
            findings += try zooLeftovers(scan)
        }
        return VerifyReport(checked: ids.count, findings: findings)
    }

    /// - Parameter listedIDs: the catalog's entries (a ref file naming one is a record of its label).
    private func verifyEntry(_ id: String, scan: ZooScan, listedIDs: Set<String>) throws -> [VerifyReport.Finding] {
        let url = layout.objectURL(id)
        let short = String(id.prefix(12))
        // gc moves a damaged object aside and keeps the entry's record; the source file brings it back.
        var damagedFix: String {
            let source = (try? self.record(id))?.summary.sourceFile
            return "bissl gc (moves the object to damaged/, keeps the entry's record as a tombstone)"
                + (source.map { "; then bissl import \($0) to bring it back" } ?? "")
        }
        func problem(_ message: String, fix: String) -> VerifyReport.Finding {
            .init(level: .problem, id: id, path: url.path, message: message, fix: fix)
        }
        guard FileManager.default.fileExists(atPath: url.path) else {
            if scan.trash[id] != nil {
                return [problem("object file is missing (it is in trash/ after an interrupted rm)", fix: "bissl gc (puts it back)")]
            }
            let source = (try? self.record(id))?.summary.sourceFile
            return [problem("object file is missing", fix: "bissl gc (takes the entry out of the catalog, keeps its record as a tombstone)"
                + (source.map { "; then bissl import \($0) to bring it back" } ?? ""))]
        }
        let checkpoint: Checkpoint
        do {
            let (loaded, hashed) = try load(id, rehash: true)
            checkpoint = loaded
            // Later reads trust the object while these facts hold (schemas/catalog.md, "Trusted reads");
            // when they cannot be recorded (catalog busy), reads keep hashing it, nothing else changes.
            if let hashed, catalog.canWrite { try? catalog.write { db in try Catalog.recordVerified(id, hashed, db) } }
        } catch {
            return [problem(Self.withoutVerifyHint(String(describing: error)), fix: damagedFix)]
        }
        var out: [VerifyReport.Finding] = []
        for violation in ProvenanceCheck.violations(checkpoint.provenance) {
            out.append(problem("provenance: \(violation)", fix: "bissl rm --force \(short) (keeps its record as a tombstone), then import a corrected file"))
        }
        let attributes = try objectAttributes(id)
        let expected = EntrySummary(id: id, checkpoint: checkpoint, size: attributes.size, modified: attributes.modified)
        let record = try self.record(id)
        var listed = record.summary
        listed.metrics = expected.metrics  // the catalog keeps metrics in their own table; compared below
        listed.parents = expected.parents
        if listed.details == nil {
            // A row from before schema version 2: filled in now when the catalog can be written.
            listed.details = expected.details
            if catalog.canWrite { try? catalog.write { db in try Catalog.fillDetails(id, expected.details, db) } }
        }
        if listed != expected {
            out.append(problem("catalog row differs from the object", fix: "bissl verify --reindex (rebuilds the catalog from the objects)"))
        }
        let catalogMetrics = record.summary.metrics.filter { !$0.value.isNaN }
        let objectMetrics = expected.metrics.filter { !$0.value.isNaN }
        if Set(catalogMetrics.keys) != Set(objectMetrics.keys) || record.summary.parents.map(\.id) != expected.parents.map(\.id) {
            out.append(problem("catalog metrics or lineage edges differ from the object", fix: "bissl verify --reindex (rebuilds the catalog from the objects)"))
        }
        for (label, kind) in try labels(of: id) {
            let ref = layout.refURL(label, kind: kind)
            var info = stat()
            let what: String
            if lstat(ref.path, &info) != 0 {
                what = "has no ref file (interrupted untag or rm)"
            } else {
                let (held, problem) = RefFiles.read(ref, label: label)
                if held == id && problem == nil { continue }
                if let problem, problem != "it is a folder" {   // gc keeps it (`Zoo.gc`)
                    out.append(.init(level: .leftover, id: id, path: ref.path,
                                     message: "\(kind.rawValue) '\(label)': " + Self.invalidRefReason(problem, label: label, kind: kind, held: true)))
                    continue
                }
                if problem == nil, let held, listedIDs.contains(held), scan.objects[held] != nil {   // gc keeps it (`Zoo.gc`)
                    out.append(.init(level: .leftover, id: held, path: ref.path,
                                     message: Self.conflictingRefReason(label: label, kind: kind, id: held, holder: (kind, id),
                                                                        name: try labels(of: held).first { $0.kind == .name }?.label)))
                    continue
                }
                what = problem.map { "has an invalid ref file: \($0)" } ?? "has a ref file naming entry \(held!.prefix(12)), which the zoo does not hold"
            }
            out.append(.init(level: .leftover, id: id, path: ref.path,
                             message: "\(kind.rawValue) '\(label)' \(what); bissl gc rewrites it"))
        }
        for warning in HealthCheck.warnings(checkpoint) {
            out.append(.init(level: .warning, id: id, path: nil, message: warning))
        }
        return out
    }

    /// One problem per lineage cycle found among the catalog's edges (an entry that is its own
    /// ancestor, e.g. A -> B -> A or a self-parent from hand-made provenance). Iterative depth-first
    /// search: a cycle is an edge back to an entry on the current path.
    func lineageCycles() throws -> [VerifyReport.Finding] {
        let edges = try catalog.read { db in try Row.fetchAll(db, sql: "SELECT child, parent FROM edges ORDER BY child, position") }
        var parents: [String: [String]] = [:]
        for row in edges { parents[row[0] as String, default: []].append(row[1]) }
        var done = Set<String>()
        var out: [VerifyReport.Finding] = []
        for start in parents.keys.sorted() where !done.contains(start) {
            var path: [String] = [start]
            var onPath: Set<String> = [start]
            var next: [Int] = [0]  // index of the next parent to visit, per path element
            while let id = path.last {
                let list = parents[id] ?? []
                let i = next[next.count - 1]
                if i == list.count {
                    done.insert(id); onPath.remove(id); path.removeLast(); next.removeLast()
                    continue
                }
                next[next.count - 1] += 1
                let parent = list[i]
                if onPath.contains(parent) {
                    let cycle = path[path.lastIndex(of: parent)!...] + [parent]
                    out.append(.init(level: .problem, id: parent, path: nil,
                                     message: "lineage cycle: " + cycle.map { String($0.prefix(12)) }.joined(separator: " -> ")
                                        + " (provenance names an entry as its own ancestor)",
                                     fix: "bissl rm --force \(parent.prefix(12)) (keeps its record as a tombstone)"))
                } else if !done.contains(parent) {
                    path.append(parent); onPath.insert(parent); next.append(0)
                }
            }
        }
        return out
    }

    private func zooLeftovers(_ scan: ZooScan) throws -> [VerifyReport.Finding] {
        var out: [VerifyReport.Finding] = []
        let (listed, labels) = try catalog.read { db in (try Catalog.allIDs(db), try Catalog.allLabels(db)) }
        for (id, url) in scan.objects.sorted(by: { $0.key < $1.key }) where !listed.contains(id) {
            // Read as gc reads it, so the message says what gc will do with it.
            do {
                _ = try load(id, rehash: true)
                out.append(.init(level: .leftover, id: id, path: url.path,
                                 message: "object not listed in the catalog (interrupted import or lost catalog); bissl gc or bissl verify --reindex lists it again"))
            } catch {
                out.append(.init(level: .leftover, id: id, path: url.path,
                                 message: "object not listed in the catalog that cannot be listed: \(Self.withoutVerifyHint(String(describing: error))); bissl gc moves it to damaged/ (never deleted), bissl verify --reindex skips it"))
            }
        }
        // gc's default grace period (`Zoo.gc`): what gc without --grace would do.
        let cutoff = Date().addingTimeInterval(-24 * 3600)
        let inZoo = { (id: String) in listed.contains(id) && FileManager.default.fileExists(atPath: self.layout.objectURL(id).path) }
        for leftover in scan.leftovers where leftover.kind == .temporary || !ZooScan.isAlive(leftover.pid) {
            let url = leftover.url
            if let entry = TransferRecords.pulledEntry(url), inZoo(entry) {
                out.append(.init(level: .leftover, id: nil, path: url.path,
                                 message: "what an interrupted pull of entry \(entry.prefix(12)) kept, which the zoo holds now (another pull or an import brought it): nothing to resume; bissl gc removes it"))
                continue
            }
            if let resumable = TransferRecords.describeResumable(url) {
                out.append(.init(level: .transfer, id: nil, path: url.path, message: resumable))
                continue
            }
            switch ZooScan.verdict(leftover, cutoff: cutoff, inZoo: inZoo) {
            case .running, .resumable: continue
            case .kept(let reason):
                out.append(.init(level: .leftover, id: nil, path: url.path, message: "kept: \(reason)"))
            case .abandoned:
                let what = leftover.kind == .temporary
                    ? "temporary of a writer that did not finish: no process holds its lock"
                    : "what an interrupted transfer kept, unchanged for over 24h and not resumable"
                out.append(.init(level: .leftover, id: nil, path: url.path, message: "\(what); bissl gc removes it"))
            }
        }
        for url in scan.foreign {
            out.append(.init(level: .leftover, id: nil, path: url.path, message: Self.foreignReason(url)))
        }
        for (id, url) in scan.trash where !listed.contains(id) {
            out.append(.init(level: .leftover, id: id, path: url.path, message: "removed object not yet deleted; bissl gc deletes it"))
        }
        if let link = layout.linkedRefFolder() {
            // gc, tag, untag, rm, import and pull refuse to work through it; what it leads to is not judged.
            out.append(.init(level: .leftover, id: nil, path: link.url.path,
                             message: "a symbolic link (to \(link.target)) where the zoo's own folder belongs: bissl gc, tag, untag, rm, import and pull refuse to change files through it; put the folder itself there"))
            return out
        }
        let byLabel = Dictionary(labels.map { ($0.label, (kind: $0.kind, id: $0.id)) }, uniquingKeysWith: { a, _ in a })
        let nameOf = Dictionary(labels.filter { $0.kind == .name }.map { ($0.id, $0.label) }, uniquingKeysWith: { a, _ in a })
        var named = Set<String>(), adopted: [String: (kind: LabelKind, id: String)] = [:]  // what gc adopts, in its order (names first)
        for ref in RefFiles.all(layout: layout) {
            let owner = byLabel[ref.label]
            // A held label's own ref file, sound or not, is reported with its entry (`verifyEntry`).
            if let owner, owner.kind == ref.kind { continue }
            let message: String
            if let problem = ref.problem {
                message = Self.invalidRefReason(problem, label: ref.label, kind: ref.kind, held: false)
            } else if let id = ref.id, !inZoo(id) {
                message = listed.contains(id)
                    ? "ref file of \(ref.kind.rawValue) '\(ref.label)' naming entry \(id.prefix(12)), whose object is missing (bissl gc takes the entry out of the catalog); bissl gc removes it"
                    : "ref file of \(ref.kind.rawValue) '\(ref.label)' naming entry \(id.prefix(12)), which the catalog does not list (interrupted import or rm); bissl gc removes it"
            } else if let id = ref.id, let owner {
                message = Self.conflictingRefReason(label: ref.label, kind: ref.kind, id: id, holder: owner, name: nameOf[id])
            } else if let id = ref.id, let other = adopted[ref.label] {
                message = "ref file of \(ref.kind.rawValue) '\(ref.label)' naming entry \(id.prefix(12)), a label the catalog does not hold whose other ref file bissl gc adds to the catalog (as the \(other.kind.rawValue) of entry \(other.id.prefix(12))): gc never removes this one (ref files are the record of labels); once gc ran, bissl verify says how to settle which is right"
            } else if ref.kind == .name, let id = ref.id, let name = nameOf[id] {
                message = Self.secondNameReason(label: ref.label, id: id, name: name)
            } else if ref.kind == .name, let id = ref.id, named.contains(id) {
                message = "ref file of name '\(ref.label)' for entry \(id.prefix(12)), whose other name ref bissl gc adds to the catalog (an entry has one name): gc never removes this one; once gc ran, bissl verify says how to settle which is right"
            } else {
                if ref.kind == .name, let id = ref.id { named.insert(id) }
                adopted[ref.label] = (ref.kind, ref.id ?? "")
                message = "ref file of \(ref.kind.rawValue) '\(ref.label)', a label the catalog does not hold (interrupted import or tag); bissl gc adds it to the catalog, as bissl verify --reindex does (remove the file by hand to drop the label)"
            }
            // An invalid ref file is reported under its path (the id it may hold does not find it).
            out.append(.init(level: .leftover, id: ref.problem == nil ? ref.id : nil, path: ref.url.path, message: message))
        }
        return out
    }
}
