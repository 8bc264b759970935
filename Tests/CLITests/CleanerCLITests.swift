import Checkpoint
import Foundation
import XCTest
import Zoo
@testable import Training
import TestSupport

/// Cleaners of abandoned temporaries (convert's, gc's) remove only what bissl's writers make, name what
/// they keep, and print every removal.
final class CleanerCLITests: CLITestCase {
    private var layout: ZooLayout { ZooLayout(root: zooDir) }

    private func source() throws -> URL {
        let file = tmp.appendingPathComponent("src.h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 1)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: file)
        return file
    }

    private func write(_ text: String, _ url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    /// A user's folder named like the output's temporary is not removed, nor anything in it.
    func testConvertKeepsAUsersFolderNamedLikeItsTemporaryAndSaysSo() throws {
        let input = try source()
        let folder = tmp.appendingPathComponent(".out.h5.tmp-\(try LockHolder.endedPID())-1")
        try write("mine\n", folder.appendingPathComponent("notes.txt"))
        let r = try Fixtures.runBissl(["convert", input.path, tmp.appendingPathComponent("out.h5").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try String(contentsOf: folder.appendingPathComponent("notes.txt"), encoding: .utf8), "mine\n")
        XCTAssertTrue(r.stdout.contains("note: kept \(folder.path), named like a temporary of this output: it is a folder"), r.stdout)
    }

    /// An output name of NAME_MAX (255) bytes is valid: its temporary's name is shortened to fit.
    func testConvertWritesAnOutputNamedWith255Bytes() throws {
        let input = try source()
        for ext in ["h5", "pth", "safetensors"] {
            let name = String(repeating: "m", count: 255 - ext.count - 1) + "." + ext
            let r = try Fixtures.runBissl(["convert", input.path, tmp.appendingPathComponent(name).path])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent(name).path), ext)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path).filter { $0.hasPrefix(".") }, [])
    }

