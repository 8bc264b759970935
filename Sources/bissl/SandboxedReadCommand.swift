import ArgumentParser
import Checkpoint
import Datasets
import Foundation
import HDF5

/// `bissl sandboxed-read checkpoint FILE` / `bissl sandboxed-read dataset FILE PART` (hidden): the
/// HDF5 reader process. bissl starts it for every `.h5` it did not write itself (see `Sandbox`); it
/// waits for the end of its standard input, limits its own resources, reads the file with libhdf5 and
/// writes a `SandboxMessage` to standard output. Not meant to be run by hand.
struct SandboxedRead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandboxed-read", abstract: "Read an outside HDF5 file under resource limits (internal).", shouldDisplay: false)

    @Argument(help: "checkpoint or dataset")
    var kind: String

    @Argument(help: "The .h5 file.")
    var file: String

    @Argument(help: "Dataset part (train or test).")
    var part: String = "train"

    func run() throws {
        // The parent may start this process before the file is complete (`Sandbox.start`): the file
        // is opened only once standard input ends.
        var byte: UInt8 = 0
        while true {
            let n = read(0, &byte, 1)
            if n > 0 || (n < 0 && errno == EINTR) { continue }
            break
        }
        let message: SandboxMessage
        switch kind {
        case "checkpoint": message = UntrustedCheckpointFile.childMessage(path: file)
        case "dataset": message = H5DatasetMessage.childMessage(path: file, part: part)
        default: throw ValidationError("unknown kind \(kind); expected checkpoint or dataset")
        }
        try message.write(to: FileHandle.standardOutput)
    }

    /// Makes this executable the HDF5 reader process of every outside `.h5` this run reads, unless
    /// `BISSL_HDF5_SANDBOX=0` (read them in process: only for files you trust; the benchmark's baseline).
    static func configureHelper() {
        if ProcessInfo.processInfo.environment["BISSL_HDF5_SANDBOX"] == "0" { return }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? Bundle.main.executablePath ?? CommandLine.arguments[0]
        Sandbox.helper = [executable, configuration.commandName!]
    }
}
