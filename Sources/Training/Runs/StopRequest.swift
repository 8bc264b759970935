import Checkpoint
import Dispatch
import Foundation
import Synchronization

/// Ctrl-C (SIGINT), SIGTERM and SIGUSR1 during a run: stop at the next step boundary with the state saved.
///
/// `watch(run:)` (called when a run is created or opened) takes the three signals over (SIGUSR1 is
/// the stop request `mpirun` forwards to every rank at once, without ending the job: `kill -USR1
/// <mpirun pid>`, docs/distributed.md). The first one asks the training loop to stop: the next
/// `Run.boundary` saves the state and throws `RunInterrupted`, so the loop ends at the step it was in and the
/// command prints where it stopped and the exact resume command. The wait is bounded: when no state
/// is saved within `maxWait` seconds (a loop that saves only at epoch or alternation ends), the
/// process quits without saving and says which step a resume continues from. A second signal quits
/// at once the same way. Either way the exit status is 128 + the signal number (130 for SIGINT,
/// 143 for SIGTERM, 138 for SIGUSR1 on Linux), as a shell reports a process killed by it. Once the
/// training loop has ended (`trainingEnded`) the first signal lets the entry be written and the run
/// complete. In a data-parallel job every rank stops after the same step (`endJobOnTerminate`).
public enum StopRequest {
    /// The signal received (0: none).
    private static let received = Atomic<Int32>(0)
    /// The signals that ask to stop, in the order a job's ranks prefer them when they got different
    /// ones (`Run.agreeAtBoundary`): SIGTERM first (mpirun's kill follows it).
    static let stopSignals: [Int32] = [SIGTERM, SIGINT, SIGUSR1]

    /// `SIGINT`, `SIGTERM` or `SIGUSR1`.
    public static func name(of sig: Int32) -> String {
        switch sig {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGUSR1: "SIGUSR1"
        default: "signal \(sig)"
        }
    }
    /// Seconds from the first signal to quitting without a save (`BISSL_STOP_WAIT` overrides).
    public static var maxWait: Double { maxWait(ProcessInfo.processInfo.environment) }

    static func maxWait(_ environment: [String: String]) -> Double {
        environment["BISSL_STOP_WAIT"].flatMap(Double.init).map { max(0, $0) } ?? 60
    }

    /// The step of the watched run's last saved state.
    private static let savedStep = Atomic<Int>(0)
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    /// The watched run's resume command; read and written on `queue` only.
    nonisolated(unsafe) private static var current: String?
    private static let queue = DispatchQueue(label: "bissl.stop-request")
    /// Set on every rank of a data-parallel job while it trains (`RankFailure.watch`); read and written
    /// on `queue` only.
    nonisolated(unsafe) private static var job: (line: (Int32, Int) -> String, announce: String?, phase: JobPhase)?
    /// One process: the line (after `SIGINT: `) once the training loop ended and the entry is being
    /// added (`trainingEnded`); nil while training. Read and written on `queue` only.
    nonisolated(unsafe) private static var finishing: String?

    /// Where a data-parallel job is when a signal reaches one of its ranks.
    enum JobPhase: Equatable {
        /// Its ranks are training: the first signal asks every rank to stop at the next step boundary.
        case training
        /// The training loop ended with the state saved, and rank 0 is adding the entry (`finishing`:
        /// rank 0's line saying so; nil: nothing): the first signal lets it go on.
        case finishing(String?)
        /// The entry was added, or the command failed: a signal lets the process end as it was about to.
        case ended
    }

    /// What the first stop signal does to a rank of a data-parallel job in `phase`, given the
    /// seconds `wait` it may take (`jobStopWait` for SIGTERM, `maxWait` for SIGINT and SIGUSR1): the line it
    /// writes on stderr (nil: nothing), and whether it quits at once (`endJob`) rather than going on.
    static func firstJobSignal(_ name: String, phase: JobPhase, announce: String?, wait: Double) -> (line: String?, quits: Bool) {
        switch phase {
        case .training:
            guard wait > 0 else { return (nil, true) }
            return (announce.map { "\(name): \($0) (at most \(Int(wait)) s)" }, false)
        case .finishing(let text):
            guard wait > 0 else { return (nil, true) }
            return (text.map { "\(name): \($0)" }, false)
        case .ended:
            return (nil, false)
        }
    }
    /// Set once the ranks of a data-parallel job agreed to stop (`Run.saveState` is saving): the
    /// bounded wait then lets the save finish.
    private static let stopAgreed = Atomic<Bool>(false)

