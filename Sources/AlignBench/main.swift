// AlignBench: the speed figure of docs/bissl.md (section "Speed"), one BiSSL upper step on ResNet-50, as one JSON
// line on stdout. tools/bench/align.py runs it beside the PyTorch reference upper step
// (tools/bissl_reference.py, exact HVP by double backward) and prints the ratio against the 0.5 target.
//
// Model: θ_P = ResNet-50 (torchvision width 64, imagenet stem) with the SimCLR projector φ_P
// MLP [2048, 256, 256, 256] (docs/bissl.md, "Network, heads and state-dict keys"), θ_D = a second ResNet-50 with the classifier φ_D
// Linear(2048, 10); random weights (Network(architecture:seed:), seeds 0 and 1), random N(0,1) images
// and labels (SeededRNG 2). Downstream batch `--batch` (32) of SIZE x SIZE images; Hessian batch B_H of
// `--pretext-batch` (32) image pairs, i.e. 2 x 32 views through the network as one batch of 64.
// Upper level exactly as `bissl align` runs it: `ImplicitGradient` (λ 0.001, δ 10, K `--iterations` (5),
// layer-wise CG) inside `UpperLevel` (SGD lr 0.03, momentum 0.9, wd 1e-3, clip 10), for each HVP scheme of
// `--hvp` (default all three: exact, the default of `bissl align`; central and forward with ReLU masks
// and max-pool winners pinned, default probe sizes).
//
// What is timed, per scheme and per step s = 0...steps (s = 0 is the warm-up, not counted):
//   hessian_batch_s  `implicit.setHessianBatch(B_H)`: one pretext gradient at θ_P on B_H (exact: the recorded
//                    primal pass on a copy of θ_P, φ_P; central/forward: recording the activation patterns,
//                    the forward scheme's cached ∇L_P(θ_P; B_H)). A real upper phase
//                    pays this once per NU = 8 steps (the reference implementation default); here it is redone before every step.
//   step_s           `upper.step(x, y)`: ℓ1 gradient through θ_P (batch N), u by K CG iterations (K HVPs:
//                    exact K tangent passes, central 2K, forward K pretext gradients on 2N views), ℓ2 gradient through θ_D,
//                    assembly, clipping, SGD step.
//   upper_step_s     step_s + hessian_batch_s: the upper step with the whole B_H gradient charged to it
//                    (an upper phase of one step; the headline figure, compared with torch's step).
//   upper_step_amortized_s  step_s + hessian_batch_s / 8: the per-step cost inside an the reference implementation phase of 8.
// Figures are medians over the timed steps (each component's median separately; sums of medians).
// Usage: AlignBench [--size 32] [--batch 32] [--pretext-batch 32] [--iterations 5] [--steps 3] [--hvp exact,central,forward]
import BenchSupport
import Foundation
import Checkpoint
import Engine
import Training

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(("AlignBench: \(message)\nusage: AlignBench [--size 32] [--batch 32] "
        + "[--pretext-batch 32] [--iterations 5] [--steps 3] [--hvp exact,central,forward]   (positive integers; batches >= 2; "
        + "--hvp: the schemes to time, comma-separated)\n").data(using: .utf8)!)
    exit(2)
}

struct Settings {
    var size = 32, batch = 32, pretextBatch = 32, iterations = 5, steps = 3
    var schemes: [HessianVectorProduct.Scheme] = [.exact, .central, .forward]
}

