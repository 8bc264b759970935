import Checkpoint
import Foundation

/// The ref files under `refs/names` and `refs/tags`: each holds one line, the full id of the entry the
/// label points to. They are the durable record of labels (the catalog's `labels` table indexes them).
enum RefFiles {
    /// Writes `refs/<kind>/<label>` atomically, replacing a ref file as bissl writes them (one full
    /// id: a stray ref of an interrupted writer). Anything else of that name is a file bissl did not
    /// write (a user's `notes.txt`, a symbolic link, which `AtomicFile` would write through): it is
    /// kept and the write refused, as `gc` keeps it. An empty folder of that name (never one bissl
    /// made, and holding nothing) is replaced; a folder holding files is not.
    /// - Throws: `ZooError.io` when such a file or a folder holding files is there, or the empty
    ///   folder cannot be removed; `ZooError.unsupported` when `refs/` or `refs/<kind>` is a symbolic
    ///   link (`ZooLayout.requireOwnRefFolders`).
    static func write(_ label: String, kind: LabelKind, id: String, layout: ZooLayout) throws {
        try layout.requireOwnRefFolders()
        let url = layout.refURL(label, kind: kind)
        var info = stat()
        if lstat(url.path, &info) == 0, info.st_mode & S_IFMT != S_IFDIR, let problem = read(url, label: label).problem {
            throw ZooError.io("cannot write the ref file \(url.path): a file that is not a ref file bissl writes is there (\(problem)); move it out of the zoo and run again")
        }
        if lstat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, rmdir(url.path) != 0, errno != ENOENT {
            throw ZooError.io(errno == ENOTEMPTY || errno == EEXIST
                ? "cannot write the ref file \(url.path): a folder with files is there (bissl never makes one); move it away and run again"
                : "cannot replace the folder \(url.path): \(String(cString: strerror(errno)))")
        }
        try AtomicFile.write(Data((id + "\n").utf8), to: url)
    }

    /// Removes `refs/<kind>/<label>` when it is the ref file bissl writes for entry `id` (one line,
    /// `id`); a missing file is not an error. Anything else there (a user's notes, a symbolic link, a
    /// folder, another entry's id) is kept, as `gc` keeps it.
    /// - Returns: nil when the file is gone (or was not there); else the file kept: its path and why,
    ///   a clause that says what the user can do.
    /// - Throws: `ZooError.io` when the ref file cannot be removed; `ZooError.unsupported` when
    ///   `refs/` or `refs/<kind>` is a symbolic link (`ZooLayout.requireOwnRefFolders`).
    @discardableResult
    static func remove(_ label: String, kind: LabelKind, id: String, layout: ZooLayout) throws -> KeptRef? {
        try layout.requireOwnRefFolders()
        let url = layout.refURL(label, kind: kind)
        var info = stat()
        guard lstat(url.path, &info) == 0 else { return nil }
        let (held, problem) = read(url, label: label)
        if let problem {
            return KeptRef(path: url.path, reason: "not a ref file bissl writes (\(problem)), so it stays; move it out of the zoo if it is yours, else remove it by hand")
        }
        if held != id {
            let other = held.map { String($0.prefix(12)) } ?? "?"
            return KeptRef(path: url.path, reason: "it names entry \(other), not \(id.prefix(12)), so it stays; bissl gc gives \(other) this \(kind.rawValue) when the zoo lists it (else removes the file), or remove it by hand")
        }
        if unlink(url.path) != 0 && errno != ENOENT {
            throw ZooError.io("cannot remove \(url.path): \(String(cString: strerror(errno)))")
        }
        return nil
    }

    /// Every ref file: label, kind, the id it holds (nil when the file does not hold a full id) and,
    /// for a file that is not a valid ref at all, what is wrong with it (`problem`).
    static func all(layout: ZooLayout) -> [(label: String, kind: LabelKind, id: String?, url: URL, problem: String?)] {
        var out: [(String, LabelKind, String?, URL, String?)] = []
        for kind in LabelKind.allCases {
            let dir = layout.refs.appendingPathComponent(kind.directory, isDirectory: true)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            for name in names.sorted() where !name.hasPrefix(".") {
                let url = dir.appendingPathComponent(name)
                let (id, problem) = read(url, label: name)
                out.append((name, kind, id, url, problem))
            }
        }
        return out
    }

    /// Bytes read of a ref file at most: a ref is 65 (64 hex digits and a line feed).
    static let readLimit = 4096

    /// The id a ref file holds, and why it is not a valid ref (a clause: `it is a folder`, `it is a
    /// symbolic link to x`, `its name is not a valid label (...)`, `it holds 'x', not an entry id; ...`):
    /// bissl writes `<64 lowercase hex>\n` under a file name that is a valid label (`LabelRules`), so
    /// anything else was put there by hand or by another program. A symbolic link is never read
    /// through (it may lead to any file of the machine, whose first bytes a report would show): its
    /// problem names where it points, by name only.
    static func read(_ url: URL, label: String) -> (id: String?, problem: String?) {
        let fd = open(url.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = errno
            var info = stat()
            if lstat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
                return (nil, "it is a symbolic link to \(linkTarget(url)), not a ref file (bissl never reads through one)")
            }
            return (nil, "it cannot be read (\(String(cString: strerror(reason))))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return (nil, "it cannot be read (\(String(cString: strerror(errno))))") }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: return (nil, "it is a folder")
        default: return (nil, "it is not a regular file")
        }
        let problem: String? = (try? LabelRules.validate(label)) != nil ? nil
            : "its name is not a valid label (1-100 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit, not 6 or more hex digits only)"
        guard Int(info.st_size) <= readLimit else {
            return (nil, problem ?? "it holds \(info.st_size) bytes; a ref file is one line, an entry's full 64-hex id")
        }
        var bytes = [UInt8](repeating: 0, count: readLimit + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { readBytes(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return (nil, problem ?? "it cannot be read (\(String(cString: strerror(errno))))") }
            if n == 0 { break }
            count += n
        }
        let text = String(decoding: bytes[0..<min(count, readLimit)], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard ZooLayout.isFullID(text) else {
            let shown = text.isEmpty ? "nothing" : "'\(String(text.prefix(24)).escapingControlCharacters)\(text.count > 24 ? "..." : "")'"
            return (nil, problem ?? "it holds \(shown), not an entry id; a ref file is one line, an entry's full 64-hex id")
        }
        return (text, problem)
    }

    /// What the symbolic link `url` holds (the path it points to, not read), quoted, control
    /// characters escaped, at most 200 characters.
    private static func linkTarget(_ url: URL) -> String {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path) else { return "a path that cannot be read" }
        return "'\(String(target.prefix(200)).escapingControlCharacters)\(target.count > 200 ? "..." : "")'"
    }
}

/// `read(2)` (the name `read` inside `RefFiles` is its own).
private func readBytes(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }
