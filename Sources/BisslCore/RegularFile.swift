import Foundation

/// Input files are read only when they are regular files: a FIFO makes `open` wait for a writer
/// forever, `/dev/zero` never ends, a socket or device is not a file's contents at all. Every place
/// that opens a file a user named (or a file inside a folder a user named) asks here first, after
/// following symbolic links, so each such input gets the same one-line refusal.
public enum RegularFile {
    /// `PATH is not a regular file` when `path`, after following symbolic links, names something
    /// other than a regular file or a folder (a FIFO, a character or block device, a socket); nil
    /// when it is a regular file, a folder, or does not exist (callers word those themselves).
    public static func refusal(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let kind = st.st_mode & S_IFMT
        return kind == S_IFREG || kind == S_IFDIR ? nil : "\(path.quotedPathIfNeeded) is not a regular file"
    }
}
