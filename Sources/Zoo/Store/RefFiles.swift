import Checkpoint
import Foundation

/// The ref files under `refs/names` and `refs/tags`: each holds one line, the full id of the entry the
/// label points to. They are the durable record of labels (the catalog's `labels` table indexes them).
enum RefFiles {
    /// Writes `refs/<kind>/<label>` atomically.
    static func write(_ label: String, kind: LabelKind, id: String, layout: ZooLayout) throws {
        try AtomicFile.write(Data((id + "\n").utf8), to: layout.refURL(label, kind: kind))
    }

    /// Removes `refs/<kind>/<label>`; a missing file is not an error.
    static func remove(_ label: String, kind: LabelKind, layout: ZooLayout) throws {
        let path = layout.refURL(label, kind: kind).path
        if unlink(path) != 0 && errno != ENOENT {
            throw ZooError.io("cannot remove \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Every ref file: label, kind and the id it holds (nil when the file does not hold a full id).
    static func all(layout: ZooLayout) -> [(label: String, kind: LabelKind, id: String?, url: URL)] {
        var out: [(String, LabelKind, String?, URL)] = []
        for kind in LabelKind.allCases {
            let dir = layout.refs.appendingPathComponent(kind.directory, isDirectory: true)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            for name in names.sorted() where !name.hasPrefix(".") {
                let url = dir.appendingPathComponent(name)
                let text = (try? String(contentsOf: url, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                out.append((name, kind, text.flatMap { ZooLayout.isFullID($0) ? $0 : nil }, url))
            }
        }
        return out
    }
}
