// EngineBench: the engine figures (tools/bench.sh, README "Engine") for one model and input size, as one JSON
// line on stdout. A ResNet backbone (default ResNet-50, torchvision width 64, imagenet stem) + a Linear head
// (default 1000 classes), batch N of random N(0,1) NxCxHxW images with random labels, cross-entropy loss.
//   train_img_s: forward (train mode) + backward + SGD step (lr 0.01, momentum 0.9, weight decay 1e-4);
//   infer_img_s: forward in eval mode (`ResNet.infer`: BatchNorm folded into the convolutions, as bissl predict/probe run it);
//   hvp_exact_cost_gradients: time of one exact Hessian-vector product (forward-over-reverse: a tangent
//     forward + tangent backward at the recorded primal pass, computed beforehand as BiSSL does once per
//     upper phase) with respect to every parameter (backbone and head), divided by the time of one
//     gradient (forward + backward, same mode);
//   hvp_forward_cost_gradients: the same for the forward-difference product (cached gradient at θ);
//   blas_kernel, blas_kernel_choice: the OpenBLAS kernel and how it was chosen (`bissl doctor`);
//   conv_kernels: the vector level of the direct 3x3 convolution kernels (`bissl doctor`).
// The first step of each kind is a warm-up and is not timed; each figure is the median of `steps`
// timed steps (img/s from the median step time).
// Usage: EngineBench SIZE BATCH STEPS [--depth 50] [--width 64] [--stem imagenet|small] [--classes 1000] [--no-hvp]
//                    [--only train|infer]
//   (the study's small model: --depth 18 --width 8 --stem small --classes 10; --no-hvp leaves the HVP fields out;
//   --only times one kind of step and leaves the other's fields and the HVP fields out, for profiles)
import BenchSupport
import Foundation
import Engine

func usage(_ message: String) -> Never {
    FileHandle.standardError.write(("EngineBench: \(message)\nusage: EngineBench SIZE BATCH STEPS [--depth 50] [--width 64] "
        + "[--stem imagenet|small] [--classes 1000] [--no-hvp] [--only train|infer]   (positive integers)\n").data(using: .utf8)!)
    exit(2)
}

struct Settings {
    var size = 0, batch = 0, steps = 0
    var depth = 50, width = 64, stem = "imagenet", classes = 1000, hvp = true
    /// "train" or "infer": time only that kind of step (no HVP); nil: both.
    var only: String?
}

var settings = Settings()
var positional: [Int] = []
var rest = Array(CommandLine.arguments.dropFirst())
while !rest.isEmpty {
    let a = rest.removeFirst()
    if a == "--no-hvp" { settings.hvp = false; continue }
    guard a.hasPrefix("--") else {
        guard let v = Int(a), v > 0 else { usage("'\(a)' is not a positive integer") }
        positional.append(v)
        continue
    }
    guard !rest.isEmpty else { usage("\(a) needs a value") }
    let v = rest.removeFirst()
    switch a {
    case "--stem": settings.stem = v
    case "--only":
        guard v == "train" || v == "infer" else { usage("--only takes train or infer, got '\(v)'") }
        settings.only = v
        settings.hvp = false
    case "--depth", "--width", "--classes":
        guard let n = Int(v), n > 0 else { usage("\(a) needs a positive integer, got '\(v)'") }
        if a == "--depth" { settings.depth = n } else if a == "--width" { settings.width = n } else { settings.classes = n }
    default: usage("unknown option \(a)")
    }
}
guard positional.count == 3 else { usage("expected SIZE BATCH STEPS") }
(settings.size, settings.batch, settings.steps) = (positional[0], positional[1], positional[2])

