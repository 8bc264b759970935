import Checkpoint
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

    /// Files a completed run no longer needs: its state and the temporaries of dead writers.
    static func unneeded(in directory: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0 == Run.stateFileName || ($0.hasPrefix(".") && $0.contains(".tmp-")) }
            .map { directory.appendingPathComponent($0) }
    }

    /// Deletes what a completed run no longer needs (`unneeded`); other runs are left alone (an
    /// interrupted or failed run resumes from its state).
    /// - Returns: bytes freed (or that would be, with `dryRun`).
    /// - Throws: `TrainingError.io` when a file cannot be deleted.
    @discardableResult
    public static func compact(_ run: RunSummary, dryRun: Bool = false) throws -> Int64 {
        guard run.record?.status == .completed else { return 0 }
        var freed: Int64 = 0
        for url in unneeded(in: URL(fileURLWithPath: run.directory)) {
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
            if !dryRun {
                do { try FileManager.default.removeItem(at: url) } catch {
                    throw TrainingError.io("cannot remove \(url.path): \(error.localizedDescription)")
                }
            }
            freed += bytes
        }
        return freed
    }

    /// Removes a run directory. A running run (a process holds it) is refused; an interrupted or
    /// failed run, whose work a resume would continue, only with `force`.
    /// - Returns: bytes freed (or that would be, with `dryRun`).
    /// - Throws: `TrainingError.invalid` for a refused run, `.io` when it cannot be deleted.
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
        let bytes = size(of: directory)
        if !dryRun {
            do { try FileManager.default.removeItem(at: directory) } catch {
                throw TrainingError.io("cannot remove \(directory.path): \(error.localizedDescription)")
            }
        }
        return bytes
    }
}
