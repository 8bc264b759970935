import Foundation

/// What is on disk under a zoo's `objects/`, `tmp/`, `trash/`, `refs/` and `tombstones/`, as
/// `verify`, `reindex` and `gc` need it.
struct ZooScan {
    /// Object files named like a content id: id -> path.
    var objects: [String: URL] = [:]
    /// Files left by writers (AtomicFile temporaries, staged imports, trashed objects) and stray files
    /// in `objects/`, each with the pid that made it when its name says so.
    var leftovers: [(url: URL, pid: Int32?)] = []
    /// Trashed objects: id -> path.
    var trash: [String: URL] = [:]
    /// Tombstone files: id -> path.
    var tombstones: [String: URL] = [:]

    init(_ layout: ZooLayout) {
        let fm = FileManager.default
        for dir in ((try? fm.contentsOfDirectory(atPath: layout.objects.path)) ?? []).sorted() {
            let dirURL = layout.objects.appendingPathComponent(dir, isDirectory: true)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: dirURL.path, isDirectory: &isDirectory) else { continue }
            guard isDirectory.boolValue else { leftovers.append((dirURL, Self.pid(in: dir))); continue }
            for file in ((try? fm.contentsOfDirectory(atPath: dirURL.path)) ?? []).sorted() {
                let url = dirURL.appendingPathComponent(file)
                let id = dir + String(file.dropLast(3))
                if file.hasSuffix(".h5"), dir.count == 2, ZooLayout.isFullID(id) {
                    objects[id] = url
                } else {
                    leftovers.append((url, Self.pid(in: file)))
                }
            }
        }
        for file in ((try? fm.contentsOfDirectory(atPath: layout.tmp.path)) ?? []).sorted() {
            leftovers.append((layout.tmp.appendingPathComponent(file), Self.pid(in: file)))
        }
        for file in ((try? fm.contentsOfDirectory(atPath: layout.trash.path)) ?? []).sorted() {
            let url = layout.trash.appendingPathComponent(file)
            let id = String(file.prefix(64))
            if ZooLayout.isFullID(id) && file.hasSuffix(".h5") { trash[id] = url } else { leftovers.append((url, Self.pid(in: file))) }
        }
        for kind in LabelKind.allCases {
            let dir = layout.refs.appendingPathComponent(kind.directory, isDirectory: true)
            for file in ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).sorted() where file.hasPrefix(".") {
                leftovers.append((dir.appendingPathComponent(file), Self.pid(in: file)))
            }
        }
        for file in ((try? fm.contentsOfDirectory(atPath: layout.tombstones.path)) ?? []).sorted() {
            let url = layout.tombstones.appendingPathComponent(file)
            let id = String(file.dropLast(5))
            if file.hasSuffix(".json"), ZooLayout.isFullID(id) { tombstones[id] = url } else { leftovers.append((url, Self.pid(in: file))) }
        }
    }

    /// The writer's pid in a file name: AtomicFile's `.<name>.tmp-<pid>-<random>` or a staged
    /// import's `<id>.<pid>.<random>.h5`.
    static func pid(in name: String) -> Int32? {
        if let range = name.range(of: ".tmp-") {
            return Int32(name[range.upperBound...].prefix { $0 != "-" })
        }
        let parts = name.split(separator: ".")
        if parts.count == 4, ZooLayout.isFullID(String(parts[0])) { return Int32(parts[1]) }
        if parts.count == 3, ZooLayout.isFullID(String(parts[0])) { return Int32(parts[1]) }
        return nil
    }

    /// True when a process with this pid runs (so its files may still be in use).
    static func isAlive(_ pid: Int32?) -> Bool {
        guard let pid, pid > 0 else { return false }
        if pid == getpid() { return true }
        return kill(pid, 0) == 0 || errno == EPERM
    }
}
