// The fuzz harness of bissl's readers (docs/fuzzing.md). One binary, one reader per run, chosen by
// BISSL_FUZZ_TARGET; built by tools/fuzz/build.sh (a guarded product of Package.swift) and run by
// tools/fuzz/run.sh; main.swift hands `fuzzOne` to libFuzzer's driver. An input passes when the
// reader returns or throws an error whose description is one line; a crash, an ASan report, a
// multi-line error, more than `cpuSecondsPerInput` of CPU time or running out of memory is a finding.
@testable import Checkpoint
@testable import Datasets
import Foundation
import HDF5

enum Target: String, CaseIterable {
    case pickle, zip, pth, safetensors, npy, npz, h5, h5message, idx, cifar, png, jpeg, provenance, uri
}

private let target: Target = {
    guard let name = ProcessInfo.processInfo.environment["BISSL_FUZZ_TARGET"], let t = Target(rawValue: name) else {
        fatalError("set BISSL_FUZZ_TARGET to one of \(Target.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    if t == .h5 {
        guard let helper = ProcessInfo.processInfo.environment["BISSL_FUZZ_HELPER"] else {
            fatalError("the h5 target needs BISSL_FUZZ_HELPER=path/to/bissl (its sandboxed reader)")
        }
        Sandbox.helper = [helper, "sandboxed-read"]
    }
    return t
}()

/// A private scratch folder for readers that take a path (tmpfs when there is one).
private let scratch: URL = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
    let dir = base.appendingPathComponent("bissl-fuzz-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}()

/// The file the `h5message` target's tensor extents point into: 4 KiB, opened once.
private let extentFile: (descriptor: Int32, size: Int64) = {
    let url = file(Data((0..<4096).map { UInt8(truncatingIfNeeded: $0) }), named: "extents.bin")
    return (open(url.path, O_RDONLY | O_CLOEXEC), 4096)
}()

private func file(_ data: Data, named name: String) -> URL {
    let url = scratch.appendingPathComponent(name)
    FileManager.default.createFile(atPath: url.path, contents: data)
    return url
}

private func oneLine(_ error: Error) {
    let text = String(describing: error)
    if text.contains("\n") { fatalError("error message is not one line: \(text)") }
}

private func run(_ data: Data) throws {
    switch target {
    case .pickle:
        var reader = PickleReader(data: data, context: "fuzz") { pid in try PyTorchZipReader.zipPersistentLoad(pid, context: "fuzz") }
        var conversion = PickleConversion(pickleBytes: data.count, storageBytes: 1 << 20) { storage, _ in
            guard let n = [storage.numel, storage.dtype.size].checkedProduct, n <= 1 << 16 else {
                throw CheckpointError.corrupt("fuzz: storage too large")
            }
            return Data(count: n)
        }
        _ = try reader.read { value, _ in try conversion.convert(value).tensorPaths() }
    case .zip:
        let archive = try ZipArchive(data: data)
        for entry in archive.entries.prefix(16) { _ = try? archive.data(for: entry) }
    case .pth:
        _ = try PyTorchFile.read(file(data, named: "in.pth")).root.tensorPaths()
    case .safetensors:
        _ = try SafetensorsFile.read(file(data, named: "in.safetensors")).root.tensorPaths()
    case .npy:
        _ = try NumPyArray.decode(data, name: "in.npy")
    case .npz:
        _ = try NumPyArchive.read(file(data, named: "in.npz")).root.tensorPaths()
    case .h5:
        _ = try UntrustedCheckpointFile.read(file(data, named: "in.h5"))
    case .h5message:
        // What the parent trusts of the reader process's output.
        let message = try SandboxMessage(decoding: data)
        _ = try? UntrustedCheckpointFile.decode(message, descriptor: extentFile.descriptor, fileSize: extentFile.size, fileName: "in.h5")
        _ = try H5DatasetMessage.decode(message, file: "h5:in.h5")
    case .idx:
        _ = try IDXReader.parse(IDXReader.inflated(data, name: "in-idx3-ubyte"), name: "in-idx3-ubyte")
    case .cifar:
        let dir = scratch.appendingPathComponent("cifar")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir.appendingPathComponent("test_batch.bin").path, contents: data)
        let dataset = try ImageDataset(parsing: "cifar:\(dir.path)#part=test")
        for i in 0..<min(dataset.count, 4) { _ = try dataset.image(i) }
    case .png, .jpeg:
        _ = try ImageDecoder.decode(data, name: "in.\(target.rawValue)")
    case .provenance:
        _ = try CheckpointReader.decodeProvenance(String(decoding: data, as: UTF8.self), fileName: "in.h5")
    case .uri:
        _ = try DatasetURI(parsing: String(decoding: data, as: UTF8.self), relativeTo: "/fuzz")
    }
}

/// The CPU time one input may take, seconds: user and system time of every thread of this process
/// (`ITIMER_PROF`). More is a hang: the process aborts and libFuzzer keeps the input as a crash. This,
/// not libFuzzer's `-timeout`, is the hang criterion, because `-timeout` counts wall time, which other
/// work on the machine or a pause of the fuzzer (SIGSTOP) stretches while the reader does nothing;
/// tools/fuzz/run.sh keeps `-timeout` as a wall-clock backstop far above it. The h5 target's reader
/// process is not counted here: its own `RLIMIT_CPU` (`Sandbox.Limits`, 20 s for small files) ends
/// it, and that is the containment the target checks.
private let cpuSecondsPerInput = 20

private let cpuTimerHandler: Void = {
    signal(SIGPROF) { _ in
        let message: StaticString = "bissl-fuzz: this input took more than 20 s of CPU time (a hang)\n"
        _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
        abort()
    }
}()

private func setCPUTimer(seconds: Int) {
    var timer = itimerval(it_interval: timeval(), it_value: timeval(tv_sec: seconds, tv_usec: 0))
    setitimer(__itimer_which_t(ITIMER_PROF.rawValue), &timer, nil)
}

/// One input (libFuzzer's `LLVMFuzzerTestOneInput` contract): always returns 0.
func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    cpuTimerHandler
    setCPUTimer(seconds: cpuSecondsPerInput)
    defer { setCPUTimer(seconds: 0) }
    let data = bytes.map { Data(bytes: $0, count: count) } ?? Data()
    do { try run(data) } catch { oneLine(error) }
    return 0
}
