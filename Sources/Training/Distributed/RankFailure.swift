import Checkpoint
import Foundation

/// How a data-parallel job ends when one of its ranks dies (docs/distributed.md, "When a rank dies").
///
/// Open MPI's `mpirun` ends the whole job when a rank exits abnormally: it sends SIGTERM to the
/// ranks still running (SIGKILL shortly after). Rank 0 then prints one line naming its run and the
/// command that resumes it, and exits. Nothing is half-written: run.json and state.h5 are replaced
/// atomically, the zoo adds an entry atomically (and only at the very end), a resumed run removes a
/// dead writer's temporaries; the run directory stays resumable from its last saved state, with the
/// same or another number of ranks. A collective that returns an error (`MPI_ERRORS_RETURN`) takes the
/// same way out, marking the run failed first.
public enum RankFailure {
    /// The run rank 0 is training and how to resume it; nil outside a data-parallel run.
    nonisolated(unsafe) private static var watched: (run: Run, resume: String)?
    /// The SIGTERM line, prepared before the handler is installed (the handler only `write`s it).
    nonisolated(unsafe) private static var termLine: UnsafeMutableBufferPointer<CChar>?

    /// Rank 0 of a job of several ranks: from now on a SIGTERM (mpirun ending the job) prints one line
    /// about `run` and exits 143; a failed collective marks `run` failed. Other ranks stay quiet.
    public static func watch(_ run: Run, resume: String) {
        let world = DataParallel.world
        guard world.size > 1, world.rank == 0 else { return }
        watched = (run, resume)
        let line = "error: a rank of this \(world.size)-rank MPI job stopped, so mpirun is ending the job; run \(run.id) stays resumable from its last saved state: \(resume)\n"
        let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: line.utf8.count)
        _ = buffer.initialize(from: line.utf8.map { CChar(bitPattern: $0) })
        termLine?.deallocate()
        termLine = buffer
        // The zoo's temporary-file cleanup installs its own SIGTERM handler on first use: have it
        // installed now, then chain to it from ours.
        TemporaryFiles.unregister(TemporaryFiles.register("/"))
        previousHandler = signal(SIGTERM, onTerminate)
    }

    /// Stops watching (the run finished or failed on its own).
    public static func unwatch() {
        guard watched != nil else { return }
        watched = nil
        signal(SIGTERM, previousHandler ?? SIG_DFL)
    }

    /// After a failed collective: marks the watched run failed (rank 0) and prints one `error:` line
    /// (rank 0; other ranks only when they are the ones that saw the failure first).
    static func report(_ reason: String) {
        let world = DataParallel.world
        var line = "error: rank \(world.rank) of \(world.size): \(reason)"
        if let (run, resume) = watched {
            run.fail(DistributedError.collective(reason))
            line += "; run \(run.id) stays resumable from its last saved state: \(resume)"
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    nonisolated(unsafe) private static var previousHandler: (@convention(c) (Int32) -> Void)?
}

/// SIGTERM on rank 0: only async-signal-safe calls (`write`, `signal`, `raise`): the line, then the
/// previous handler (the zoo's temporary cleanup, which re-raises) or the default action.
private func onTerminate(_ sig: Int32) {
    if let line = RankFailure.termLineForHandler { _ = write(2, line.baseAddress, line.count) }
    signal(sig, RankFailure.previousForHandler ?? SIG_DFL)
    raise(sig)
}

extension RankFailure {
    fileprivate static var termLineForHandler: UnsafeMutableBufferPointer<CChar>? { termLine }
    fileprivate static var previousForHandler: (@convention(c) (Int32) -> Void)? { previousHandler }
}
