import ArgumentParser
import Checkpoint
import BisslCore
import Datasets
import Foundation

/// `bissl data ...`: look at image datasets (`idx:`, `cifar:`, `folder:`, `h5:` URIs).
struct DataGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Inspect image datasets (idx:DIR, cifar:DIR, folder:DIR, h5:FILE, with #part=train|test and #split=FILE).",
        subcommands: [DataInfo.self, DataBench.self])
}

/// `bissl data info URI`: classes, counts per class, image sizes, channels and fingerprint, after
/// decoding every image once.
struct DataInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Decode every image of a dataset and show its classes, counts per class, image sizes and fingerprint.")

    @Argument(help: "Dataset URI: idx:DIR, cifar:DIR, folder:DIR or h5:FILE, optionally #part=train|test and/or #split=FILE (joined with &).")
    var uri: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Fail on the first image that cannot be decoded (default: skip it with a warning).")
    var strict = false

    struct Report: Encodable {
        struct ClassLine: Encodable { var label: Int; var name: String; var count: Int }
        struct SizeLine: Encodable { var height: Int; var width: Int; var count: Int }
        struct SkippedLine: Encodable { var file: String; var reason: String }
        var uri: String
        var scheme: String
        var part: String?
        var split: String?
        var count: Int
        var classes: [ClassLine]
        var sizes: [SizeLine]
        var minSize: SizeLine?
        var maxSize: SizeLine?
        var channels: Int
        var sourceChannels: [String: Int]
        var skipped: [SkippedLine]
        var fingerprint: String
    }

    func run() throws {
        let dataset = try ImageDataset(parsing: uri)
        let summary = try dataset.scan(onCorrupt: strict ? .fail : .skip)
        let sizes = summary.sizes.sorted { $0.key < $1.key }.map { Report.SizeLine(height: $0.key.height, width: $0.key.width, count: $0.value) }
        let byArea = sizes.sorted { ($0.height * $0.width, $0.height) < ($1.height * $1.width, $1.height) }
        let channelNames = [1: "gray", 2: "gray+alpha", 3: "rgb", 4: "rgba"]
        let report = Report(
            uri: uri, scheme: dataset.uri.scheme.rawValue,
            part: dataset.uri.scheme == .folder ? nil : dataset.uri.part.rawValue,
            split: dataset.uri.splitFile, count: dataset.count,
            classes: summary.classNames.enumerated().map { .init(label: $0.offset, name: $0.element, count: summary.countsPerClass[$0.offset]) },
            sizes: sizes, minSize: byArea.first, maxSize: byArea.last, channels: 3,
            sourceChannels: Dictionary(uniqueKeysWithValues: summary.sourceChannels.map { (channelNames[$0.key] ?? "\($0.key)", $0.value) }),
            skipped: summary.skipped.map { .init(file: $0.name, reason: $0.reason) },
            fingerprint: try dataset.fingerprint())
        for s in summary.skipped {
            printStandardError("warning: skipped \(s.reason)")
        }
        if !summary.skipped.isEmpty {
            printStandardError("warning: skipped \(summary.skipped.count) image(s) that could not be decoded (use --strict to fail instead)")
        }
        if json {
            try ZooOutput.printJSON(report)
        } else {
            printText(report)
        }
    }

    private func printText(_ r: Report) {
        ZooOutput.printLine("dataset: \(r.uri)")
        ZooOutput.printLine("format: \(r.scheme)\(r.part.map { ", part \($0)" } ?? "")\(r.split.map { ", split \($0)" } ?? "")")
        ZooOutput.printLine("images: \(r.count)")
        ZooOutput.printLine("classes: \(r.classes.count)")
        let names = r.classes.map(\.name.escapingControlCharacters)   // class folder names, as they will show
        let width = names.map(\.count).max() ?? 1
        let numbered = r.classes.allSatisfy { $0.name == String($0.label) }
        for (c, name) in zip(r.classes, names) {
            let label = String(repeating: " ", count: max(0, 3 - String(c.label).count)) + String(c.label)
            ZooOutput.printLine(numbered ? "  \(label)  \(c.count)" : "  \(label)  \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(c.count)")
        }
        if r.sizes.count <= 8 {
            ZooOutput.printLine("image sizes (HxW): " + r.sizes.map { "\($0.height)x\($0.width) (\($0.count))" }.joined(separator: ", "))
        } else if let lo = r.minSize, let hi = r.maxSize {
            ZooOutput.printLine("image sizes (HxW): \(r.sizes.count) distinct, smallest \(lo.height)x\(lo.width), largest \(hi.height)x\(hi.width)")
        }
        ZooOutput.printLine("channels: 3 (RGB); in the files: " + r.sourceChannels.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if !r.skipped.isEmpty { ZooOutput.printLine("skipped: \(r.skipped.count) undecodable image(s)") }
        ZooOutput.printLine("fingerprint: sha256:\(r.fingerprint)")
    }
}

/// `bissl data bench URI`: loader throughput (decode plus the two-view pretext augmentation of
/// docs/bissl.md, "Augmentations and pixel scale") at the given output sizes, in images per second.
struct DataBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure loader throughput: decode plus two-view pretext augmentation, images per second.")

    @Argument(help: "Dataset URI (as for data info).")
    var uri: String

    @Option(parsing: .unconditional, help: "Output sizes (square), comma-separated.")
    var sizes = "32,96"

    @Option(parsing: .unconditional, help: "Images per measurement.")
    var images = 2048

    @Option(parsing: .unconditional, help: "Batch size.")
    var batch = 256

    @Option(parsing: .unconditional, help: "Worker threads (default: all cores).")
    var workers = ProcessorCount.available

    @Flag(help: "Print JSON instead of text.")
    var json = false

    struct Line: Encodable { var size: Int; var images: Int; var seconds: Double; var imagesPerSecond: Double; var workers: Int }

    func run() throws {
        for (option, value) in [("--images", images), ("--batch", batch), ("--workers", workers)] where value < 1 {
            throw CLIError("\(option) must be at least 1, got \(value)")
        }
        let dataset = try ImageDataset(parsing: uri)
        var lines: [Line] = []
        for text in sizes.split(separator: ",", omittingEmptySubsequences: false) {
            guard let size = Int(text.trimmingCharacters(in: .whitespaces)), size > 0, size <= 1024 else {
                throw CLIError("--sizes must be integers in 1...1024, not '\(text)'")
            }
            var v1 = Augment.PretextView.view1
            var v2 = Augment.PretextView.view2
            v1.size = size
            v2.size = size
            let (view1, view2) = (v1, v2)
            let loader = DataLoader(dataset: dataset, batchSize: batch, dropLast: false, seed: 0, height: size, width: size,
                                    workers: workers) { image, rng in
                let pair = Augment.pretextPair(image, using: &rng, views: (view1, view2))
                return [pair.0, pair.1]
            }
            let start = Date()
            var done = 0
            var epoch = 0
            while done < images {
                let it = loader.epoch(epoch)
                while done < images, let b = try it.nextBatch() { done += b.count }
                epoch += 1
            }
            let seconds = Date().timeIntervalSince(start)
            lines.append(Line(size: size, images: done, seconds: seconds, imagesPerSecond: Double(done) / seconds, workers: workers))
        }
        if json {
            try ZooOutput.printJSON(lines)
        } else {
            for l in lines {
                ZooOutput.printLine("\(l.size)x\(l.size) two views: \(l.images) images in \(String(format: "%.2f", l.seconds)) s, \(String(format: "%.0f", l.imagesPerSecond)) images/s (\(l.workers) workers)")
            }
        }
    }
}
