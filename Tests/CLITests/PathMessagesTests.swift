import Checkpoint
import Training
import Foundation
import XCTest
import TestSupport

/// Messages about paths, split files and dataset URIs, as a demanding user expects them worded.
final class PathMessagesTests: CLITestCase {
    /// The digits' image count, as `data info` prints it.
    private func digitsCount() throws -> Int {
        let r = try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("images: ") }!
        return Int(line.dropFirst("images: ".count))!
    }

    func testAnIndexTooLargeForAnIntegerIsOutOfRangeNotANonInteger() throws {
        let n = try digitsCount()
        let split = tmp.appendingPathComponent("split.txt")
        for index in ["99999999999999999999999", "9223372036854775808", "\(n)", "0000\(n)"] {
            try Data("0\n\(index)\n".utf8).write(to: split)
            assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(split.path)"]),
                               "split file \(split.path) line 2: index \(index.hasPrefix("0") ? "\(n)" : index) is out of range (the dataset has \(n) images, 0..<\(n))")
        }
        try Data("0\n-1\n".utf8).write(to: split)
        assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(Self.digits)#split=\(split.path)"]),
                           "line 2: '-1' is not a non-negative integer index")
    }

    func testASplitOptionWithoutAFileIsRefusedWithTheExpectedForm() throws {
        for uri in ["h5:\(Self.digits)#split", "h5:\(Self.digits)#part=train&split"] {
            assertOneLineError(try Fixtures.runBissl(["data", "info", uri]), "split needs a file: write #split=FILE in '\(uri)'")
        }
    }

    func testPathsWithEdgeSpacesOrEmptyAreQuoted() throws {
        assertOneLineError(try Fixtures.runBissl(["inspect", " "]), "error: cannot read ' ': no such file")
        assertOneLineError(try Fixtures.runBissl(["inspect", "a.h5 "]), "error: cannot read 'a.h5 ': no such file")
        assertOneLineError(try Fixtures.runBissl(["data", "info", "h5:\(tmp.path)/x.h5 "]), "error: cannot read '\(tmp.path)/x.h5 ': no such file")
        assertOneLineError(try Fixtures.runBissl(["convert", Fixtures.url("pth/resnet18_w2.pth").path, "\(tmp.path)/no dir /o.h5"]),
                           "error: cannot write \(tmp.path)/no dir /o.h5: no such folder '\(tmp.path)/no dir '")
    }

    func testAFileNamedWithEdgeSpacesIsQuotedWhenDescribed() throws {
        try Data().write(to: tmp.appendingPathComponent(" "))
        let r = try BisslBinary.run(["-c", "cd \"$0\" && exec \"$@\"", tmp.path, BisslBinary.url!.path, "inspect", " "],
                                    executable: URL(fileURLWithPath: "/bin/sh"))
        assertOneLineError((r.status, r.stdout, r.stderr), "error: ' ' is empty (0 bytes)")
    }

    func testAnOutputThatIsAFolderIsSaidSoInOneWording() throws {
        let input = Fixtures.url("pth/resnet18_w2.pth").path
        for name in ["d.h5", "folder"] {
            let folder = tmp.appendingPathComponent(name).path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            assertOneLineError(try Fixtures.runBissl(["convert", input, folder]), "error: cannot write \(folder): it is a folder")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), [])
        }
    }
}
