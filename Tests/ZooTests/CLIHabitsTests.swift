import Checkpoint
import Foundation
import XCTest
@testable import Zoo
import TestSupport

/// Everyday command-line slips get useful answers: "did you mean" for commands and options,
/// `--zoo DIR` before the command, one wording for a missing file, `--dtype` listing only what
/// works, contradicting options explained in words, and one architecture naming scheme that every
/// filter accepts.
final class CLIHabitsTests: XCTestCase {
    private func bissl(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try BisslBinary.run(args)
        return (r.status, r.stdout, r.stderr)
    }

    private func assertError(_ args: [String], _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try bissl(args)
        XCTAssertNotEqual(r.status, 0, "bissl \(args.joined(separator: " "))", file: file, line: line)
        XCTAssertEqual(r.stderr, "error: \(expected)\n", "bissl \(args.joined(separator: " "))", file: file, line: line)
    }

    func testDidYouMean() throws {
        try assertError(["lsit"], "'lsit' is not a bissl command; did you mean 'list'? (bissl --help lists them)")
        try assertError(["runs", "shwo", "x"], "'shwo' is not a bissl runs command; did you mean 'show'? (bissl runs --help lists them)")
        try assertError(["frobnicate"], "'frobnicate' is not a bissl command (bissl --help lists them)")
        let r = try bissl(["list", "--stag", "pretext"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.hasSuffix(". Did you mean '--stage'?\n"), r.stderr)
        let prefix = try bissl(["diff", "a", "b", "--no-prov"])
        XCTAssertTrue(prefix.stderr.hasSuffix(". Did you mean '--no-provenance'?\n"), prefix.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertEqual(try bissl(["help", "list"]).status, 0, "ArgumentParser's help command still works")
    }

    func testZooBeforeTheCommand() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        XCTAssertEqual(try bissl(["import", ZooTestSupport.fixture("layout/r18.pth").path, "--zoo", zoo, "--name", "r"]).status, 0)
        let after = try bissl(["list", "--zoo", zoo])
        let before = try bissl(["--zoo", zoo, "list"])
        XCTAssertEqual(before.status, 0, before.stderr)
        XCTAssertEqual(before.stdout, after.stdout)
        XCTAssertEqual(try bissl(["--zoo=\(zoo)", "show", "r"]).status, 0)
        let nested = try bissl(["--zoo", zoo, "runs", "list"])
        XCTAssertEqual(nested.status, 0, nested.stderr)
    }

    func testOneWordingForAMissingFile() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let missing = dir.appendingPathComponent("missing.pth").path
        let zoo = dir.appendingPathComponent("zoo").path
        for args in [["import", missing, "--zoo", zoo], ["inspect", missing], ["convert", missing, dir.appendingPathComponent("out.h5").path]] {
            try assertError(args, "cannot read \(missing): no such file")
        }
    }

    func testDTypeListsAndTakesOnlyWhatWorks() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let help = try bissl(["convert", "--help"])
        XCTAssertFalse(help.stdout.contains("int8") || help.stdout.contains("uint8"), help.stdout)
        try assertError(["convert", ZooTestSupport.fixture("layout/r18.pth").path, dir.appendingPathComponent("o.h5").path, "--dtype", "int8"],
                        "The value 'int8' is invalid for '--dtype <dtype>'. Please provide one of 'float16', 'bfloat16', 'float32' or 'float64'.")
        let out = dir.appendingPathComponent("half.safetensors").path
        let r = try bissl(["convert", ZooTestSupport.fixture("layout/r18.pth").path, out, "--dtype", "fp16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("float16"), r.stdout)
    }

    func testContradictingOptionsAreExplained() throws {
        try assertError(["finetune", "--random-init", "--arch", "resnet18-w8-small", "--width", "4", "--data", "idx:/nonexistent"],
                        "--arch resnet18-w8-small says width 8 but --width says 4; give one of them")
        try assertError(["finetune", "--random-init", "--arch", "resnet18-small", "--stem", "imagenet", "--data", "idx:/nonexistent"],
                        "--arch resnet18-small says the small stem but --stem says imagenet; give one of them")
    }

    func testOneArchitectureNameEverywhere() throws {
        let dir = try ZooTestSupport.tempDir(self)
        let zoo = dir.appendingPathComponent("zoo").path
        // resnet18-w2 (imagenet stem), resnet50-w1-small, resnet18-w1-small
        for (file, name) in [("layout/r18.pth", "a"), ("layout/c3_full.pth", "b"), ("layout/train.pth", "c")] {
            let r = try bissl(["import", ZooTestSupport.fixture(file).path, "--zoo", zoo, "--name", name])
            XCTAssertEqual(r.status, 0, "\(file): \(r.stderr)")
        }
        func names(_ arch: String) throws -> [String] {
            let r = try bissl(["list", "--arch", arch, "--json", "--zoo", zoo])
            XCTAssertEqual(r.status, 0, "\(arch): \(r.stderr)")
            let rows = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: Any]]
            return rows.compactMap { $0["name"] as? String }.sorted()
        }
        let list = try bissl(["list", "--zoo", zoo]).stdout
        for label in ["resnet18-w2", "resnet50-w1-small", "resnet18-w1-small"] { XCTAssertTrue(list.contains(label), list) }
        XCTAssertEqual(try names("resnet18"), ["a", "c"])
        XCTAssertEqual(try names("resnet18-w1-small"), ["c"])
        XCTAssertEqual(try names("resnet18-small"), ["c"])
        XCTAssertEqual(try names("resnet18-imagenet"), ["a"])
        XCTAssertEqual(try names("resnet18-w2-imagenet"), ["a"])
        XCTAssertEqual(try names("ResNet-50"), ["b"])
        XCTAssertEqual(try names("resnet50-w64"), [])
        try assertError(["list", "--arch", "vgg16", "--zoo", zoo],
                        "'vgg16' is not an architecture name: expected resnet<depth>[-w<width>][-small|-imagenet], e.g. resnet50 or resnet18-w8-small")
    }

    func testArchitectureNames() throws {
        let n = try ArchitectureName(parsing: "resnet18-w8-small")
        XCTAssertEqual([n.depth, n.width], [18, 8])
        XCTAssertEqual(n.stem, "small")
        XCTAssertTrue(n.matches(Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 8, stem: "small")))
        XCTAssertFalse(n.matches(Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 8, stem: "imagenet")))
        let label = Architecture(depth: 50, block: "bottleneck", layers: [3, 4, 6, 3], width: 1, stem: "small").label
        XCTAssertEqual(try ArchitectureName(parsing: label).width, 1, "every label parses back")
        for bad in ["resnet", "resnet19", "resnet18-w0", "resnet18-small-w8", "resnet18-tiny", "vit-b"] {
            XCTAssertThrowsError(try ArchitectureName(parsing: bad), bad)
        }
    }
}
