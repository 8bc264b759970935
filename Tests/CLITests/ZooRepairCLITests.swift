import Checkpoint
import Foundation
import XCTest
import Zoo
import TestSupport

/// What `verify`, `gc` and a re-import say and do after damage to a zoo, through the binary.
final class ZooRepairCLITests: CLITestCase {
    /// A source file to import (`resnet18_w2.pth` as bissl HDF5) and its entry's content id.
    private func importSource(_ extra: [String]) throws -> (file: String, id: String) {
        let file = tmp.appendingPathComponent("src.h5").path
        XCTAssertEqual(try Fixtures.runBissl(["convert", Fixtures.url("pth/resnet18_w2.pth").path, file]).status, 0)
        let r = try bissl(["import", file] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        return (file, String(r.stdout.prefix(64)))
    }

    func testReimportingAnEntryGCUnlistedAsDamagedBringsItsNameBack() throws {
        let (file, id) = try importSource(["--name", "mine", "--tag", "v1"])
        unlink(ZooLayout(root: zooDir).objectURL(id).path)
        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("unlisted damaged entry \(id.prefix(12)) (object file is missing)"), gc.stdout)
        let again = try bissl(["import", file])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("imported \(id.prefix(12)) (mine): "), again.stdout)
        XCTAssertTrue(again.stdout.contains("  restored mine, v1: the labels this content had before bissl gc unlisted it as damaged"), again.stdout)
        XCTAssertEqual(try bissl(["show", "v1"]).status, 0)
    }

    /// gc judges what it finds in refs/, tmp/ and objects/ as the zoo's own: through a symbolic link
    /// it would delete another folder's files, so it refuses before touching anything.
    func testGCRefusesAZooFolderThatIsASymbolicLinkAndDeletesNothing() throws {
        _ = try importSource(["--name", "mine", "--tag", "v1"])
        let decoy = tmp.appendingPathComponent("decoy", isDirectory: true)
        for folder in ["refs/tags", "tmp"] {
            try? FileManager.default.removeItem(at: decoy)
            try FileManager.default.createDirectory(at: decoy, withIntermediateDirectories: false)
            let precious = decoy.appendingPathComponent("important.txt")
            try Data("precious\n".utf8).write(to: precious)
            let link = zooDir.appendingPathComponent(folder)
            let moved = zooDir.appendingPathComponent(folder + ".orig")
            try FileManager.default.moveItem(at: link, to: moved)
            try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: decoy.path)
            let gc = try bissl(["gc"])
            XCTAssertNotEqual(gc.status, 0, gc.stdout)
            XCTAssertEqual(gc.stderr, "error: bissl gc refused: \(link.path) is a symbolic link (to \(decoy.path)); it removes files only in the zoo's own folders: put the folder itself there\n")
            XCTAssertEqual(try Data(contentsOf: precious), Data("precious\n".utf8), folder)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: decoy.path), ["important.txt"], folder)
            unlink(link.path)
            try FileManager.default.moveItem(at: moved, to: link)
        }
        XCTAssertEqual(try bissl(["gc"]).status, 0)
    }

    /// A folder where a held label's ref file belongs: gc replaces an empty one and names a full one.
    func testGCReplacesAnEmptyFolderWhereARefBelongsAndNamesAFullOne() throws {
        _ = try importSource(["--name", "mine", "--tag", "v1"])
        let ref = zooDir.appendingPathComponent("refs/tags/v1")
        unlink(ref.path)
        try FileManager.default.createDirectory(at: ref, withIntermediateDirectories: false)
        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertEqual(try bissl(["show", "v1"]).status, 0)
        XCTAssertTrue(gc.stdout.contains("rewrote ref \(ref.path)"), gc.stdout)
        let verify = try bissl(["verify"]).stdout
        XCTAssertTrue(verify.contains("0 problems, 0 warnings, 0 leftovers"), verify)

        unlink(ref.path)
        try FileManager.default.createDirectory(at: ref, withIntermediateDirectories: false)
        try Data("x".utf8).write(to: ref.appendingPathComponent("keep.txt"))
        let full = try bissl(["gc"])
        XCTAssertNotEqual(full.status, 0)
        XCTAssertTrue(full.stdout.contains("failed: cannot write the ref file \(ref.path): a folder with files is there (bissl never makes one); move it away and run again\n"), full.stdout)
        XCTAssertEqual(full.stderr, "error: gc could not do 1 thing (the failed: lines above); everything else above was done\n")
        XCTAssertTrue(FileManager.default.fileExists(atPath: ref.appendingPathComponent("keep.txt").path))
    }

    /// A ref file holding garbage is reported for what it is, and kept: bissl cannot tell it wrote it.
    /// (gc removed it as an "invalid ref file".)
    func testVerifyAndGCCallARefFileHoldingGarbageInvalidAndKeepIt() throws {
        _ = try importSource(["--name", "mine"])
        let junk = zooDir.appendingPathComponent("refs/names/junk")
        try Data("hello world\n".utf8).write(to: junk)
        let reason = "not a ref file bissl writes (it holds 'hello world', not an entry id; a ref file is one line, an entry's full 64-hex id): gc never removes it; move it out of the zoo if it is yours, else remove it by hand"
        let verify = try bissl(["verify"])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        XCTAssertTrue(verify.stdout.contains("leftover: \(junk.path): \(reason)\n"), verify.stdout)
        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("kept \(junk.path): \(reason)\n"), gc.stdout)
        XCTAssertFalse(gc.stdout.contains("stray"), gc.stdout)
        XCTAssertEqual(try String(contentsOf: junk, encoding: .utf8), "hello world\n")
    }

    /// A symbolic link in refs/ is never read through, and kept, also where a held label's ref belongs
    /// (gc removed the one and replaced the other with a rewritten ref).
    func testAnInvalidRefHoldingAnIdIsNamedByItsPathAndASymlinkedRefIsNeverReadThroughNorRemoved() throws {
        let (_, id) = try importSource(["--name", "mine"])
        let badName = zooDir.appendingPathComponent("refs/tags/-x")
        try Data((id + "\n").utf8).write(to: badName)
        let outside = tmp.appendingPathComponent("secret.txt")
        try Data("root:x:0:0:root:/root:/bin/bash\n".utf8).write(to: outside)
        let link = zooDir.appendingPathComponent("refs/tags/pw")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: outside.path)
        let heldLink = zooDir.appendingPathComponent("refs/names/mine")   // a held label's ref made a link
        unlink(heldLink.path)
        try FileManager.default.createSymbolicLink(atPath: heldLink.path, withDestinationPath: outside.path)

        let linkReason = "not a ref file bissl writes (it is a symbolic link to '\(outside.path)', not a ref file (bissl never reads through one)): gc never removes it; move it out of the zoo if it is yours, else remove it by hand"
        let heldReason = "not a ref file bissl writes (it is a symbolic link to '\(outside.path)', not a ref file (bissl never reads through one)): gc never removes it; move it out of the zoo if it is yours and run bissl gc again (it rewrites the ref of name 'mine'); to drop the name instead, bissl untag mine (which keeps this file) and remove the file by hand"
        let verify = try bissl(["verify"])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        XCTAssertTrue(verify.stdout.contains("leftover: \(badName.path): not a ref file bissl writes (its name is not a valid label"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("leftover: \(link.path): \(linkReason)\n"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("leftover: \(id.prefix(12)): name 'mine': \(heldReason)\n"), verify.stdout)
        XCTAssertFalse(verify.stdout.contains("root:x"), verify.stdout)

        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("kept \(link.path): \(linkReason)\n"), gc.stdout)
        XCTAssertTrue(gc.stdout.contains("kept \(heldLink.path): \(heldReason)\n"), gc.stdout)
        XCTAssertFalse(gc.stdout.contains("rewrote"), gc.stdout)
        XCTAssertFalse(gc.stdout.contains("root:x"), gc.stdout)
        XCTAssertEqual(try String(contentsOf: outside, encoding: .utf8), "root:x:0:0:root:/root:/bin/bash\n", "never written through")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: heldLink.path), outside.path)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link.path), outside.path)
        XCTAssertEqual(try bissl(["show", "mine"]).status, 0, "the name stays in the catalog")

        // The user removes the held label's link; gc rewrites its ref.
        XCTAssertEqual(unlink(heldLink.path), 0)
        XCTAssertTrue(try bissl(["gc"]).stdout.contains("rewrote ref \(heldLink.path)"))
        XCTAssertEqual(try String(contentsOf: heldLink, encoding: .utf8), id + "\n")
    }
}