    /// In a data-parallel job (docs/distributed.md, "Ctrl-C, and when a rank dies") SIGTERM is `mpirun`
    /// ending the job, because it was interrupted or because a rank stopped, and SIGKILL follows
    /// `odls_base_sigkill_timeout` seconds later; SIGUSR1 is a stop request mpirun forwards at once. The
    /// first SIGTERM, SIGINT or SIGUSR1 asks every rank to stop at the next step boundary (the ranks agree
    /// on it there: `Run.boundary`), and `announce` (rank 0; nil: nothing) says so; when no boundary is
    /// agreed within `jobStopWait` (SIGTERM) or `maxWait` (SIGINT, SIGUSR1), or at a second signal, the
    /// process writes `line` (given the signal and the step of the last saved state; empty: nothing) and
    /// exits 128 + the signal number. A wait of 0 (mpirun's default
    /// 1-second timeout) quits at once: a step's collectives would wait for a dead rank, and SIGKILL
    /// comes too soon for a save. nil restores the one-process stop request.
    static func endJobOnTerminate(line: ((Int32, Int) -> String)?, announce: String? = nil) {
        install()
        queue.sync { job = line.map { ($0, announce, .training) } }
    }

    /// Moves a data-parallel job (`endJobOnTerminate`) to `phase`: `.finishing` once its training loop
    /// ended with the state saved, `.ended` once its command is done.
    static func setJobPhase(_ phase: JobPhase) {
        queue.sync { job?.phase = phase }
    }

    /// Seconds a rank of a data-parallel job may take, after `mpirun`'s SIGTERM, to reach a step
    /// boundary that every rank agrees on: half of Open MPI's `odls_base_sigkill_timeout` (the seconds
    /// from SIGTERM to SIGKILL, which `mpirun --mca odls_base_sigkill_timeout T` or
    /// `OMPI_MCA_odls_base_sigkill_timeout=T` in mpirun's environment passes to every rank as
    /// `OMPI_MCA_odls_base_sigkill_timeout`), so that the save has the other half; at most `maxWait`;
    /// 0 when the timeout is under 2 s (Open MPI's default is 1 s) or not in the environment.
    public static func jobStopWait(environment: [String: String] = ProcessInfo.processInfo.environment) -> Double {
        guard let text = environment["OMPI_MCA_odls_base_sigkill_timeout"],
              let timeout = Double(text.trimmingCharacters(in: .whitespaces)), timeout.isFinite, timeout >= 2 else { return 0 }
        return min(maxWait(environment), timeout / 2)
    }

    /// Called by every rank of a data-parallel job once the ranks agreed to stop at this boundary.
    static func noteAgreedStop() { stopAgreed.store(true, ordering: .releasing) }

    /// The signal that asked to stop, or nil.
    public static var signal: Int32? {
        let s = received.load(ordering: .acquiring)
        return s == 0 ? nil : s
    }

    /// Takes SIGINT, SIGTERM and SIGUSR1 over for the run that `resumeCommand` resumes, whose last
    /// saved state is at `savedStep`.
    static func watch(resumeCommand: String, savedStep step: Int) {
        savedStep.store(step, ordering: .releasing)
        install()
        queue.sync { current = resumeCommand; finishing = nil }
    }

    /// One process: the training loop of run `runID` ended with its final state saved (all `steps`
    /// done) and its entry is about to be added: from now on the first signal says so
    /// (`finishingLine`) and lets the run complete; a second one quits without the entry.
    public static func trainingEnded(runID: String, steps: Int) {
        queue.sync { finishing = finishingLine(runID: runID, steps: steps) }
    }

    /// What a first signal says once the training loop ended (after `SIGINT: `).
    static func finishingLine(runID: String, steps: Int) -> String {
        "run \(runID) has done its \(steps) steps (state saved); its entry is being added to the zoo, then the run completes"
    }

    /// Takes SIGINT, SIGTERM and SIGUSR1 over (idempotent). Before a run is watched a signal quits at
    /// once (`error: stopped by SIGINT`, exit 130; under mpirun from rank 0 only), as the default action
    /// would, but in words.
    public static func install() {
        queue.sync {
            guard sources.isEmpty else { return }
            // Its handler first, so that the first atomic write does not replace ours later.
            TemporaryFiles.installHandlerNow()
            for sig in stopSignals {
                Foundation.signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                source.setEventHandler { handle(sig) }
                source.resume()
                sources.append(source)
            }
        }
    }

    /// Records that the watched run saved its state at `step`.
    static func noteSaved(step: Int) { savedStep.store(step, ordering: .releasing) }

