import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The number of processors this process may run on.
public enum ProcessorCount {
    /// Processors in the process's CPU affinity mask (`sched_getaffinity(2)`: what `taskset`, cgroup
    /// cpusets and `mpirun --bind-to core` restrict), at most the active processor count; the active
    /// processor count where the mask cannot be read. Under an MPI launcher that sets
    /// `OMPI_COMM_WORLD_LOCAL_SIZE` (ranks on this node), this process's share of them when other
    /// ranks of the job on this node may run on the same processors (`share(of:...)`: `--bind-to none`,
    /// `--bind-to socket`, more ranks than cores), the node's processors being `nodeProcessors`'s
    /// choice. Always at least 1.
    public static let available: Int = {
        let environment = ProcessInfo.processInfo.environment
        let mask = affinityCount(of: 0)
        guard let localSize = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init), localSize > 1 else { return mask }
        let parent = getppid()
        let node = nodeProcessors(mask: mask, parentMask: affinityCount(of: parent), parentName: processName(of: parent))
        let localRank = environment["OMPI_COMM_WORLD_LOCAL_RANK"].flatMap(Int.init) ?? 0
        return share(of: mask, nodeProcessors: node, localRanks: localSize, localRank: localRank)
    }()

    /// The names (`/proc/<pid>/comm`) of Open MPI's launchers, which start a node's ranks as their own
    /// children: `mpirun`/`mpiexec`/`orterun` and `orted` (Open MPI 4), `prterun`/`prted` (Open MPI 5).
    static let openMPILaunchers: Set<String> = ["mpirun", "mpiexec", "orterun", "orted", "prterun", "prted"]

    /// The processors a node's ranks are spread over, given this rank's `mask` count, its parent's
    /// (`parentMask`) and the parent's name: when the parent is Open MPI's launcher (`openMPILaunchers`),
    /// whose mask holds every processor it binds the node's ranks to, the larger of the two masks;
    /// otherwise (another launcher, such as Slurm's `srun`, or a wrapper script between them, whose
    /// mask says nothing of where the other ranks run) this rank's own mask, so `share` assumes every
    /// rank on the node shares it: never more threads than processors, at worst fewer.
    public static func nodeProcessors(mask: Int, parentMask: Int, parentName: String?) -> Int {
        guard let parentName, openMPILaunchers.contains(parentName) else { return mask }
        return max(mask, parentMask)
    }

    /// The name of process `pid` (`/proc/<pid>/comm`, the executable's name as started, at most 15
    /// bytes); nil where it cannot be read.
    static func processName(of pid: pid_t) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : name
    }

    /// This rank's share of the `mask` processors of its affinity mask when `localRanks` ranks of one
    /// job run on a node whose ranks are spread over `nodeProcessors` processors: `mpirun` binds them
    /// evenly (`--bind-to core`: disjoint masks; `socket`: a socket's cores shared by the ranks bound to
    /// it; `none`: every rank's mask is the whole node), so about `s = ⌈localRanks · mask /
    /// nodeProcessors⌉` ranks share this rank's mask, and each gets `mask / s` processors, the first
    /// `mask mod s` of them (by `localRank mod s`) one more. So disjoint masks keep their size, and
    /// ranks sharing their processors do not start more threads than there are processors.
    /// - Returns: at least 1.
    public static func share(of mask: Int, nodeProcessors: Int, localRanks: Int, localRank: Int) -> Int {
        let mask = max(1, mask), node = max(mask, nodeProcessors), ranks = max(1, localRanks)
        let sharing = (ranks * mask + node - 1) / node
        guard sharing > 1 else { return mask }
        let extra = (max(0, localRank) % sharing) < mask % sharing ? 1 : 0
        return max(1, mask / sharing + extra)
    }

    /// Processors in the affinity mask of process `pid` (0: this one), at most the active processor
    /// count; the active processor count where the mask cannot be read.
    static func affinityCount(of pid: pid_t) -> Int {
        let active = max(1, ProcessInfo.processInfo.activeProcessorCount)
        #if os(Linux)
        // glibc declares sched_getaffinity only under _GNU_SOURCE, which Swift's Glibc module lacks.
        typealias GetAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_getaffinity") else { return active }
        var mask = [UInt8](repeating: 0, count: 128)   // 1,024 CPUs, glibc's cpu_set_t
        let status = mask.withUnsafeMutableBytes { unsafeBitCast(symbol, to: GetAffinity.self)(pid, 128, $0.baseAddress!) }
        guard status == 0 else { return active }
        return max(1, min(active, mask.reduce(0) { $0 + $1.nonzeroBitCount }))
        #else
        return active
        #endif
    }
}