    /// gc removes a dead writer's unlocked temporary, keeps a locked one (a writer in another pid
    /// namespace), and keeps and names what no writer makes: a user's files and folders in tmp/ and
    /// objects/, a folder named like a temporary.
    func testGCRemovesOnlyWritersTemporariesAndNamesWhatItKeeps() throws {
        let r0 = try bissl(["import", try source().path, "--name", "e"])
        XCTAssertEqual(r0.status, 0, r0.stderr)
        let dead = try LockHolder.endedPID()
        let abandoned = layout.tmp.appendingPathComponent(".staged.h5.tmp-\(dead)-1")
        try write("x", abandoned)
        let writing = layout.tmp.appendingPathComponent(".staged.h5.tmp-\(dead)-2")
        try write("y", writing)
        let holder = try LockHolder(writing)
        defer { holder.stop() }
        let foreign = [
            layout.tmp.appendingPathComponent("README.txt"),
            layout.tmp.appendingPathComponent("mine/notes.txt"),
            layout.tmp.appendingPathComponent(".x.tmp-\(dead)-3/notes.txt"),
            layout.objects.appendingPathComponent("README.txt"),
            layout.objects.appendingPathComponent("ab/notes.h5"),
            layout.tombstones.appendingPathComponent("notes.json"),
        ]
        for url in foreign { try write("mine\n", url) }

        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: abandoned.path))
        XCTAssertTrue(gc.stdout.contains("removed leftover \(abandoned.path)\n"), gc.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: writing.path), "a writer holds its lock")
        XCTAssertFalse(gc.stdout.contains(writing.path), gc.stdout)
        for url in foreign {
            XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "mine\n", url.path)
        }
        for path in [foreign[0].path, layout.tmp.appendingPathComponent("mine").path, layout.tmp.appendingPathComponent(".x.tmp-\(dead)-3").path,
                     foreign[3].path, foreign[4].path, foreign[5].path] {
            XCTAssertTrue(gc.stdout.contains("kept \(path): "), "\(path) in: \(gc.stdout)")
        }
        XCTAssertTrue(gc.stdout.contains("removed 1 file, "), gc.stdout)

        let verify = try bissl(["verify"])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        XCTAssertTrue(verify.stdout.contains("leftover: \(foreign[0].path): a file that no bissl writer makes here"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("leftover: \(layout.tmp.appendingPathComponent("mine").path): a folder that no bissl writer makes here"), verify.stdout)
        XCTAssertEqual(try bissl(["show", "e"]).status, 0)
    }

    /// What an interrupted pull keeps is not locked: gc removes it only once it is older than the
    /// grace period, and a pull folder only when it holds nothing but what a pull writes there.
    func testGCRemovesAnInterruptedPullsFolderOnlyAfterTheGracePeriodAndOnlyWithAPullsFiles() throws {
        XCTAssertEqual(try bissl(["import", try source().path]).status, 0)
        let dead = try LockHolder.endedPID()
        let sha = String(repeating: "a", count: 64)
        let pull = layout.tmp.appendingPathComponent("\(sha).\(dead).pull")
        try write("partial", pull.appendingPathComponent("object.h5"))
        try write("{not a record", pull.appendingPathComponent("record.json"))
        let other = layout.tmp.appendingPathComponent("\(String(repeating: "b", count: 64)).\(dead).pull")
        try write("mine\n", other.appendingPathComponent("notes.txt"))

        let young = try bissl(["gc"])
        XCTAssertEqual(young.status, 0, young.stderr)
        XCTAssertTrue(young.stdout.contains("kept \(pull.path): an interrupted transfer that changed within the grace period"), young.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: pull.appendingPathComponent("object.h5").path))

        let old = try bissl(["gc", "--grace", "0"])
        XCTAssertEqual(old.status, 0, old.stderr)
        XCTAssertTrue(old.stdout.contains("removed leftover \(pull.path)\n"), old.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pull.path))
        XCTAssertTrue(old.stdout.contains("kept \(other.path): its folder holds notes.txt") || old.stdout.contains("kept \(other.path): it is a folder holding notes.txt"), old.stdout)
        XCTAssertEqual(try String(contentsOf: other.appendingPathComponent("notes.txt"), encoding: .utf8), "mine\n")
    }

    /// gc keeps what it finds in refs/ that is not a ref file as bissl writes them (a user's notes under
    /// a valid label's name, a symbolic link, a folder, a file beside names/ and tags/), prints each as
    /// `kept PATH: reason`, and list and show of the zoo's entries still work beside them. (gc removed
    /// notes.txt and the link as "invalid ref files", and neither removed nor named the folder or README.)
    func testGCKeepsAndNamesWhatRefsHoldsThatIsNoRefFileAndListAndShowStillWork() throws {
        XCTAssertEqual(try bissl(["import", try source().path, "--name", "mine"]).status, 0)
        let notes = layout.refs.appendingPathComponent("names/notes.txt")
        try write("remember to tag the teacher\n", notes)
        let readme = layout.refs.appendingPathComponent("README.txt")
        try write("what these are\n", readme)
        let folder = layout.refs.appendingPathComponent("names/sub", isDirectory: true)
        try write("x\n", folder.appendingPathComponent("inner.txt"))
        let outside = tmp.appendingPathComponent("elsewhere.txt")
        try write("outside\n", outside)
        let link = layout.refs.appendingPathComponent("tags/link")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: outside.path)

        for command in [["list"], ["show", "mine"], ["lineage", "mine"]] {
            let r = try bissl(command)
            XCTAssertEqual(r.status, 0, "\(command): \(r.stderr)")
            XCTAssertEqual(r.stderr, "", "\(command)")
        }
        let verify = try bissl(["verify"])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        for (url, problem) in [(notes, "it holds 'remember to tag the teac...', not an entry id; a ref file is one line, an entry's full 64-hex id"),
                               (folder, "it is a folder"),
                               (link, "it is a symbolic link to '\(outside.path)', not a ref file (bissl never reads through one)")] {
            let reason = "not a ref file bissl writes (\(problem)): gc never removes it; move it out of the zoo if it is yours, else remove it by hand"
            XCTAssertTrue(gc.stdout.contains("kept \(url.path): \(reason)\n"), gc.stdout)
            XCTAssertTrue(verify.stdout.contains("leftover: \(url.path): \(reason)\n"), verify.stdout)
        }
        XCTAssertTrue(gc.stdout.contains("kept \(readme.path): a file that no bissl writer makes here"), gc.stdout)
        XCTAssertTrue(verify.stdout.contains("leftover: \(readme.path): a file that no bissl writer makes here"), verify.stdout)
        XCTAssertTrue(gc.stdout.hasSuffix("removed 0 files, 0 B of disk\n"), gc.stdout)
        XCTAssertEqual(try String(contentsOf: notes, encoding: .utf8), "remember to tag the teacher\n")
        XCTAssertEqual(try String(contentsOf: readme, encoding: .utf8), "what these are\n")
        XCTAssertEqual(try String(contentsOf: folder.appendingPathComponent("inner.txt"), encoding: .utf8), "x\n")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link.path), outside.path)
        XCTAssertEqual(try bissl(["show", "mine"]).status, 0)
    }

    /// `tag` and `import --name` replaced what refs/ held at the label's path: a user's file under a
    /// valid label's name was overwritten, a symbolic link removed. They refuse now, with one line,
    /// and keep it; a stray ref (an interrupted tag's, holding an id) is still replaced.
    func testTagAndImportKeepAUsersFileWhereTheLabelsRefWouldGo() throws {
        XCTAssertEqual(try bissl(["import", try source().path, "--name", "mine"]).status, 0)
        let notes = layout.refs.appendingPathComponent("tags/notes.txt")
        try write("remember to tag the teacher\n", notes)
        let outside = tmp.appendingPathComponent("elsewhere.txt")
        try write("outside\n", outside)
        let link = layout.refs.appendingPathComponent("names/linked")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: outside.path)

        assertOneLineError(try bissl(["tag", "mine", "notes.txt"]),
                           "error: cannot write the ref file \(notes.path): a file that is not a ref file bissl writes is there (it holds 'remember to tag the teac...', not an entry id;")
        XCTAssertEqual(try String(contentsOf: notes, encoding: .utf8), "remember to tag the teacher\n")
        let other = tmp.appendingPathComponent("other.h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 2)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: other)
        assertOneLineError(try bissl(["import", other.path, "--name", "linked"]),
                           "error: cannot write the ref file \(link.path): a file that is not a ref file bissl writes is there (it is a symbolic link to '\(outside.path)'")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link.path), outside.path)
        XCTAssertEqual(try String(contentsOf: outside, encoding: .utf8), "outside\n")
        XCTAssertFalse(try bissl(["list"]).stdout.contains("linked"), "the import left no entry")

        let stray = layout.refs.appendingPathComponent("tags/v2")
        try write(String(repeating: "a", count: 64) + "\n", stray)
        let tagged = try bissl(["tag", "mine", "v2"])
        XCTAssertEqual(tagged.status, 0, tagged.stderr)
        XCTAssertEqual(try bissl(["show", "v2"]).status, 0)
    }

    /// untag and rm remove a label's ref file only when it is the one bissl writes (the entry's full
    /// id): a user's notes at its path are kept and named in one warning line, the label still goes.
    /// (Both deleted the notes and said only "removed".)
    func testUntagAndRmKeepAUsersFileAtALabelsRefPathAndSaySo() throws {
        XCTAssertEqual(try bissl(["import", try source().path, "--name", "r18_small", "--tag", "mytag", "--tag", "v1"]).status, 0)
        let tagRef = layout.refURL("mytag", kind: .tag)
        try write("my notes\n", tagRef)
        let untag = try bissl(["untag", "mytag"])
        XCTAssertEqual(untag.status, 0, untag.stderr)
        XCTAssertTrue(untag.stdout.contains("\nwarning: kept \(tagRef.path): not a ref file bissl writes (it holds 'my notes', not an entry id;"), untag.stdout)
        XCTAssertEqual(untag.stdout.split(separator: "\n").count, 2, untag.stdout)
        XCTAssertEqual(try String(contentsOf: tagRef, encoding: .utf8), "my notes\n")
        XCTAssertNotEqual(try bissl(["show", "mytag"]).status, 0, "the tag is gone from the catalog")

        let nameRef = layout.refURL("r18_small", kind: .name)
        try write("notes\n", nameRef)
        let rm = try bissl(["rm", "r18_small"])
        XCTAssertEqual(rm.status, 0, rm.stderr)
        XCTAssertTrue(rm.stdout.contains("\nwarning: kept \(nameRef.path): not a ref file bissl writes (it holds 'notes', not an entry id;"), rm.stdout)
        XCTAssertEqual(try String(contentsOf: nameRef, encoding: .utf8), "notes\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: layout.refURL("v1", kind: .tag).path), "its own ref file is removed")
        XCTAssertEqual(try bissl(["list"]).stdout.contains("r18_small"), false)
    }

    /// A valid ref file (the full id of a listed entry, also with CRLF) of a label the catalog lacks
    /// (an interrupted tag): ref files are the record of labels, so gc adds the label, as verify
    /// --reindex does, and verify says so. (gc deleted it as a "stray ref" while reindex adopted it.)
    func testGCAddsTheLabelOfAValidRefTheCatalogLacksAsReindexDoes() throws {
        XCTAssertEqual(try bissl(["import", try source().path, "--name", "mine"]).status, 0)
        let id = try String(contentsOf: layout.refURL("mine", kind: .name), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let valid = layout.refURL("validtag", kind: .tag)
        try write(id + "\r\n", valid)
        let verify = try bissl(["verify"])
        XCTAssertTrue(verify.stdout.contains("ref file of tag 'validtag', a label the catalog does not hold (interrupted import or tag); bissl gc adds it to the catalog, as bissl verify --reindex does"), verify.stdout)
        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("added the label of ref \(valid.path) to the catalog"), gc.stdout)
        XCTAssertFalse(gc.stdout.contains("stray"), gc.stdout)
        XCTAssertEqual(try String(contentsOf: valid, encoding: .utf8), id + "\r\n")
        XCTAssertEqual(try bissl(["show", "validtag"]).status, 0)
        XCTAssertFalse(try bissl(["gc"]).stdout.contains("validtag"), "nothing left to do")
    }

    /// A refs/ folder that is a symbolic link: tag, untag, rm and import refuse in one line, as gc
    /// does, and change nothing on either side; verify names the link. (tag and untag wrote and
    /// removed through it, and verify said gc removes what it holds.)
    func testLabelWritersRefuseASymlinkedRefsFolder() throws {
        XCTAssertEqual(try bissl(["import", try source().path, "--name", "mine", "--tag", "v1"]).status, 0)
        let folder = layout.refs.appendingPathComponent("tags", isDirectory: true)
        let decoy = tmp.appendingPathComponent("decoy", isDirectory: true)
        try FileManager.default.moveItem(at: folder, to: decoy)   // decoy/v1 is v1's valid ref
        try FileManager.default.createSymbolicLink(atPath: folder.path, withDestinationPath: decoy.path)
        let refusal = "error: refused: \(folder.path) is a symbolic link (to \(decoy.path)); bissl writes and removes labels' ref files only in the zoo's own refs/ folders: put the folder itself there"
        assertOneLineError(try bissl(["tag", "mine", "v2"]), refusal)
        assertOneLineError(try bissl(["untag", "v1"]), refusal)
        assertOneLineError(try bissl(["rm", "mine"]), refusal)
        let other = tmp.appendingPathComponent("other.h5")
        try CheckpointFile.write(Network(architecture: Architecture(depth: 18, block: "basic", layers: [2, 2, 2, 2], width: 2, stem: "small"), seed: 2)
            .checkpoint(provenance: Provenance(stage: "pretext", method: "simclr")), to: other)
        assertOneLineError(try bissl(["import", other.path, "--tag", "v3"]), refusal)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: decoy.path), ["v1"])
        let list = try bissl(["list"]).stdout
        XCTAssertTrue(list.contains("mine"), list)
        XCTAssertEqual(list.split(separator: "\n").count, 2, "the import left no entry: \(list)")
        XCTAssertEqual(try bissl(["show", "v1"]).status, 0)
        let verify = try bissl(["verify"])
        XCTAssertTrue(verify.stdout.contains("a symbolic link (to \(decoy.path)) where the zoo's own folder belongs: bissl gc, tag, untag, rm, import and pull refuse to change files through it"), verify.stdout)
        XCTAssertFalse(verify.stdout.contains("gc removes it"), verify.stdout)
    }

    /// One thing gc cannot do (a ref file it cannot write) does not hide what it did: every removal
    /// is printed, then the failure, and gc exits non-zero.
    func testGCPrintsEveryRemovalWhenSomethingElseFails() throws {
        XCTAssertEqual(try bissl(["import", try source().path, "--tag", "v1"]).status, 0)
        let stray = layout.refs.appendingPathComponent("tags/gone")   // an interrupted tag's ref file
        try write(String(repeating: "a", count: 64) + "\n", stray)
        let ref = layout.refs.appendingPathComponent("tags/v1")
        unlink(ref.path)
        try write("mine\n", ref.appendingPathComponent("notes.txt"))   // a folder with a file where v1's ref belongs

        let gc = try bissl(["gc"])
        XCTAssertNotEqual(gc.status, 0)
        XCTAssertTrue(gc.stdout.contains("removed stray ref \(stray.path)\n"), gc.stdout)
        XCTAssertTrue(gc.stdout.contains("failed: cannot write the ref file \(ref.path): a folder with files is there"), gc.stdout)
        XCTAssertEqual(gc.stderr, "error: gc could not do 1 thing (the failed: lines above); everything else above was done\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: stray.path))
        XCTAssertEqual(try String(contentsOf: ref.appendingPathComponent("notes.txt"), encoding: .utf8), "mine\n")
    }

    /// The bytes gc reports are the space it freed: a sparse file of 3 GB occupies almost none.
    func testGCCountsTheSpaceASparseFileOccupied() throws {
        XCTAssertEqual(try bissl(["import", try source().path]).status, 0)
        let sparse = layout.tmp.appendingPathComponent(".staged.h5.tmp-\(try LockHolder.endedPID())-1")   // a dead writer's temporary
        try write("", sparse)
        XCTAssertEqual(truncate(sparse.path, 3_000_000_000), 0)
        var info = stat()
        XCTAssertEqual(lstat(sparse.path, &info), 0)
        let allocated = Int64(info.st_blocks) * 512
        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("removed leftover \(sparse.path)\n"), gc.stdout)
        XCTAssertTrue(gc.stdout.hasSuffix("removed 1 file, \(allocated) B of disk\n"), "\(allocated) B allocated: \(gc.stdout)")
    }

    /// runs prune drops a completed run's state and dead writers' temporaries: a folder named like
    /// a temporary in the run's directory is not one, and stays with what it holds.
    func testRunsPruneKeepsAFolderNamedLikeATemporaryInACompletedRun() throws {
        XCTAssertEqual(try bissl(["import", try source().path]).status, 0)
        let run = zooDir.appendingPathComponent("runs/r1", isDirectory: true)
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        let record: [String: Any] = [
            "id": "r1", "kind": "pretrain", "status": "completed", "config": [String: String](), "commandLine": ["bissl", "pretrain"],
            "startedAt": "2026-11-29T10:00:00Z", "updatedAt": "2026-11-29T10:00:00Z", "totalSteps": 10, "step": 10,
            "durationSeconds": 1.0, "segments": 1, "resumeCommandLines": [[String]](),
        ]
        try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]).write(to: run.appendingPathComponent("run.json"))
        let dead = try LockHolder.endedPID()
        let temporary = run.appendingPathComponent(".state.h5.tmp-\(dead)-1")
        try write("partial", temporary)
        let folder = run.appendingPathComponent(".notes.tmp-\(dead)-2", isDirectory: true)
        try write("mine\n", folder.appendingPathComponent("notes.txt"))
        let r = try bissl(["runs", "prune"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary.path), r.stdout)
        XCTAssertEqual(try String(contentsOf: folder.appendingPathComponent("notes.txt"), encoding: .utf8), "mine\n")
    }

    /// A SIGKILL while `run.json` was being replaced after a save leaves `state.h5` one save ahead
    /// of run.json and the writer's `.run.json.tmp-PID-N`: `runs`, `runs show` and `runs rm` give the
    /// step a resume continues from (state.h5's), `verify` counts the temporary as a leftover and
    /// `gc` removes it, keeping the interrupted run's state (fails before: `8/20 (saved 4)`,
    /// "0 leftovers", nothing removed).
    func testAStateSavedAheadOfRunJSONIsTheSavedStepAndTheDeadWritersRecordTemporaryIsALeftover() throws {
        XCTAssertEqual(try bissl(["import", try source().path]).status, 0)
        let zoo = try Zoo.open(layout)
        // The run object is dropped at the end of the closure, as when its process ends: its lock is free.
        let (id, directory): (String, URL) = try {
            let run = try Run.create(zoo: zoo, kind: "pretrain", config: [:], commandLine: ["bissl", "pretrain"], totalSteps: 20,
                                     progress: ProgressReporter(total: 20, mode: .none, write: { _ in }, now: { 0 }))
            for step in 1...8 { run.log(step: step, phase: "pretext", ["loss": 1]) }
            try run.saveState(TrainingState(step: 4))
            try TrainingState(step: 8).write(to: run.stateURL)   // the next save's state.h5, then the kill
            return (run.id, run.directory)
        }()
        try zoo.close()
        let temporary = directory.appendingPathComponent(".run.json.tmp-\(try LockHolder.endedPID())-1")
        try write("{\"id\":", temporary)

        let list = try bissl(["runs"])
        XCTAssertTrue(list.stdout.contains("8/20"), list.stdout)
        XCTAssertFalse(list.stdout.contains("saved 4"), list.stdout)
        let show = try bissl(["runs", "show", id])
        XCTAssertTrue(show.stdout.contains("8/20 logged, 8 in the last saved state"), show.stdout)
        let rm = try bissl(["runs", "rm", id])
        XCTAssertTrue(rm.stderr.contains("interrupted at step 8/20"), rm.stderr)

        let verify = try bissl(["verify"])
        XCTAssertTrue(verify.stdout.contains("leftover: \(temporary.path): temporary of a writer that did not finish (run \(id))"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("1 leftover"), verify.stdout)
        let gc = try bissl(["gc"])
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("removed leftover \(temporary.path)"), gc.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory.appendingPathComponent(Run.stateFileName).path), "an interrupted run keeps its state")
        XCTAssertTrue(try bissl(["verify"]).stdout.contains("0 leftovers"))
    }
}
