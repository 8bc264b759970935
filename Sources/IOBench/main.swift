// IOBench: one whole-process read of every tensor of a checkpoint into memory, for `make bench`
// (tools/bench/bench.py, "read every tensor into memory" rows), through the library paths bissl's
// commands use:
//
//     IOBench zoo ZOO REF        # Zoo.checkpoint: a verified zoo object read in process (diff, export, eval)
//     IOBench file BISSL FILE    # UntrustedCheckpointFile.read of an outside .h5 through BISSL's HDF5 reader
//                                # process (import, convert, inspect): contiguous tensors are views of the mapped file
//
// Every page of every tensor is then touched (one byte read per 4 KiB), so a memory-mapped tensor
// counts its page faults as a read would. Prints the tensor bytes and the number of tensors.
import Checkpoint
import Foundation
import HDF5
import Zoo

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(1)
}

let args = Array(CommandLine.arguments.dropFirst())
let checkpoint: Checkpoint
do {
    switch (args.first, args.count) {
    case ("zoo", 3):
        let zoo = try Zoo.open(ZooLayout(root: URL(fileURLWithPath: args[1])), readOnly: true)
        checkpoint = try zoo.checkpoint(try zoo.resolve(args[2]))
    case ("file", 3):
        Sandbox.helper = [args[1], "sandboxed-read"]
        checkpoint = try UntrustedCheckpointFile.read(URL(fileURLWithPath: args[2])).checkpoint
    default:
        fail("usage: IOBench zoo ZOO REF | IOBench file BISSL FILE")
    }
} catch {
    fail("\(error)")
}
var bytes = 0, tensors = 0, sum: UInt8 = 0
for (_, stateDict) in checkpoint.components {
    for (_, tensor) in stateDict {
        tensor.data.withUnsafeBytes { raw in
            for offset in stride(from: 0, to: raw.count, by: 4096) { sum &+= raw[offset] }
        }
        bytes += tensor.data.count
        tensors += 1
    }
}
print("\(bytes) bytes in \(tensors) tensors (checksum byte \(sum))")
