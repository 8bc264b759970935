import BisslCore
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
}
