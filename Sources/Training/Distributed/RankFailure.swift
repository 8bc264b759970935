import Checkpoint
import Foundation

/// How a data-parallel job ends when `mpirun` is interrupted or one of its ranks dies
/// (docs/distributed.md, "Ctrl-C, and when a rank dies").
///
/// Open MPI's `mpirun` ends the whole job when it gets SIGINT or SIGTERM (Ctrl-C reaches only
/// `mpirun`: the ranks run in process groups of their own) and when a rank exits abnormally, the same
/// way both times: SIGCONT to the ranks, SIGTERM one second later, SIGKILL one second after that
/// (`odls_base_sigkill_timeout`, Open MPI 4.1; T seconds each with `--mca odls_base_sigkill_timeout T`).
/// A rank cannot tell the two cases apart. With T of 2 s or more, the ranks stop at the next step
/// boundary they agree on (`Run.boundary`), rank 0 saves there and every rank exits
/// 143 (`RunInterrupted`); with the default second, or when no boundary is agreed within T/2 (a dead
/// rank), rank 0 prints one line naming its run, the step of its last saved state and the command that
/// resumes it, and exits. Nothing is half-written: run.json and state.h5 are replaced
/// atomically, the zoo adds an entry atomically (and only at the very end), a resumed run removes a
/// dead writer's temporaries; the run directory stays resumable from its last saved state, with the
/// same or another number of ranks. A collective that returns an error (`MPI_ERRORS_RETURN`) takes the
/// same way out, marking the run failed first. SIGUSR1 to `mpirun` (`kill -USR1 <mpirun pid>`) is
/// forwarded to every rank at once and ends nothing: the ranks stop at the next step boundary they agree
/// on, with the state saved, whatever the kill timeout (exit 138).
public enum RankFailure {
    /// The run rank 0 is training and how to resume it; nil outside a data-parallel run.
    nonisolated(unsafe) private static var watched: (run: Run, resume: String)?

    /// Every rank of a job of several ranks, as soon as the run is created or opened (before the job
    /// is built and trains): from now on a SIGTERM (mpirun ending the job), SIGINT or SIGUSR1 asks
    /// every rank to stop at the next step boundary they agree on, with the state saved, when
    /// `mpirun`'s kill timeout leaves the time (`StopRequest.endJobOnTerminate`, `jobStopWait`);
    /// otherwise, or when no boundary comes in time (a dead rank, or a job still loading its data),
    /// it exits at once, rank 0 after one line about `run` (`endLine`). A failed collective marks `run`
    /// failed (rank 0).
    public static func watch(_ run: Run, resume: String) {
        let world = DataParallel.world
        guard world.size > 1 else { return }
        if world.rank == 0 { watched = (run, resume) }
        let ranks = world.size, id = run.id
        StopRequest.endJobOnTerminate(
            line: world.rank == 0 ? { sig, step in endLine(signal: sig, ranks: ranks, runID: id, savedStep: step, resume: resume) + "\n" } : { _, _ in "" },
            announce: world.rank == 0 ? "every rank of this \(ranks)-rank MPI job stops at the next step boundary with the state saved" : nil)
    }

    /// Every rank, once the training loop ended with the final state saved and rank 0 is about to add
    /// the entry: from now on the first SIGTERM or SIGINT lets that go on, rank 0 saying so in one line
    /// (`StopRequest.JobPhase.finishing`); a second one, or one under the default 1-second kill timeout,
    /// ends the job as during training.
    public static func trainingEnded() {
        let world = DataParallel.world
        guard world.size > 1 else { return }
        StopRequest.setJobPhase(.finishing(world.rank == 0 ? watched.map { finishingLine(runID: $0.run.id, steps: $0.run.totalSteps, resume: $0.resume) } : nil))
    }

    /// Rank 0's line when the job ends without a save at a step boundary (`signal`: SIGTERM is mpirun
    /// ending it; SIGINT or SIGUSR1 sent to the ranks found no boundary in time, or came twice): what
    /// becomes of run `runID`, which stays in the zoo's runs, resumable from `savedStep` (0: no
    /// state saved yet, the resume starts it over).
    static func endLine(signal: Int32, ranks: Int, runID: String, savedStep: Int, resume: String) -> String {
        let what = signal == SIGTERM ? "mpirun is ending this \(ranks)-rank MPI job (it was interrupted, or one of its ranks stopped)"
            : "this \(ranks)-rank MPI job stops without saving (\(StopRequest.name(of: signal)): no step boundary in time, or a second signal)"
        let resumes = savedStep > 0 ? "resumes from step \(savedStep), its last saved state"
            : "has no saved state yet (a resume starts it from step 0)"
        return "error: \(what); run \(runID) \(resumes): \(resume)"
    }

    /// Rank 0's line (after `SIGTERM: `) when `mpirun` ends the job while the entry is being added.
    static func finishingLine(runID: String, steps: Int, resume: String) -> String {
        "run \(runID) has done its \(steps) steps (state saved); rank 0 is adding its entry to the zoo, then the job ends "
            + "(if mpirun kills it first, no entry is added; resume with: \(resume))"
    }

    /// Stops watching (the run finished or failed on its own). A signal then leaves the process to end
    /// as it was about to, quietly (a second one exits at once): no rank speaks of a run that is done.
    public static func unwatch() {
        guard DataParallel.world.size > 1 else { return }
        watched = nil
        StopRequest.setJobPhase(.ended)
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
}
