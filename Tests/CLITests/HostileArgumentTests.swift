import Checkpoint
import Training
import Foundation
import XCTest
import Zoo
import TestSupport

/// The README tour's commands given hostile arguments (empty strings, FIFOs, folders where files
/// belong, paths outside the zoo): one `error:` line, a non-zero exit, nothing changed.
final class HostileArgumentTests: CLITestCase {
    private func entry() throws {
        let z = try Zoo.open(ZooLayout(root: zooDir), create: true)
        _ = try z.add(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), name: "e")
        try z.close()
    }

    private func isFIFO(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO
    }

    /// The writers rename a temporary onto their output: onto a FIFO (or, run as root, onto
    /// `/dev/null`) that put a regular file in its place. A FIFO in the scratch folder, directly and
    /// through a symbolic link, stands for every such node here.
    func testAnOutputThatIsADeviceOrFIFOIsRefusedAndKept() throws {
        try entry()
        let fifo = tmp.appendingPathComponent("out.fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let link = tmp.appendingPathComponent("link.h5").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: fifo)
        let npy = tmp.appendingPathComponent("x.npy")
        try NumPyArray.encode(Tensor(float32: [Float](repeating: 0.5, count: 3 * 8 * 8), shape: [1, 3, 8, 8])).write(to: npy)
        for output in [fifo, link] {
            assertOneLineError(try bissl(["card", "e", "-o", output]), "error: cannot write \(output): it is not a regular file")
            assertOneLineError(try bissl(["predict", "e", "--input", npy.path, "-o", output]), "error: cannot write \(output): it is not a regular file")
            assertOneLineError(try bissl(["export", "e", "-o", output, "--format", "h5"]), "error: cannot write \(output): it is not a regular file")
            assertOneLineError(try Fixtures.runBissl(["convert", Fixtures.url("pth/resnet18_w2.pth").path, output, "--to", "h5"]),
                               "error: cannot write \(output): it is not a regular file")
            XCTAssertTrue(isFIFO(fifo), "the FIFO was replaced")
        }
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), fifo)
    }

    /// A one-character output name in the working folder (`-o a`, `-o ' '`) crashed the process
    /// (Foundation's `deletingLastPathComponent` traps on it); it is written, and named quoted
    /// when it is white space.
    func testAOneCharacterOutputNameIsWritten() throws {
        try entry()
        func inTmp(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            let r = try BisslBinary.run(["-c", "cd \"$0\" && exec \"$@\"", tmp.path, BisslBinary.url!.path] + args,
                                        executable: URL(fileURLWithPath: "/bin/sh"))
            return (r.status, r.stdout, r.stderr)
        }
        let convert = try inTmp(["convert", Fixtures.url("pth/resnet18_w2.pth").path, "a", "--to", "h5"])
        XCTAssertEqual(convert.status, 0, convert.stderr)
        XCTAssertTrue(convert.stdout.hasPrefix("wrote a (h5, "), convert.stdout)
        let card = try inTmp(["card", "e", "-o", " ", "--zoo", zoo])
        XCTAssertEqual(card.status, 0, card.stderr)
        XCTAssertTrue(card.stdout.hasPrefix("wrote ' ' (model card of entry "), card.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("a").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent(" ").path))
    }

    /// `--zoo ''` (an unset variable) was read as the default `./zoo`.
    func testAnEmptyZooPathIsRefused() throws {
        try entry()
        // In the scratch folder, whose ./zoo is the test's zoo: the default it was read as.
        for args in [["show", "e"], ["list"], ["gc"], ["runs"]] {
            let r = try BisslBinary.run(["-c", "cd \"$0\" && exec \"$@\"", tmp.path, BisslBinary.url!.path] + args + ["--zoo", ""],
                                        executable: URL(fileURLWithPath: "/bin/sh"))
            assertOneLineError((r.status, r.stdout, r.stderr), "error: --zoo '': the path is empty")
        }
    }

    /// `BISSL_ZOO=` (set to nothing) was read as the default `./zoo`, while `--zoo ''` was refused.
    func testAnEmptyBisslZooVariableIsRefused() throws {
        try entry()
        // In the scratch folder, whose ./zoo is the test's zoo: the default it was read as.
        func inTmp(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            let r = try BisslBinary.run(["-c", "cd \"$0\" && BISSL_ZOO= exec \"$@\"", tmp.path, BisslBinary.url!.path] + args,
                                        executable: URL(fileURLWithPath: "/bin/sh"))
            return (r.status, r.stdout, r.stderr)
        }
        for args in [["show", "e"], ["list"], ["gc"], ["runs"]] {
            assertOneLineError(try inTmp(args), "error: BISSL_ZOO is set but empty (an unset shell variable?); set it to the zoo's folder, or unset it to use ./zoo")
        }
        // --zoo given: the variable is not used.
        let given = try inTmp(["show", "e", "--zoo", zoo])
        XCTAssertEqual(given.status, 0, given.stderr)
    }

    /// `runs rm PATH` deleted any folder a path named, run or not.
    func testRunsRmDeletesOnlyRunsOfTheZoo() throws {
        try entry()
        let victim = tmp.appendingPathComponent("precious")
        try FileManager.default.createDirectory(at: victim, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: victim.appendingPathComponent("file"))
        for arg in [victim.path, zooDir.appendingPathComponent("runs/../../precious").path, zooDir.path] {
            assertOneLineError(try bissl(["runs", "rm", "--force", arg]), "is not a run of the zoo at \(zoo)")
        }
        XCTAssertEqual(try String(contentsOf: victim.appendingPathComponent("file"), encoding: .utf8), "keep")
        XCTAssertTrue(FileManager.default.fileExists(atPath: zooDir.appendingPathComponent("catalog.sqlite").path) || Zoo.isZoo(ZooLayout(root: zooDir)))
    }
}
