import ArgumentParser
import Checkpoint
import Foundation

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
    /// no stack trace (ArgumentParser's own `Error:` prefix is replaced).
    static func main() {
        SandboxedRead.configureHelper()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))  // --help, --version
            } else {
                let message = error is OneLineError ? String(describing: error) : fullMessage(for: error)
                let firstLine = message.split(separator: "\n").first.map(String.init) ?? "unknown error"
                FileHandle.standardError.write(Data(("error: " + firstLine.replacingOccurrences(of: "Error: ", with: "") + "\n").utf8))
            }
            Foundation.exit(code.rawValue)
        }
    }
}
