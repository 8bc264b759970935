@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// Where and whether the interchange writers write: options a format does not use are refused,
/// and a symbolic link as the output is written through to its target.
final class WriterTargetTests: XCTestCase {
    private let checkpoint = Checkpoint(components: ["tensors": ["a": Tensor(float32: [1, 2], shape: [2])]],
                                        architecture: nil, provenance: Provenance(stage: "imported"))

    func testOptionsAFormatDoesNotUseAreRefusedBeforeWriting() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let refused: [(InterchangeFormat, Bool, Bool, String)] = [
            (.h5, true, false, "--legacy applies only to pth output, not h5"),
            (.safetensors, true, false, "--legacy applies only to pth output, not safetensors"),
            (.npz, true, false, "--legacy applies only to pth output, not npz"),
            (.pth, false, true, "--compress applies only to npz output, not pth"),
            (.h5, false, true, "--compress applies only to npz output, not h5"),
        ]
        for (format, legacy, compressed, message) in refused {
            let url = dir.appendingPathComponent("out.\(format.rawValue)")
            XCTAssertThrowsError(try Interchange.write(checkpoint, to: url, format: format, options: .init(legacy: legacy, compressed: compressed))) { error in
                XCTAssertEqual(error as? CheckpointError, .invalid(message))
            }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], message)
        }
        try Interchange.write(checkpoint, to: dir.appendingPathComponent("ok.pth"), format: .pth, options: .init(legacy: true))
        try Interchange.write(checkpoint, to: dir.appendingPathComponent("ok.npz"), format: .npz, options: .init(compressed: true))
    }

    func testASymbolicLinkIsWrittenThroughToItsTarget() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let targets = dir.appendingPathComponent("targets")
        try FileManager.default.createDirectory(at: targets, withIntermediateDirectories: true)
        for format in InterchangeFormat.allCases {
            // A relative link to an existing file, and a chain ending in a file not yet there.
            let target = targets.appendingPathComponent("model.\(format.rawValue)")
            try Data("old".utf8).write(to: target)
            let link = dir.appendingPathComponent("link.\(format.rawValue)")
            try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: "targets/model.\(format.rawValue)")
            try Interchange.write(checkpoint, to: link, format: format)
            XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link.path), "targets/model.\(format.rawValue)")
            XCTAssertNotEqual(try Data(contentsOf: target), Data("old".utf8), format.rawValue)
            XCTAssertEqual(try Interchange.readSourceOrHDF5Tensors(target), ["a": [1, 2]], format.rawValue)

            let fresh = targets.appendingPathComponent("fresh.\(format.rawValue)")
            let hop = dir.appendingPathComponent("hop.\(format.rawValue)")
            let chain = dir.appendingPathComponent("chain.\(format.rawValue)")
            try FileManager.default.createSymbolicLink(atPath: hop.path, withDestinationPath: fresh.path)
            try FileManager.default.createSymbolicLink(atPath: chain.path, withDestinationPath: hop.lastPathComponent)
            try Interchange.write(checkpoint, to: chain, format: format)
            XCTAssertEqual(try Interchange.readSourceOrHDF5Tensors(fresh), ["a": [1, 2]], format.rawValue)
            XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: chain.path), hop.lastPathComponent)
        }
        // Only the links and the targets: no temporaries left anywhere.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: targets.path).filter { $0.hasPrefix(".") }, [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [])
    }

    func testALinkLoopIsRefused() throws {
        let dir = try Fixtures.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.pth"), b = dir.appendingPathComponent("b.pth")
        try FileManager.default.createSymbolicLink(atPath: a.path, withDestinationPath: "b.pth")
        try FileManager.default.createSymbolicLink(atPath: b.path, withDestinationPath: "a.pth")
        XCTAssertThrowsError(try Interchange.write(checkpoint, to: a, format: .pth)) { error in
            XCTAssertEqual(error as? CheckpointError, .io("cannot write \(a.path): too many levels of symbolic links"))
        }
    }
}

private extension Interchange {
    /// The float values of every tensor of a written file, by flat name.
    static func readSourceOrHDF5Tensors(_ url: URL) throws -> [String: [Float]] {
        if CheckpointFile.isHDF5(url) {
            return Dictionary(uniqueKeysWithValues: try CheckpointFile.read(url).flatStateDict().map { ($0.key, $0.value.floats()) })
        }
        return Dictionary(uniqueKeysWithValues: try readSource(url).root.tensorPaths().map { ($0.path, $0.tensor.tensor.floats()) })
    }
}