    /// A line feed on a terminal, where the line holds the `^C` it echoed; nothing when stderr is a
    /// file or a pipe, whose reader gets no blank line.
    private static var lineBreak: String { isatty(STDERR_FILENO) != 0 ? "\n" : "" }

    /// On `queue`: the first signal asks to stop, a second one quits.
    private static func handle(_ sig: Int32) {
        let name = Self.name(of: sig)
        if let job {
            let wait = sig == SIGTERM ? jobStopWait() : maxWait
            let (first, _) = received.compareExchange(expected: 0, desired: sig, ordering: .acquiringAndReleasing)
            guard first else {
                if job.phase == .ended { TemporaryFiles.removeAll(); _exit(128 + sig) }
                endJob(sig)
            }
            let reaction = firstJobSignal(name, phase: job.phase, announce: job.announce, wait: wait)
            if reaction.quits { endJob(sig) }
            if let line = reaction.line { FileHandle.standardError.write(Data("\(lineBreak)\(line)\n".utf8)) }
            if job.phase == .training {
                queue.asyncAfter(deadline: .now() + wait) {
                    if self.job?.phase == .training, !stopAgreed.load(ordering: .acquiring) { endJob(sig) }
                }
            }
            return
        }
        guard current != nil else {
            // No run yet: nothing to save. Under mpirun every rank gets the signal; rank 0 alone says so.
            if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].map({ $0 == "0" }) ?? true {
                FileHandle.standardError.write(Data("\(lineBreak)error: stopped by \(name)\n".utf8))
            }
            TemporaryFiles.removeAll()
            _exit(128 + sig)
        }
        let (exchanged, _) = received.compareExchange(expected: 0, desired: sig, ordering: .acquiringAndReleasing)
        if !exchanged {
            quit(sig, "\(name) again: " + (finishing == nil ? "stopped without saving" : "stopped before the entry was added"))
        }
        let wait = maxWait
        FileHandle.standardError.write(Data("\(lineBreak)\(firstSignal(sig, finishing: finishing, wait: wait))\n".utf8))
        guard finishing == nil else { return }
        queue.asyncAfter(deadline: .now() + wait) {
            if finishing == nil { quit(sig, "no step boundary within \(Int(wait)) s: stopped without saving") }
        }
    }

    /// The line of the first signal `sig` to one process with a watched run: while it trains, the stop
    /// at the next step boundary within `wait` seconds; once its training loop ended (`finishing`, from
    /// `trainingEnded`), what happens instead (the entry is being added, the run completes).
    static func firstSignal(_ sig: Int32, finishing: String?, wait: Double) -> String {
        let name = Self.name(of: sig), again = sig == SIGINT ? "Ctrl-C" : name
        guard let finishing else {
            return "\(name): stopping at the next step boundary with the state saved (at most \(Int(wait)) s; \(again) again quits now)"
        }
        return "\(name): \(finishing) (\(again) again quits now, without the entry)"
    }

    /// On `queue`, in a data-parallel job: exits with 128 + `sig` after the job's line.
    private static func endJob(_ sig: Int32) -> Never {
        if let job { FileHandle.standardError.write(Data(job.line(sig, savedStep.load(ordering: .acquiring)).utf8)) }
        TemporaryFiles.removeAll()
        _exit(128 + sig)
    }

    /// Exits with 128 + `sig` after saying where a resume continues.
    private static func quit(_ sig: Int32, _ what: String) -> Never {
        if let resume = current {
            let step = savedStep.load(ordering: .acquiring)
            FileHandle.standardError.write(Data("error: \(what); the run resumes from step \(step), its last saved state: \(resume)\n".utf8))
        }
        TemporaryFiles.removeAll()
        _exit(128 + sig)
    }
}

/// Thrown by `Run.saveState` once the state is written after a stop request (`StopRequest`).
public struct RunInterrupted: Error, CustomStringConvertible {
    public var step: Int
    public var totalSteps: Int
    public var signal: Int32
    /// `bissl <kind> --resume <id> [--zoo DIR]` (`Run.resumeCommand`).
    public var resumeCommand: String

    /// `stopped at step 6/10 (SIGINT), state saved; resume with: bissl pretrain --resume <id>`.
    public var description: String {
        "stopped at step \(step)/\(totalSteps) (\(StopRequest.name(of: signal))), state saved; resume with: \(resumeCommand)"
    }

    /// 128 + the signal number.
    public var exitStatus: Int32 { 128 + signal }
}
