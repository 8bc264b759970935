// EngineBench: the engine figures (tools/bench.sh, README "Speed") for one input size, as one JSON line on stdout.
// ResNet-50 (torchvision width 64, imagenet stem) + a 1000-class Linear head, batch N of random
// NxCxHxW images with random labels, cross-entropy loss.
//   train_img_s: forward (train mode) + backward + SGD step (lr 0.01, momentum 0.9, weight decay 1e-4);
//   infer_img_s: forward in eval mode;
//   hvp_exact_cost_gradients: time of one exact Hessian-vector product (forward-over-reverse: a tangent
//     forward + tangent backward at the recorded primal pass, computed beforehand as BiSSL does once per
//     upper phase) with respect to every parameter (backbone and head), divided by the time of one
//     gradient (forward + backward, same mode);
//   hvp_forward_cost_gradients: the same for the forward-difference product (cached gradient at θ);
//   blas_kernel, blas_kernel_choice: the OpenBLAS kernel and how it was chosen (`bissl doctor`).
// The first step of each kind is a warm-up and is not timed; each figure is the median of `steps`
// timed steps (img/s from the median step time). Usage: EngineBench SIZE BATCH STEPS
import BenchSupport
import Foundation
import Engine

let args = CommandLine.arguments.dropFirst().compactMap { Int($0) }
guard args.count == 3, args.allSatisfy({ $0 > 0 }) else {
    FileHandle.standardError.write("usage: EngineBench SIZE BATCH STEPS   (positive integers)\n".data(using: .utf8)!)
    exit(2)
}
let (size, batch, steps) = (args[0], args[1], args[2])

/// The whole benchmark as one function (locals, not main-actor globals, so the gradient closure is plain).
func run(size: Int, batch: Int, steps: Int) throws {
    let model = try ResNet(depth: 50, width: 64, stem: "imagenet")
    model.initialize(seed: 0)
    let head = Linear(name: "fc", inFeatures: model.featureCount, outFeatures: 1000)
    var rng = SeededRNG(seed: 1)
    head.resetParameters(rng: &rng)
    let parameters = model.parameters + head.parameters

    var images = Tensor4(n: batch, c: 3, h: size, w: size)
    for i in images.data.indices { images.data[i] = rng.normal() }
    let labels = (0..<batch).map { _ in Int(rng.next() % 1000) }

    var logits = Matrix(rows: 0, cols: 0)
    func gradient(_ mode: Mode) {
        parameters.zeroGrad()
        logits = head.forward(model.forward(images, mode: mode))
        let (_, g) = CrossEntropy.forward(logits: logits, labels: labels)
        model.backward(head.backward(g))
    }

    let sgd = SGD(parameters: parameters, lr: 0.01, momentum: 0.9, weightDecay: 1e-4)
    var trainTimes: [Double] = []
    for s in 0...steps {
        let t0 = now()
        gradient(.train)
        sgd.step()
        if s > 0 { trainTimes.append(now() - t0) }
    }

    var inferTimes: [Double] = []
    for s in 0...steps {
        let t0 = now()
        _ = head.forward(model.forward(images, mode: .eval))
        if s > 0 { inferTimes.append(now() - t0) }
    }

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

    let train = median(trainTimes), infer = median(inferTimes)
    let grad = median(gradTimes), prod = median(exactTimes), fdProd = median(fdTimes)
    let fields: [(String, String)] = [
        ("size", "\(size)"), ("batch", "\(batch)"), ("steps", "\(steps)"), ("statistic", "\"median\""),
        ("train_step_s", String(format: "%.4f", train)), ("train_img_s", String(format: "%.3f", Double(batch) / train)),
        ("infer_s", String(format: "%.4f", infer)), ("infer_img_s", String(format: "%.3f", Double(batch) / infer)),
        ("gradient_s", String(format: "%.4f", grad)), ("hvp_exact_s", String(format: "%.4f", prod)),
        ("hvp_exact_cost_gradients", String(format: "%.3f", prod / grad)), ("hvp_forward_s", String(format: "%.4f", fdProd)),
        ("hvp_forward_cost_gradients", String(format: "%.3f", fdProd / grad)),
        ("blas_kernel", "\"\(BLAS.kernel.name)\""), ("blas_kernel_choice", "\"\(BLAS.kernel.choice)\""),
    ]
    print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
}

try run(size: size, batch: batch, steps: steps)
