"""BiSSL upper-step benchmark (docs/bissl.md, "Speed"): bissl's AlignBench beside the PyTorch reference
upper step (tools/bissl_reference.py `upper_step`, exact HVP by double backward), same run, same shapes.

Target: one upper step with K = 5 CG iterations takes at most 0.5x the reference's time.
Shapes: θ_P and θ_D are ResNet-50 (torchvision width 64, imagenet stem), φ_P the SimCLR projector MLP
[2048, 256, 256, 256], φ_D Linear(2048, 10); 32x32 random images; downstream batch 32; Hessian batch
B_H of 32 pairs (2 x 32 views, one batch of 64 through the network); λ 0.001, δ 10, K 5 layer-wise CG;
SGD lr 0.03, momentum 0.9, wd 1e-3, clip 10. Random weights (ours: Network(architecture:seed:), torch:
its default init) and seeded random data; the cost of a step does not depend on the values.

What is timed (medians of STEPS timed steps after one warm-up step, each side in its own process):
  torch               one `upper_step(...)` call: ℓ1 gradient, K exact HVPs (each: pretext gradient with
                      create_graph, then the gradient of g·v; the graph is rebuilt per product, as the reference implementation),
                      ℓ2 gradient, assembly, clipping, SGD step. torch.set_num_threads(2).
  ours <scheme>       `ImplicitGradient.setHessianBatch(B_H)` (one pretext gradient at θ_P: the exact
                      scheme's recorded primal pass on a copy of θ_P, φ_P; the finite-difference schemes'
                      ReLU/max-pool patterns and the forward scheme's cached gradient) + `UpperLevel.step`
                      (ℓ1 gradient, K HVPs: exact K tangent passes, central 2K / forward K pretext
                      gradients with pinned patterns; ℓ2 gradient, assembly, clipping, SGD). The headline charges the
                      whole B_H gradient to the one step; "amortized" spreads it over the reference implementation's NU = 8 steps.
Not a test: prints a table, fails only when a command fails.
On a loaded machine (load average above the 2 cores) torch's 2 OpenMP threads spin-wait for each other
and its step time inflates several-fold (measured: 10x the CPU time of 1 thread on a ResNet-50 gradient at
load 9); --torch-1-thread adds a row with torch.set_num_threads(1) as a load-robust reference.
--hvp LIST times only those schemes of ours (comma-separated: exact, central, forward; default all three).
Usage: python3 tools/bench/align.py PATH/TO/AlignBench [--steps N] [--hvp LIST] [--torch-1-thread]
       (internal: --torch SIZE BATCH PBATCH K STEPS THREADS)
"""
import json
import os
import subprocess
import sys
import time

SIZE, BATCH, PBATCH, K = 32, 32, 32, 5
STEPS = 3
TARGET = 0.5


