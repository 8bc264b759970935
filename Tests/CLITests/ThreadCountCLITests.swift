import BisslCore
import Foundation
import XCTest
import TestSupport

/// The engine's thread count when `mpirun` puts several ranks on the processors of one node
/// (`ProcessorCount.share`, docs/distributed.md "Threads"), and a training result that does not depend
/// on it (Sources/Engine/Core/Parallel.swift: every index written by one thread, every reduction inside one).
final class ThreadCountCLITests: CLITestCase {
    /// The environment `mpirun --bind-to none -np 2` gives its ranks on one node, without the
    /// `OMPI_COMM_WORLD_SIZE` that would make bissl join an MPI job.
    func sharedNode(_ localRank: Int) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_COMM_WORLD_LOCAL_SIZE"] = "2"
        environment["OMPI_COMM_WORLD_LOCAL_RANK"] = String(localRank)
        environment["OMPI_COMM_WORLD_SIZE"] = nil
        return environment
    }

    func testTwoRanksSharingTheProcessorsStartHalfTheThreadsEach() throws {
        let all = ProcessorCount.available
        guard all >= 2 else { throw XCTSkip("one processor: nothing to share") }
        let alone = try BisslBinary.run(["doctor"])
        XCTAssertTrue(alone.stdout.contains("threads:   \(all) "), alone.stdout)
        let shared = (0..<2).map { ProcessorCount.share(of: all, nodeProcessors: all, localRanks: 2, localRank: $0) }
        XCTAssertEqual(shared.reduce(0, +), all)
        for rank in 0..<2 {
            let r = try BisslBinary.run(["doctor"], environment: sharedNode(rank))
            XCTAssertTrue(r.stdout.contains("threads:   \(shared[rank]) "), r.stdout)
        }
    }

    /// The same pretraining with all processors and with half of them gives the same weights (the same
    /// content id), and each entry records its own thread count.
    func testTheEntryDoesNotDependOnTheThreadCount() throws {
        guard ProcessorCount.available >= 2 else { throw XCTSkip("one processor: one thread count only") }
        let data = try split(0..<32)
        var ids: [String] = [], threads: [String] = []
        for environment in [nil, sharedNode(1)] {
            let zoo = tmp.appendingPathComponent("zoo-\(ids.count)").path
            let r = try BisslBinary.run(["pretrain", "--method", "simclr", "--data", data, "--arch", "resnet18", "--width", "8",
                                         "--stem", "small", "--image-size", "16", "--batch-size", "16", "--steps", "3",
                                         "--name", "p", "--zoo", zoo], environment: environment)
            XCTAssertEqual(r.status, 0, r.stderr)
            let show = try BisslBinary.run(["show", "p", "--zoo", zoo, "--json"])
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
            ids.append(try XCTUnwrap(object["id"] as? String))
            let provenance = try XCTUnwrap(object["provenance"] as? [String: Any])
            let hyper = try XCTUnwrap(provenance["hyperparameters"] as? [String: Any])
            threads.append(try XCTUnwrap((hyper["run.engine"] as? [String: Any])?["threads"] as? String))
        }
        XCTAssertEqual(threads, [String(ProcessorCount.available), String(ProcessorCount.share(of: ProcessorCount.available,
            nodeProcessors: ProcessorCount.available, localRanks: 2, localRank: 1))])
        XCTAssertNotEqual(threads[0], threads[1])
        XCTAssertEqual(ids[0], ids[1], "the weights depend on the thread count")
    }
}
