import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Training
import Zoo

/// `bissl predict REF --input X.npy [--output Y.npy] [--features|--logits] [--json]`: runs a zoo
/// entry in eval mode (BatchNorm uses `running_mean`/`running_var`, as `model.eval()` in PyTorch)
/// on a batch of images.
///
/// Input: a `.npy` array `[N, 3, H, W]` (NCHW), float32; float64 (NumPy's default) is rounded to
/// float32 as `torch.from_numpy(x).float()` does; any other dtype or shape is refused.
/// Output: `--features` the pooled backbone features `[N, C]` (torchvision `ResNet` up to `avgpool`
/// and `flatten`); `--logits` (the default when the entry has a `classifier` component) those
/// features through `fc`, `[N, classes]`. Both float32. With `--output` the array is written as
/// `.npy` (atomically); without it a short summary is printed.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Run a zoo entry on an NCHW float32 .npy batch (eval mode); write features or logits as .npy.",
        discussion: """
            The input is a .npy array [N, 3, H, W] of float32 (float64 is rounded to float32). BatchNorm \
            uses its running statistics, as PyTorch's model.eval(). --logits (default when the entry has \
            a classifier) gives [N, classes]; --features gives the pooled backbone features [N, C]. \
            Without --output, prints the result's shape and a summary (top-1 class per image for logits).
            """)

    enum Output: String, EnumerableFlag {
        case features, logits
        static func help(for value: Output) -> ArgumentHelp? {
            switch value {
            case .features: return "Pooled backbone features [N, C]."
            case .logits: return "Classifier logits [N, classes] (default when the entry has a classifier)."
            }
        }
    }

    @Argument(help: "Entry: id, unique id prefix (6+ hex digits), name or tag.")
    var ref: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Input images: .npy, float32 [N, 3, H, W].", valueName: "FILE"))
    var input: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Write the result here as .npy (float32).", valueName: "FILE"))
    var output: String?

    @Flag(help: "What to compute.")
    var kind: Output?

    @Flag(help: "Print the summary as JSON.")
    var json = false

    @OptionGroup var zooOptions: ZooOptions

    /// The JSON summary (`--json`).
    struct Summary: Encodable {
        var entry: String
        var kind: String
        var shape: [Int]
        var output: String?
        var min: Float
        var max: Float
        var mean: Double
        /// Index of the largest logit per image (logits only).
        var top1: [Int]?
    }

    func run() throws {
        try CommandLineHabits.requireFile(input)
        if let output { try CommandLineHabits.requireOutputFolder(output) }
        let zoo = try zooOptions.open(readOnly: true)
        defer { try? zoo.close() }
        if let output { try ZooOutput.refuseZooObjectsPath(output, objects: zoo.layout.objects) }
        let id = try zoo.resolve(ref)
        let checkpoint = try zoo.checkpoint(id, components: ["backbone", "classifier"])   // heads beyond the classifier are not run
        let images = try Self.readImages(URL(fileURLWithPath: input))

        let network: Network
        do { network = try Network(checkpoint: checkpoint) } catch {
            throw CLIError("entry \(id.prefix(12)): \(error)")
        }
        try network.backbone.checkInputSize(height: images.h, width: images.w)
        let classifier = network.heads["classifier"]
        let what = kind ?? (classifier == nil ? .features : .logits)
        if what == .logits && classifier == nil {
            throw CLIError("entry \(id.prefix(12)) has no classifier component: use --features for the backbone features")
        }
        var result = network.backbone.infer(images)   // eval-mode forward, BatchNorm folded (ResNet.infer)
        if what == .logits, let classifier { result = classifier.forward(result, mode: .eval) }
        if let warning = Self.nonFiniteWarning(result, kind: what, entry: id) {
            printStandardError("warning: \(warning)")
        }

        if let output {
            try AtomicFile.write(NumPyArray.encode(Tensor(float32: result.data, shape: result.shape)),
                                 to: URL(fileURLWithPath: output))
        }
        let summary = Self.summarize(result, kind: what, entry: id, output: output)
        if json {
            try ZooOutput.printJSON(summary)
        } else {
            Self.printSummary(summary)
        }
    }

    /// Reads and checks the input batch.
    /// - Throws: `CLIError` for a dtype other than float32/float64, a shape other than
    ///   `[N, 3, H, W]` with N, H, W >= 1, or non-finite values; errors of `NumPyArray.read`.
    static func readImages(_ url: URL) throws -> Tensor4 {
        let t = try NumPyArray.read(url)
        guard t.dtype == .float32 || t.dtype == .float64 else {
            throw CLIError("\(url.lastPathComponent): dtype \(t.dtype.rawValue), expected float32 images")
        }
        guard t.shape.count == 4, t.shape[1] == 3 else {
            throw CLIError("\(url.lastPathComponent): shape \(t.shape), expected [N, 3, H, W] (NCHW, 3 channels)")
        }
        guard t.shape.allSatisfy({ $0 > 0 }) else {
            throw CLIError("\(url.lastPathComponent): shape \(t.shape) is empty")
        }
        let values = t.floats()
        guard values.allSatisfy(\.isFinite) else {
            throw CLIError("\(url.lastPathComponent): contains NaN or infinite values")
        }
        return Tensor4(n: t.shape[0], c: 3, h: t.shape[2], w: t.shape[3], data: values)
    }

    /// One line when rows of the result hold NaN or infinity (the input was checked finite, so the
    /// entry's weights or BatchNorm statistics are): their top-1 and summary mean nothing.
    static func nonFiniteWarning(_ m: Matrix, kind: Output, entry: String) -> String? {
        let bad = (0..<m.rows).filter { r in !m.data[(r * m.cols)..<((r + 1) * m.cols)].allSatisfy(\.isFinite) }.count
        guard bad > 0 else { return nil }
        return "the \(kind.rawValue) of \(bad) of \(m.rows) image\(m.rows == 1 ? "" : "s") hold NaN or infinite values, so "
            + (kind == .logits ? "their top-1 class and " : "") + "the summary mean nothing; entry \(entry.prefix(12)) has non-finite weights or invalid BatchNorm statistics (bissl verify \(entry.prefix(12)) reports them)"
    }

    static func summarize(_ m: Matrix, kind: Output, entry: String, output: String?) -> Summary {
        let top1: [Int]? = kind == .logits ? ClassificationMetrics.predictions(m) : nil
        return Summary(entry: String(entry.prefix(12)), kind: kind.rawValue, shape: m.shape, output: output,
                       min: m.data.min() ?? 0, max: m.data.max() ?? 0,
                       mean: m.data.reduce(0.0) { $0 + Double($1) } / Double(max(m.data.count, 1)), top1: top1)
    }

    static func printSummary(_ s: Summary) {
        let shape = "[" + s.shape.map(String.init).joined(separator: ", ") + "]"
        ZooOutput.printLine("\(s.kind) \(shape) from entry \(s.entry)\(s.output.map { " -> \($0.quotedPathIfNeeded)" } ?? "")")
        print(String(format: "  min %.4g  max %.4g  mean %.4g", s.min, s.max, s.mean))
        if let top1 = s.top1 {
            let shown = top1.prefix(16).map(String.init).joined(separator: " ")
            ZooOutput.printLine("  top-1: \(shown)\(top1.count > 16 ? " ..." : "")")
        }
    }
}
