// DistributedBench: the figures of docs/distributed.md, one JSON line on stdout from rank 0. Run by
// tools/bench/distributed.sh under `mpirun -np 1` and `-np 2`.
//
// What is timed (medians over `--repeats` (5) after one untimed warm-up; a barrier starts each):
//   allreduce_s   `Communicator.allReduceSum` of the gradient of a ResNet-50 (torchvision, 1000
//                 classes: 25,557,032 float32 values, 102 MB) in DDP's 25 MiB buckets. 0 on one rank.
//   compute_s     one training step's forward + backward of ResNet-50 with its classifier on this
//                 rank's shard of a global batch of `--batch` (16) images of `--size` x `--size` (32)
//                 pixels (train-mode BN, cross-entropy, random N(0,1)-ish images and labels);
//                 backward_s is its backward pass alone.
//   overlap_s     the most an all-reduce overlapped with the backward pass could hide: the backward pass
//                 run on another thread while this thread all-reduces a whole gradient-sized buffer,
//                 from the start of both to the end of the later one. backward_s + allreduce_s means
//                 nothing is hidden (both compete for the same cores), max(backward_s, allreduce_s)
//                 everything. A bucketed overlap (DDP) can only start each bucket when its gradients
//                 are ready, so it hides at most this much.
//   reduce_s      `DataParallel.averageGradients` of that step (weighting, packing, all-reduce, unpacking).
//   update_s      the SGD step (momentum 0.9, wd 1e-3).
// Also printed: ranks, elements, bytes, the shard size, the OpenBLAS kernel the engine runs (and how it was chosen) and the CPU model.
// Usage: DistributedBench [--batch 16] [--size 32] [--repeats 5]
import Checkpoint
import Engine
import BenchSupport
import Foundation
import Training

func option(_ name: String, _ fallback: Int) -> Int {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return fallback }
    return v
}

let batch = option("--batch", 16), size = option("--size", 32), repeats = max(1, option("--repeats", 5))
let world = try DataParallel.join()
var architecture = Architecture(depth: 50, block: "bottleneck", layers: [3, 4, 6, 3], width: 64, stem: "imagenet")
architecture.heads = ["classifier": .init(kind: "linear", dims: [2048, 1000])]
let net = try Network(architecture: architecture, seed: 0)
let parameters = net.backbone.parameters + net.heads["classifier"]!.parameters
let elements = parameters.reduce(0) { $0 + $1.count }

// All-reduce of one gradient-sized buffer.
var buffer = [Float](repeating: 1, count: elements)
var allreduce: [Double] = []
for r in 0...repeats {
    try world.barrier()
    let t0 = now()
    try buffer.withUnsafeMutableBufferPointer { try world.allReduceSum($0) }
    if r > 0 { allreduce.append(now() - t0) }
}

// One data-parallel step on this rank's shard.
let shard = DataParallel.shard.range(of: batch)
var rng = SeededGenerator(seed: 2)
let images = Tensor4(n: shard.count, c: 3, h: size, w: size,
                     data: (0..<(shard.count * 3 * size * size)).map { _ in Float(rng.next() >> 40) / Float(1 << 23) - 1 })
let labels = (0..<shard.count).map { _ in Int(rng.next() % 1000) }
let sgd = SGD(parameters: parameters, lr: 0.01, momentum: 0.9, weightDecay: 1e-3)
let classifier = net.heads["classifier"]!
var compute: [Double] = [], backward: [Double] = [], reduce: [Double] = [], update: [Double] = []
for r in 0...repeats {
    try world.barrier()
    let t0 = now()
    parameters.zeroGrad()
    let logits = classifier.forward(net.backbone.forward(images, mode: .train), mode: .train)
    let ce = CrossEntropy.forward(logits: logits, labels: labels)
    let tb = now()
    net.backbone.backward(classifier.backward(ce.gradient))
    let t1 = now()
    if r > 0 { backward.append(t1 - tb) }
    DataParallel.averageGradients(parameters, count: shard.count, values: [ce.loss])
    let t2 = now()
    sgd.step()
    let t3 = now()
    if r > 0 { compute.append(t1 - t0); reduce.append(t2 - t1); update.append(t3 - t2) }
}

// The backward pass on another thread while this one (MPI's, MPI_THREAD_FUNNELED) all-reduces.
var overlap: [Double] = []
for r in 0...repeats {
    parameters.zeroGrad()
    let logits = classifier.forward(net.backbone.forward(images, mode: .train), mode: .train)
    let ce = CrossEntropy.forward(logits: logits, labels: labels)
    try world.barrier()
    let done = DispatchSemaphore(value: 0)
    let t0 = now()
    let work = UncheckedBox { net.backbone.backward(classifier.backward(ce.gradient)) }
    Thread.detachNewThread { work.value(); done.signal() }
    try buffer.withUnsafeMutableBufferPointer { try world.allReduceSum($0) }
    done.wait()
    if r > 0 { overlap.append(now() - t0) }
}

/// Hands a closure to another thread (the engine's objects are used by one thread at a time here).
final class UncheckedBox: @unchecked Sendable {
    let value: () -> Void
    init(_ value: @escaping () -> Void) { self.value = value }
}

if world.rank == 0 {
    let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
        .first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) } ?? "?"
    let fields: [(String, String)] = [
        ("ranks", "\(world.size)"), ("elements", "\(elements)"), ("bytes", "\(elements * 4)"),
        ("batch", "\(batch)"), ("shard", "\(shard.count)"), ("size", "\(size)"),
        ("allreduce_s", String(format: "%.5f", median(allreduce))),
        ("compute_s", String(format: "%.4f", median(compute))),
        ("backward_s", String(format: "%.4f", median(backward))),
        ("overlap_s", String(format: "%.4f", median(overlap))),
        ("reduce_s", String(format: "%.5f", median(reduce))),
        ("update_s", String(format: "%.4f", median(update))),
        ("blas_kernel", "\"\(BLAS.kernel.name)\""), ("blas_kernel_choice", "\"\(BLAS.kernel.choice)\""), ("cpu", "\"\(cpu)\""),
    ]
    print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
}
world.finalize()