func parse(_ arguments: [String]) -> Settings {
    var s = Settings()
    var i = 0
    while i < arguments.count {
        if arguments[i] == "--hvp", i + 1 < arguments.count {
            let names = arguments[i + 1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            let schemes = names.compactMap(HessianVectorProduct.Scheme.init(rawValue:))
            guard schemes.count == names.count, Set(schemes).count == schemes.count else {
                fail("--hvp takes a comma-separated list of exact, central, forward, got '\(arguments[i + 1])'")
            }
            s.schemes = schemes
            i += 2
            continue
        }
        guard i + 1 < arguments.count, let value = Int(arguments[i + 1]), value > 0 else {
            fail("expected a positive integer after \(arguments[i])")
        }
        switch arguments[i] {
        case "--size": s.size = value
        case "--batch": s.batch = value
        case "--pretext-batch": s.pretextBatch = value
        case "--iterations": s.iterations = value
        case "--steps": s.steps = value
        default: fail("unknown option \(arguments[i])")
        }
        i += 2
    }
    guard s.batch >= 2, s.pretextBatch >= 2 else { fail("batches must be at least 2 (train-mode BatchNorm)") }
    return s
}

func randomImages(_ n: Int, _ size: Int, _ rng: inout SeededRNG) -> Tensor4 {
    var t = Tensor4(n: n, c: 3, h: size, w: size)
    for i in t.data.indices { t.data[i] = rng.normal() }
    return t
}

/// Timings of one HVP scheme (seconds, medians of the timed steps).
struct SchemeFigures {
    var hessianBatch: Double, step: Double
    var pretextGradientsPerStep: Int, tangentPassesPerStep: Int, relativeHessianTerm: Double
}

/// The whole benchmark as one function (locals, not main-actor globals, so closures stay plain).
func run(_ s: Settings) throws {
    let resnet50 = Architecture(depth: 50, block: "bottleneck", layers: [3, 4, 6, 3], width: 64, stem: "imagenet")
    var pArch = resnet50
    pArch.heads = ["projector": .init(kind: "mlp", dims: [2048, 256, 256, 256])]
    var dArch = resnet50
    dArch.heads = ["classifier": .init(kind: "linear", dims: [2048, 10])]
    let pretext = try PretextObjective(method: .simclr, network: try Network(architecture: pArch, seed: 0),
                                       temperature: 0.5)
    let downstream = try Network(architecture: dArch, seed: 1)

    var rng = SeededRNG(seed: 2)
    let view1 = randomImages(s.pretextBatch, s.size, &rng), view2 = randomImages(s.pretextBatch, s.size, &rng)
    let x = randomImages(s.batch, s.size, &rng)
    let labels = (0..<s.batch).map { _ in Int(rng.next() % 10) }

    var figures: [(String, SchemeFigures)] = []
    for scheme in s.schemes {
        let name = scheme.rawValue
        let implicit = ImplicitGradient(pretext: pretext, options: ImplicitGradientOptions(
            lambda: 0.001, damping: 10, iterations: s.iterations, solver: .layerwise, hvp: scheme))
        let upper = try UpperLevel(pretext: pretext, downstream: downstream, implicit: implicit, clip: 10,
                                   lr: 0.03, weightDecay: 1e-3)
        var hbTimes: [Double] = [], stepTimes: [Double] = []
        var gradients = 0, tangents = 0, ratio = 0.0
        for step in 0...s.steps {
            let before = implicit.gradientEvaluations, tangentsBefore = implicit.tangentEvaluations
            let t0 = now()
            implicit.setHessianBatch(view1: view1, view2: view2)
            let t1 = now()
            let r = upper.step(images: x, labels: labels)
            let t2 = now()
            precondition(r.directLoss.isFinite && r.lowerPathLoss.isFinite, "AlignBench: non-finite loss")
            if step > 0 {
                hbTimes.append(t1 - t0)
                stepTimes.append(t2 - t1)
            }
            gradients = implicit.gradientEvaluations - before
            tangents = implicit.tangentEvaluations - tangentsBefore
            ratio = r.relativeHessianTerm ?? .nan
        }
        figures.append((name, SchemeFigures(hessianBatch: median(hbTimes), step: median(stepTimes),
                                            pretextGradientsPerStep: gradients, tangentPassesPerStep: tangents,
                                            relativeHessianTerm: ratio)))
    }

    func f(_ v: Double) -> String { String(format: "%.4f", v) }
    var fields: [(String, String)] = [
        ("size", "\(s.size)"), ("batch", "\(s.batch)"), ("pretext_batch", "\(s.pretextBatch)"),
        ("iterations", "\(s.iterations)"), ("solver", "\"layerwise\""), ("steps", "\(s.steps)"),
        ("statistic", "\"median\""),
    ]
    for (name, v) in figures {
        fields += [
            ("\(name)_hessian_batch_s", f(v.hessianBatch)), ("\(name)_step_s", f(v.step)),
            ("\(name)_upper_step_s", f(v.step + v.hessianBatch)),
            ("\(name)_upper_step_amortized_s", f(v.step + v.hessianBatch / 8)),
            ("\(name)_pretext_gradients", "\(v.pretextGradientsPerStep)"), ("\(name)_tangent_passes", "\(v.tangentPassesPerStep)"),
            ("\(name)_relative_hessian_term", String(format: "%.4g", v.relativeHessianTerm)),
        ]
    }
    print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
}

try run(parse(Array(CommandLine.arguments.dropFirst())))
