@testable import BisslCore
import XCTest

/// `ProcessorCount.share`: the engine threads of one rank when several ranks of an `mpirun` job run on
/// one node (docs/distributed.md, "Threads").
final class ProcessorCountTests: XCTestCase {
    func testRanksSharingTheirProcessorsSplitThem() {
        // `mpirun --bind-to none -np 2` on 2 cores: both masks are the whole node; one thread each.
        XCTAssertEqual((0..<2).map { ProcessorCount.share(of: 2, nodeProcessors: 2, localRanks: 2, localRank: $0) }, [1, 1])
        // 3 ranks over 8 shared cores: 3 + 3 + 2, all of them used, none twice.
        XCTAssertEqual((0..<3).map { ProcessorCount.share(of: 8, nodeProcessors: 8, localRanks: 3, localRank: $0) }, [3, 3, 2])
        // More ranks than cores (`--oversubscribe`): still one thread each.
        XCTAssertEqual((0..<5).map { ProcessorCount.share(of: 2, nodeProcessors: 2, localRanks: 5, localRank: $0) }, [1, 1, 1, 1, 1])
        // `--bind-to socket`, 4 ranks on 2 sockets of 16 cores: 2 ranks share each socket's 16 cores.
        XCTAssertEqual(ProcessorCount.share(of: 16, nodeProcessors: 32, localRanks: 4, localRank: 3), 8)
    }

    func testDisjointMasksAndOneProcessKeepTheirProcessors() {
        // `--bind-to core` (Open MPI's default for 2 ranks): one core each, kept.
        XCTAssertEqual(ProcessorCount.share(of: 1, nodeProcessors: 2, localRanks: 2, localRank: 1), 1)
        // Ranks bound to 4 cores each of a 16-core node, 4 ranks: nothing shared.
        XCTAssertEqual(ProcessorCount.share(of: 4, nodeProcessors: 16, localRanks: 4, localRank: 2), 4)
        // One rank on the node (or no mpirun): the whole mask.
        XCTAssertEqual(ProcessorCount.share(of: 6, nodeProcessors: 8, localRanks: 1, localRank: 0), 6)
    }

    /// The node's processors: the parent's mask only when the parent is Open MPI's launcher.
    func testNodeProcessorsTrustTheParentsMaskOnlyUnderOpenMPIsLauncher() {
        // mpirun (or orted) binds the node's ranks within its own mask: 1-core ranks on a 16-core node.
        for launcher in ["mpirun", "mpiexec", "orterun", "orted", "prterun", "prted"] {
            XCTAssertEqual(ProcessorCount.nodeProcessors(mask: 1, parentMask: 16, parentName: launcher), 16, launcher)
        }
        XCTAssertEqual(ProcessorCount.nodeProcessors(mask: 8, parentMask: 2, parentName: "mpirun"), 8)
        // srun's step daemon, or a wrapper script with the whole node's mask while the 4 ranks share 4
        // cores: its mask would make each rank take all 4 (16 threads on 4 cores); our own mask splits them.
        for other in ["slurmstepd", "bash", "python3"] {
            XCTAssertEqual(ProcessorCount.nodeProcessors(mask: 4, parentMask: 64, parentName: other), 4, other)
        }
        XCTAssertEqual(ProcessorCount.nodeProcessors(mask: 4, parentMask: 64, parentName: nil), 4)
        let node = ProcessorCount.nodeProcessors(mask: 4, parentMask: 64, parentName: "slurmstepd")
        XCTAssertEqual((0..<4).map { ProcessorCount.share(of: 4, nodeProcessors: node, localRanks: 4, localRank: $0) }, [1, 1, 1, 1])
        // This process's own name is readable (Linux /proc).
        XCTAssertNotNil(ProcessorCount.processName(of: getpid()))
    }
}
