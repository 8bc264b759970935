import ArgumentParser
import Checkpoint
import Datasets
import Training
import Foundation
import Training

/// `bissl`: model zoo, checkpoint conversion and BiSSL alignment for self-supervised ResNets.
@main
struct Bissl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bissl",
        abstract: "Model zoo, checkpoint conversion and BiSSL alignment for self-supervised ResNets.",
        version: bisslVersion,
        subcommands: [Convert.self, Inspect.self, Import.self, Export.self, List.self, Show.self, Lineage.self, Diff.self, Tag.self, Untag.self,
                      Remove.self, Verify.self, GC.self, RemoteGroup.self, Push.self, Pull.self, DataGroup.self, PredictCommand.self, Runs.self, PretrainCommand.self,
                      FinetuneCommand.self, ProbeCommand.self, EvalCommand.self, CompareCommand.self, AlignCommand.self, Card.self, SandboxedRead.self, Doctor.self])

    /// Runs the CLI with our error convention: one `error: ...` line on stderr, non-zero exit,
    /// no stack trace (ArgumentParser's own `Error:` prefix is replaced, its several-line messages
    /// folded into one), after the slips `CommandLineHabits` handles (`--zoo DIR` before the command,
    /// a misspelt command or option, one wording for a missing file). Under `mpirun`
    /// (docs/distributed.md) MPI is finalised after a command that succeeded on every rank; the ranks
    /// other than 0 leave the options, configs and zoo errors (which every rank meets alike) to rank 0
    /// and print only what can be theirs alone (data, I/O, MPI), prefixed with their rank.
    static func main() {
        SandboxedRead.configureHelper()
        let args = CommandLineHabits.movingLeadingZoo(Array(CommandLine.arguments.dropFirst()), root: Self.self)
        StopRequest.install()
        do {
            if args.first != "help", let slip = CommandLineHabits.unknownCommand(args, root: Self.self) { throw slip }
            var command = try parseAsRoot(args)
            try command.run()
            DataParallel.world.finalize()
        } catch let stop as RunInterrupted {
            // Every rank of an MPI job stops after the same step (docs/distributed.md); rank 0 says where.
            if DataParallel.isLeader { FileHandle.standardError.write(Data("\(stop.description)\n".utf8)) }
            BackgroundWork.finish(within: 30)
            Foundation.exit(stop.exitStatus)
        } catch {
            if let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"], rank != "0", !isRankSpecific(error) {
                Foundation.exit(1)
            }
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))  // --help, --version
            } else {
                let message = error is OneLineError ? String(describing: error)
                    : CommandLineHabits.missingFile(error) ?? fullMessage(for: error)
                let line = CommandLineHabits.oneLine(message, args: args, root: Self.self)
                let rank = (ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"]).map { $0 == "0" ? "" : "rank \($0): " } ?? ""
                FileHandle.standardError.write(Data(("error: " + rank + line.replacingOccurrences(of: "Error: ", with: "") + "\n").utf8))
            }
            // Workers a failed command left running (a label listing, a hash) finish before exit tears
            // down the libraries they use; 30 s covers a request's retries and its stall timeout.
            BackgroundWork.finish(within: 30)
            Foundation.exit(code.rawValue)
        }
    }

    /// Whether `error` may be met by one rank of an MPI job alone (unreadable data, a failing disk, MPI
    /// itself) rather than by every rank alike.
    static func isRankSpecific(_ error: Error) -> Bool {
        switch error {
        case is DatasetError, DistributedError.collective: return true
        case TrainingError.io, TrainingError.corrupt: return true
        default: return false
        }
    }
}