def med(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def torch_figures(size, batch, pbatch, iters, steps, threads=2):
    import torch
    from torch import nn
    tools = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    sys.path.insert(0, tools)
    from reference_resnet import ResNet
    from bissl_reference import mlp, upper_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    backbone_p = ResNet(50, num_classes=0)
    projector = mlp([2048, 256, 256, 256])
    torch.manual_seed(1)
    backbone_d = ResNet(50, num_classes=0)
    classifier = nn.Linear(2048, 10)
    g = torch.Generator().manual_seed(2)
    h1 = torch.randn(pbatch, 3, size, size, generator=g)
    h2 = torch.randn(pbatch, 3, size, size, generator=g)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    optimizer, times, calls = None, [], 0
    for s in range(steps + 1):
        t0 = time.perf_counter()
        out = upper_step(backbone_p, projector, backbone_d, classifier, x, y, h1, h2, lam=1e-3, delta=10,
                         iters=iters, lr=0.03, wd=1e-3, clip=10.0, cg="layerwise", optimizer=optimizer)
        t = time.perf_counter() - t0
        if not (out["l1"] == out["l1"] and out["l2"] == out["l2"]):
            raise SystemExit("align.py: torch reference produced a NaN loss")
        optimizer, calls = out["optimizer"], out["hvp_calls"]
        if s:
            times.append(t)
    return {"size": size, "batch": batch, "pretext_batch": pbatch, "iterations": iters, "steps": steps,
            "statistic": "median", "upper_step_s": med(times), "hvp_calls": calls,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def timed(cmd):
    """Runs cmd (under GNU time when present); returns (last stdout line as JSON, peak RSS in MB or None)."""
    gnu_time = os.path.exists("/usr/bin/time")
    tf = f"/tmp/align-bench-{os.getpid()}.time"
    full = (["/usr/bin/time", "-f", "%M", "-o", tf] if gnu_time else []) + cmd
    out = subprocess.run(full, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"align.py: {' '.join(cmd)} failed with status {out.returncode}")
    rss = None
    if gnu_time:
        rss = int(open(tf).read().strip().splitlines()[-1]) / 1024
        os.unlink(tf)
    return json.loads(out.stdout.strip().splitlines()[-1]), rss


def load():
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main():
    if len(sys.argv) == 8 and sys.argv[1] == "--torch":
        print(json.dumps(torch_figures(*map(int, sys.argv[2:]))))
        return
    args = sys.argv[1:]
    one_thread = "--torch-1-thread" in args
    args = [a for a in args if a != "--torch-1-thread"]
    steps, hvp = STEPS, None
    if "--hvp" in args[:-1]:
        at = args.index("--hvp")
        hvp = args[at + 1]
        args = args[:at] + args[at + 2:]
    if len(args) == 3 and args[1] == "--steps":
        steps = int(args[2])
        args = args[:1]
    if len(args) != 1 or steps < 1:
        sys.exit(__doc__)
    binary = os.path.abspath(args[0])
    import torch
    print(f"align: one BiSSL upper step, ResNet-50 width 64 imagenet stem, {SIZE}x{SIZE}, downstream batch "
          f"{BATCH}, B_H {PBATCH} pairs (2 x {PBATCH} views), K = {K} layer-wise CG; medians of {steps} timed "
          f"steps after a warm-up; torch {torch.__version__} with set_num_threads(2)")
    print(f"  load average before: {load()}")
    ours, rss = timed([binary, "--size", str(SIZE), "--batch", str(BATCH), "--pretext-batch", str(PBATCH),
                       "--iterations", str(K), "--steps", str(steps)] + (["--hvp", hvp] if hvp else []))
    schemes = [s for s in ("exact", "central", "forward") if f"{s}_upper_step_s" in ours]
    print(f"  load average after ours: {load()}")
    ref, rss_t = timed([sys.executable, os.path.abspath(__file__), "--torch", str(SIZE), str(BATCH), str(PBATCH),
                        str(K), str(steps), "2"])
    print(f"  load average after torch: {load()}")
    ref1 = None
    if one_thread:
        ref1, _ = timed([sys.executable, os.path.abspath(__file__), "--torch", str(SIZE), str(BATCH), str(PBATCH),
                         str(K), str(steps), "1"])
        print(f"  load average after torch (1 thread): {load()}")
        print("  torch, 1 thread: " + json.dumps(ref1))
    print("  ours: " + json.dumps(ours))
    print("  torch: " + json.dumps(ref))
    t = ref["upper_step_s"]
    print(f"{'measure':58} {'seconds':>8} {'x torch':>8} {'target':>7}")
    print(f"{'torch reference upper step (K exact double-backward HVPs)':58} {t:8.3f} {1:8.2f}")
    if ref1 is not None:
        t1 = ref1["upper_step_s"]
        print(f"{'torch reference upper step, set_num_threads(1)':58} {t1:8.3f} {t1 / t:8.2f}")
    for scheme in schemes:
        grads, tangents = ours[f"{scheme}_pretext_gradients"], ours[f"{scheme}_tangent_passes"]
        work = f"{grads} pretext grads" + (f" + {tangents} tangent passes" if tangents else "")
        rows = [
            (f"ours {scheme}: B_H pass + upper step ({work})", ours[f"{scheme}_upper_step_s"], True),
            (f"ours {scheme}: amortized over an 8-step phase", ours[f"{scheme}_upper_step_amortized_s"], False),
            (f"ours {scheme}: upper step alone", ours[f"{scheme}_step_s"], False),
        ]
        for name, v, headline in rows:
            verdict = f"{'<= ' + str(TARGET):>7} {'met' if v / t <= TARGET else 'MISSED'}" if headline else ""
            print(f"{name:58} {v:8.3f} {v / t:8.2f} {verdict}")
    if ref1 is not None:
        for scheme in schemes:
            v = ours[f"{scheme}_upper_step_s"]
            print(f"{'ours ' + scheme + ': B_H gradient + upper step / torch 1 thread':58} {v:8.3f} {v / t1:8.2f}")
    if rss is not None and rss_t is not None:
        print(f"{'peak RSS (MB): ours (' + ', '.join(schemes) + ') / torch':58} {rss:8.0f} {rss_t:8.0f}")
    print("  ‖Hg‖/((λ+δ)‖g‖) on these random weights: "
          + ", ".join(f"{s} {ours[s + '_relative_hessian_term']}" for s in schemes))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