/// The whole benchmark as one function (locals, not main-actor globals, so the gradient closure is plain).
func run(_ settings: Settings) throws {
    let (size, batch, steps, classes) = (settings.size, settings.batch, settings.steps, settings.classes)
    let model = try ResNet(depth: settings.depth, width: settings.width, stem: settings.stem)
    model.initialize(seed: 0)
    let head = Linear(name: "fc", inFeatures: model.featureCount, outFeatures: classes)
    var rng = SeededRNG(seed: 1)
    head.resetParameters(rng: &rng)
    let parameters = model.parameters + head.parameters

    var images = Tensor4(n: batch, c: 3, h: size, w: size)
    for i in images.data.indices { images.data[i] = rng.normal() }
    let labels = (0..<batch).map { _ in Int(rng.next() % UInt64(classes)) }

    var logits = Matrix(rows: 0, cols: 0)
    func gradient(_ mode: Mode) {
        parameters.zeroGrad()
        logits = head.forward(model.forward(images, mode: mode))
        let (_, g) = CrossEntropy.forward(logits: logits, labels: labels)
        model.backward(head.backward(g))
    }

    let sgd = SGD(parameters: parameters, lr: 0.01, momentum: 0.9, weightDecay: 1e-4)
    var trainTimes: [Double] = []
    for s in 0...steps where settings.only != "infer" {
        let t0 = now()
        gradient(.train)
        sgd.step()
        if s > 0 { trainTimes.append(now() - t0) }
    }

    var inferTimes: [Double] = []
    for s in 0...steps where settings.only != "train" {
        let t0 = now()
        _ = head.forward(model.infer(images))
        if s > 0 { inferTimes.append(now() - t0) }
    }

    var fields: [(String, String)] = [
        ("depth", "\(settings.depth)"), ("width", "\(settings.width)"), ("stem", "\"\(settings.stem)\""),
        ("classes", "\(classes)"), ("size", "\(size)"), ("batch", "\(batch)"), ("steps", "\(steps)"),
        ("statistic", "\"median\""),
    ]
    if !trainTimes.isEmpty {
        let train = median(trainTimes)
        fields += [("train_step_s", String(format: "%.5f", train)), ("train_img_s", String(format: "%.3f", Double(batch) / train))]
    }
    if !inferTimes.isEmpty {
        let infer = median(inferTimes)
        fields += [("infer_s", String(format: "%.5f", infer)), ("infer_img_s", String(format: "%.3f", Double(batch) / infer))]
    }
    if settings.hvp {
        // HVP cost: gradient time and product times measured alternately at the same θ. Each scheme's
        // object records its own base point (the exact scheme's primal pass, the forward scheme's gradient).
        let v = parameters.map { p in (0..<p.count).map { _ in rng.normal() } }
        let exact = HessianVectorProduct(parameters: parameters, scheme: .exact, gradient: gradient, tangent: {
            let dl = head.tangentForward(model.tangentForward())
            model.tangentBackward(head.tangentBackward(CrossEntropy.gradientTangent(logits: logits, dotLogits: dl)))
        })
        _ = exact.gradientAtCurrentPoint()
        var gradTimes: [Double] = [], exactTimes: [Double] = []
        for s in 0...steps {
            var t0 = now()
            gradient(.trainFrozenStatistics)
            let tg = now() - t0
            // (the plain gradient at the same θ and images rewrites the layers' caches with the same values;
            // the recorded upstream gradients are kept)
            t0 = now()
            _ = exact.apply(v)
            let te = now() - t0
            if s > 0 { gradTimes.append(tg); exactTimes.append(te) }
        }
        let fd = HessianVectorProduct(parameters: parameters, scheme: .forward, gradient: gradient)
        _ = fd.gradientAtCurrentPoint()
        var fdTimes: [Double] = []
        for s in 0...steps {
            let t0 = now()
            _ = fd.apply(v)
            if s > 0 { fdTimes.append(now() - t0) }
        }
        let grad = median(gradTimes), prod = median(exactTimes), fdProd = median(fdTimes)
        fields += [
            ("gradient_s", String(format: "%.4f", grad)), ("hvp_exact_s", String(format: "%.4f", prod)),
            ("hvp_exact_cost_gradients", String(format: "%.3f", prod / grad)), ("hvp_forward_s", String(format: "%.4f", fdProd)),
            ("hvp_forward_cost_gradients", String(format: "%.3f", fdProd / grad)),
        ]
    }
    fields += [("blas_kernel", "\"\(BLAS.kernel.name)\""), ("blas_kernel_choice", "\"\(BLAS.kernel.choice)\""),
               ("conv_kernels", "\"\(EngineEnvironment.convolutionKernels)\"")]
    print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
}

do {
    try run(settings)
} catch {
    usage("\(error)")
}
