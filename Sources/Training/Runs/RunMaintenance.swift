import Checkpoint
import Datasets
import Foundation
import Zoo

/// Disk use of run directories and freeing it: a completed run needs its `run.json` (record),
/// `log.jsonl` (curves, history) and `curves.png`, not the resumable `state.h5` (its entry holds the
/// final weights); `Run.finish` drops that state, and `compact` does it for runs finished before.
public enum RunMaintenance {
    /// Bytes of the regular files under `directory` (not following symbolic links).
    public static func size(of directory: URL) -> Int64 {
        guard let e = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey]) else { return 0 }
        var total: Int64 = 0
        for case let url as URL in e {
            guard let v = try? url.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey]), v.isRegularFile == true else { continue }
            total += Int64(v.fileSize ?? 0)
        }
        return total
    }

    /// Files a completed run no longer needs: its state, and the temporaries of writers that no longer
    /// run (regular files named `.<name>.tmp-<pid>-<n>`, `TemporaryFiles.writerPID(inTemporaryName:)`,
    /// that no process holds the lock of, whatever their pid: pids are reused); a folder is never one
    /// of them.
    static func unneeded(in directory: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.sorted().filter { name in
            var info = stat()
            guard lstat(directory.appendingPathComponent(name).path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
            if name == Run.stateFileName { return true }
            guard TemporaryFiles.writerPID(inTemporaryName: name) != nil else { return false }
            return !TemporaryFileLock.isLocked(directory.appendingPathComponent(name))
        }.map { directory.appendingPathComponent($0) }
    }

    /// The temporaries of writers that no longer run in the directory of `run`, whatever its status
    /// (a SIGKILL while `run.json` or `state.h5` was being replaced leaves `.run.json.tmp-<pid>-<n>`):
    /// nothing reads them, a resume removes them (`Run.open`), `verify` reports and `gc` removes
    /// them (`compact`). A running writer's temporary is locked, so never one of them.
    public static func leftovers(of run: RunSummary) -> [URL] {
        unneeded(in: URL(fileURLWithPath: run.directory)).filter { $0.lastPathComponent != Run.stateFileName }
    }

    /// Deletes what a run no longer needs: for a completed run, `unneeded` (its state and dead
    /// writers' temporaries); for any other run, only the temporaries (`leftovers`: an interrupted or
    /// failed run resumes from its state). A temporary is removed only while this process holds its
    /// lock (`TemporaryFiles.removeFile`: a writer in another pid namespace holds it).
    /// - Returns: bytes freed (the disk space the files occupied), or that would be, with `dryRun`.
    /// - Throws: `TrainingError.io` when a file cannot be deleted, `.invalid` when the run is reached
    ///   through a symbolic link (`requireOwnFolder`).
    @discardableResult
    public static func compact(_ run: RunSummary, dryRun: Bool = false) throws -> Int64 {
        let completed = run.record?.status == .completed
        let files = completed ? unneeded(in: URL(fileURLWithPath: run.directory)) : leftovers(of: run)
        guard completed || !files.isEmpty else { return 0 }
        try requireOwnFolder(run, completed ? "dropping the state of run \(run.id)" : "removing the leftovers of run \(run.id)")
        var freed: Int64 = 0
        for url in files {
            var info = stat()
            guard lstat(url.path, &info) == 0 else { continue }
            if dryRun { freed += TemporaryFiles.allocatedBytes(info); continue }
            if url.lastPathComponent != Run.stateFileName {
                if case .removed(let bytes) = TemporaryFiles.removeFile(url) { freed += bytes }
                continue
            }
            guard unlink(url.path) == 0 else {
                throw TrainingError.io("cannot remove \(url.path): \(String(cString: strerror(errno)))")
            }
            freed += TemporaryFiles.allocatedBytes(info)
        }
        return freed
    }

    /// Files of a run directory that zoo entries name as their data, with the entries naming them.
    public struct Citation: Equatable, Sendable {
        /// The file's name in the run directory (`holdout-train.txt`).
        public var file: String
        /// Ids of the entries (listed or removed) whose provenance datasets name it, sorted.
        public var entries: [String]
    }

    /// The files of `run` that the provenance of zoo entries names as data: `finetune` without `--val`
    /// records its hold-out split files (`holdout-train.txt`, `holdout-val.txt`, in the run directory)
    /// in the entry's dataset URIs, which `show`, `card` and `eval` of that entry and its descendants
    /// cite, so deleting them leaves the record naming files that are gone. A dataset URI cites a
    /// file when its path or split file (`DatasetURI`, absolute) is that file (`runFile`). Entries
    /// removed with a tombstone count too (their descendants' lineage still shows them).
    /// - Returns: one citation per cited file, by file name; empty when `zoo` is nil.
    /// - Throws: `ZooError` when the catalog cannot be read.
    public static func citations(of run: RunSummary, in zoo: Zoo?) throws -> [Citation] {
        try citations(of: [run], in: zoo)[0]
    }

    /// `citations(of:in:)` of each run, in order, from one pass over the catalog
    /// (`Zoo.provenanceMentioning(anyOf:)`) rather than one per run.
    public static func citations(of runs: [RunSummary], in zoo: Zoo?) throws -> [[Citation]] {
        guard let zoo, !runs.isEmpty else { return runs.map { _ in [] } }
        let directories = runs.map { URL(fileURLWithPath: $0.directory, isDirectory: true) }
        // The run's id (its folder's name) is in every path under its directory, whatever else the URI escapes.
        let mentions = try zoo.provenanceMentioning(anyOf: directories.map(\.lastPathComponent))
        return directories.map { directory in
            var cited: [String: Set<String>] = [:]
            for (id, provenance) in mentions[directory.lastPathComponent] ?? [] {
                for dataset in provenance.datasets {
                    guard let uri = try? DatasetURI(parsing: dataset.uri, relativeTo: "/") else { continue }
                    for path in [uri.path] + (uri.splitFile.map { [$0] } ?? []) {
                        if let name = runFile(path, directory: directory) { cited[name, default: []].insert(id) }
                    }
                }
            }
            return cited.keys.sorted().map { Citation(file: $0, entries: cited[$0]!.sorted()) }
        }
    }

    /// The path of the file `path` (absolute, as a provenance recorded it) names inside the run
    /// directory `directory` (`<zoo root>/runs/<run id>`), or nil when it names no file of that run.
    /// It does when it is under `directory`, symbolic links resolved on both sides, or when its tail
    /// is `runs/<run id>/<file>` of this run: recorded under the zoo's root of that time, which
    /// no longer holds when the zoo folder has been moved or renamed since (run ids are unique,
    /// `Run.create`). A path whose component `runs` is not directly followed by the run's id
    /// (`<root>/<run id>/…`, `runs/<run id>-x/…`), or that ends at the run directory, names none.
    static func runFile(_ path: String, directory: URL) -> String? {
        let prefix = directory.resolvingSymlinksInPath().path + "/"
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        if resolved.hasPrefix(prefix) {
            let name = String(resolved.dropFirst(prefix.count))
            return name.isEmpty ? nil : name
        }
        let parts = URL(fileURLWithPath: path).standardizedFileURL.pathComponents
        let runID = directory.lastPathComponent
        guard let i = parts.indices.dropFirst().first(where: { parts[$0] == runID && parts[$0 - 1] == "runs" }),
              case let tail = parts[(i + 1)...].filter({ $0 != "/" }), !tail.isEmpty else { return nil }
        return tail.joined(separator: "/")
    }

    /// `holdout-train.txt, holdout-val.txt (cited by entry 145ca7bf5b22 as its data)`, for messages.
    public static func describe(_ citations: [Citation]) -> String {
        let entries = Set(citations.flatMap(\.entries)).sorted().map { String($0.prefix(12)) }
        // At most 10 ids: a run cited by thousands of entries still makes one readable line.
        let shown = entries.prefix(10).joined(separator: ", ") + (entries.count > 10 ? " and \(entries.count - 10) more" : "")
        return citations.map(\.file).joined(separator: ", ")
            + " (cited as data by the provenance of entr\(entries.count == 1 ? "y" : "ies") \(shown))"
    }

    /// Throws when the run's folder or the `runs/` folder holding it is a symbolic link: deleting
    /// through it would delete another folder's files (as `gc` refuses a linked zoo folder).
    /// - Throws: `TrainingError.invalid` naming the link and where it leads.
    static func requireOwnFolder(_ run: RunSummary, _ action: String) throws {
        let directory = URL(fileURLWithPath: run.directory)
        for folder in [directory.deletingLastPathComponent(), directory] {
            var info = stat()
            guard lstat(folder.path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { continue }
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: folder.path)) ?? "?"
            throw TrainingError.invalid("\(action) refused: \(folder.path) is a symbolic link (to \(target)); runs are deleted only in the zoo's own folders: put the folder itself there")
        }
    }

    /// Removes a run directory. A running run (a process holds it) is refused; an interrupted or
    /// failed run, whose work a resume would continue, only with `force`. Whether entries cite its
    /// files (`citations`) is the caller's question.
    /// - Returns: bytes freed (or that would be, with `dryRun`).
    /// - Throws: `TrainingError.invalid` for a refused run or one reached through a symbolic link
    ///   (`requireOwnFolder`), `.io` when it cannot be deleted.
    @discardableResult
    public static func remove(_ run: RunSummary, force: Bool, dryRun: Bool = false) throws -> Int64 {
        let directory = URL(fileURLWithPath: run.directory)
        switch run.state {
        case "running":
            throw TrainingError.invalid("run \(run.id) is running (a process has it open); stop it first")
        case "interrupted" where !force, "failed" where !force:
            throw TrainingError.invalid("run \(run.id) is \(run.state) at step \(run.savedStep ?? 0)/\(run.record?.totalSteps ?? 0) and can be resumed (bissl \(run.record?.kind ?? "<kind>") --resume \(run.id)); bissl runs rm --force \(run.id) deletes it and its work")
        default:
            break
        }
        try requireOwnFolder(run, "removing run \(run.id)")
        let bytes = size(of: directory)
        if !dryRun {
            do { try FileManager.default.removeItem(at: directory) } catch {
                throw TrainingError.io("cannot remove \(directory.path): \(error.localizedDescription)")
            }
        }
        return bytes
    }
}
