import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Training
import Zoo

/// A command that runs one `TrainingJob` (pretrain, align, finetune): it maps its options to the job's
/// options and prints the result; starting, `--resume`, failure marking and finishing are the job's.
protocol TrainingCommand: ParsableCommand {
    associatedtype Job: TrainingJob
    var runOptions: RunOptions { get }
    var zooOptions: ZooOptions { get }
    /// The options given on the command line, as the job reads them.
    var jobOptions: Job.Options { get }
    /// Prints what the finished run made.
    func report(_ result: JobResult) throws
    /// Whether a new run creates a missing zoo (false when the job starts from an entry).
    static var createsZoo: Bool { get }
}

extension TrainingCommand {
    static var createsZoo: Bool { true }

    /// The job options' own rules; with `--resume RUN` (a run continues with the config it started
    /// with) no other option may be given.
    func validate() throws {
        guard runOptions.resume != nil else { return try jobOptions.validate() }
        let given = jobOptions.given
        guard given.isEmpty else {
            throw CLIError("--resume takes no other options (the run's config has them): remove \(given.joined(separator: ", "))")
        }
    }

    func run() throws {
        // Under mpirun rank 0 opens (and maybe creates) the zoo before the others open it.
        let world = try DataParallel.join()
        if world.rank > 0 { try world.barrier() }
        let opened = Result { try zooOptions.open(create: runOptions.resume == nil && Self.createsZoo) }
        if world.rank == 0 { try world.barrier() }
        let zoo = try opened.get()
        defer { try? zoo.close() }
        let commandLine = CommandLine.arguments
        let result = try runOptions.resume.map { try Job.resume(zoo: zoo, id: $0, commandLine: commandLine) }
            ?? Job.start(zoo: zoo, options: jobOptions, commandLine: commandLine)
        // Under mpirun only rank 0 reports (docs/distributed.md).
        if DataParallel.isLeader { try report(result) }
    }
}

/// `--resume`, `--name`, `--json`, `--sync-bn` of every training command.
struct RunOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Continue an interrupted run (id, unique prefix or directory) with the settings it started with; takes no other options.", valueName: "RUN"))
    var resume: String?
    @Option(help: ArgumentHelp("Name of the new entry.", valueName: "NAME"))
    var name: String?
    @Flag(help: "Print the result as JSON.")
    var json = false
    @Flag(name: .customLong("sync-bn"), help: "Under mpirun: BatchNorm normalises with the statistics of the whole global batch, summed over the ranks (torch.nn.SyncBatchNorm), instead of each rank's shard (docs/distributed.md).")
    var syncBN = false
}

/// The backbone of a run that starts from no entry: `--arch`, `--width`, `--stem`.
struct ArchitectureOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Backbone: resnet18, resnet34, resnet50, resnet101, resnet152, or a full name as bissl list prints it (resnet18-w8-small = --arch resnet18 --width 8 --stem small).", valueName: "ARCH"))
    var arch: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Stem width (64 in torchvision).", valueName: "W"))
    var width: Int?
    @Option(help: ArgumentHelp("imagenet (7x7/2 conv + max pool) or small (3x3/1 conv).", valueName: "STEM"))
    var stem: Stem?

    enum Stem: String, CaseIterable, ExpressibleByArgument { case imagenet, small }
}

/// `--seed N`: every seed option reads a non-negative 64-bit integer.
enum SeedArgument {
    static func parse(_ text: String) throws -> UInt64 {
        if let value = UInt64(text) { return value }
        if let negative = Int64(text), negative < 0 { throw CLIError("--seed must not be negative, got \(negative)") }
        throw CLIError("--seed must be an integer in 0...\(UInt64.max), got '\(text)'")
    }
}

extension PretextObjective.Method: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}

extension ImplicitGradientOptions.Solver: ExpressibleByArgument {}
extension HessianVectorProduct.Scheme: ExpressibleByArgument {}
extension ImplicitGradientOptions.HVPBatchNorm: ExpressibleByArgument {}

/// Prints `value` as JSON when `json`, else the line `text` (`ZooOutput.printLine`).
func printResult<T: Encodable>(json: Bool, _ value: T, _ text: @autoclosure () -> String) throws {
    if json { try ZooOutput.printJSON(value) } else { ZooOutput.printLine(text()) }
}
