import Foundation

/// CIFAR-10 and CIFAR-100 "binary version" files (https://www.cs.toronto.edu/~kriz/cifar.html).
///
/// CIFAR-10: records of 3073 bytes, `<label><1024 R><1024 G><1024 B>` (32x32, row-major planes),
/// train part `data_batch_1.bin`..`data_batch_5.bin` (every `data_batch_N.bin` present, in N
/// order), test part `test_batch.bin`, 10 classes named by `batches.meta.txt` when present.
/// CIFAR-100: records of 3074 bytes, `<coarse label><fine label><3072 pixels>`, `train.bin` /
/// `test.bin`; the fine label (100 classes, named by `fine_label_names.txt` when present) is used.
/// The folder may be the one holding the files or its parent (`cifar-10-batches-bin`,
/// `cifar-100-binary` inside it).
enum CIFARReader {
    static func open(_ uri: DatasetURI) throws -> InMemorySource {
        var dir = try requireFolder(uri.path, scheme: "cifar")
        for sub in ["cifar-10-batches-bin", "cifar-100-binary"] where !has(dir, "test_batch.bin") && !has(dir, "test.bin") {
            let candidate = dir.appendingPathComponent(sub)
            if FileManager.default.fileExists(atPath: candidate.path) { dir = candidate }
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        let batches = names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix("data_batch_"), n.hasSuffix(".bin"), let k = Int(n.dropFirst(11).dropLast(4)) else { return nil }
            return (k, n)
        }.sorted { $0.0 < $1.0 }.map(\.1)
        let isCIFAR100 = batches.isEmpty && !has(dir, "test_batch.bin") && (has(dir, "train.bin") || has(dir, "test.bin"))
        let files: [String]
        if isCIFAR100 {
            files = [uri.part == .train ? "train.bin" : "test.bin"]
        } else if uri.part == .train {
            guard !batches.isEmpty else {
                throw DatasetError.missing("cifar:\(dir.path): no data_batch_N.bin (CIFAR-10) or train.bin (CIFAR-100) in the folder")
            }
            files = batches
        } else {
            files = ["test_batch.bin"]
        }
        let recordSize = isCIFAR100 ? 3074 : 3073
        let classCount = isCIFAR100 ? 100 : 10
        var records = Fingerprinter()
        var pixels: [UInt8] = []
        var labels: [Int32] = []
        for file in files {
            let raw = try readFile(dir.appendingPathComponent(file), what: "CIFAR batch file")
            records.add(name: file, bytes: raw)
            guard raw.count > 0, raw.count % recordSize == 0 else {
                throw DatasetError.corrupt("\(file): \(raw.count) bytes is not a whole number of \(recordSize)-byte CIFAR-\(classCount) records")
            }
            let n = raw.count / recordSize
            pixels.reserveCapacity(pixels.count + n * 3072)
            labels.reserveCapacity(labels.count + n)
            raw.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
                let b = p.bindMemory(to: UInt8.self)
                var hwc = [UInt8](repeating: 0, count: 3072)
                for r in 0..<n {
                    let base = r * recordSize
                    labels.append(Int32(b[base + recordSize - 3073]))
                    let planes = base + recordSize - 3072
                    for i in 0..<1024 {
                        hwc[3 * i] = b[planes + i]
                        hwc[3 * i + 1] = b[planes + 1024 + i]
                        hwc[3 * i + 2] = b[planes + 2048 + i]
                    }
                    pixels.append(contentsOf: hwc)
                }
            }
        }
        var classNames = (0..<classCount).map(String.init)
        let namesFile = isCIFAR100 ? "fine_label_names.txt" : "batches.meta.txt"
        if has(dir, namesFile) {
            let url = dir.appendingPathComponent(namesFile)
            let list = try ClassNames.lines(url)
            guard list.count == classCount else {
                throw DatasetError.corrupt("\(namesFile): \(list.count) class names, CIFAR-\(classCount) has \(classCount)")
            }
            classNames = list
            records.add(name: namesFile, bytes: try readFile(url))
        }
        try InMemorySource.checkLabels(labels, classCount: classCount, file: files.joined(separator: ", "))
        return InMemorySource(pixels: pixels, labels: labels, height: 32, width: 32, channels: 3,
                              classNames: classNames, fileName: files.count == 1 ? files[0] : "cifar", records: records)
    }

    private static func has(_ dir: URL, _ name: String) -> Bool {
        FileManager.default.fileExists(atPath: dir.appendingPathComponent(name).path)
    }
}
