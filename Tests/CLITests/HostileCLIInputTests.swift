import Foundation
import XCTest
import TestSupport

/// Inputs a hostile tester fed the release binary, each generated here: an invalid one is refused with
/// one `error:` line and a non-zero exit, leaving no output file, run or zoo entry behind; a valid one
/// that crashed (a 2x2 image through the ImageNet stem) runs.
final class HostileCLIInputTests: CLITestCase {
    /// Writes a safetensors file of `header` (JSON, padded to 8 bytes as the format asks) and `body`.
    private func safetensors(_ name: String, header: String, body: Data = Data()) throws -> String {
        var json = Data(header.utf8)
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var n = UInt64(json.count).littleEndian
        let url = tmp.appendingPathComponent(name)
        try (Data(bytes: &n, count: 8) + json + body).write(to: url)
        return url.path
    }

    /// What is in `tmp` besides the inputs named.
    private func leftovers(besides inputs: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: tmp.path).filter { !inputs.contains($0) }.sorted()
    }

    func testAZeroElementTensorWhoseStridesOverflowIsRefusedByEveryCommand() throws {
        // No elements, but [0, 2^62, 2^62] has no C-contiguous strides in 64 bits: `convert` to .pth
        // trapped computing them. Refused where the shape is read, whatever the output format.
        let input = try safetensors("z.safetensors", header: #"{"a":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}}"#)
        for output in ["o.pth", "o.h5", "o.npz", "o.safetensors"] {
            assertOneLineError(try Fixtures.runBissl(["convert", input, tmp.appendingPathComponent(output).path]), "too large")
        }
        assertOneLineError(try Fixtures.runBissl(["inspect", input]), "too large")
        assertOneLineError(try bissl(["import", input]), "too large")
        XCTAssertEqual(try leftovers(besides: ["z.safetensors", "zoo"]), [], "no output")
    }

}
