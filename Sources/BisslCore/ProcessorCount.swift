import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The number of processors this process may run on.
public enum ProcessorCount {
    /// Processors in the process's CPU affinity mask (`sched_getaffinity(2)`: what `taskset`, cgroup
    /// cpusets and `mpirun --bind-to core` restrict), at most the active processor count; the active
    /// processor count where the mask cannot be read. Always at least 1.
    public static let available: Int = {
        let active = max(1, ProcessInfo.processInfo.activeProcessorCount)
        #if os(Linux)
        // glibc declares sched_getaffinity only under _GNU_SOURCE, which Swift's Glibc module lacks.
        typealias GetAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_getaffinity") else { return active }
        var mask = [UInt8](repeating: 0, count: 128)   // 1,024 CPUs, glibc's cpu_set_t
        let status = mask.withUnsafeMutableBytes { unsafeBitCast(symbol, to: GetAffinity.self)(0, 128, $0.baseAddress!) }
        guard status == 0 else { return active }
        return max(1, min(active, mask.reduce(0) { $0 + $1.nonzeroBitCount }))
        #else
        return active
        #endif
    }()
}
