"""BiSSL upper-step benchmark (docs/bissl.md, "Speed"): bissl's AlignBench beside the PyTorch reference
upper step (tools/bissl_reference.py `upper_step`, exact HVP by double backward), same run, same shapes.

Target: one upper step with K = 5 CG iterations takes at most 0.5x the reference's time.
Shapes: θ_P and θ_D are ResNet-50 (torchvision width 64, imagenet stem), φ_P the SimCLR projector MLP
[2048, 256, 256, 256], φ_D Linear(2048, 10); 32x32 random images; downstream batch 32; Hessian batch
B_H of 32 pairs (2 x 32 views, one batch of 64 through the network); λ 0.001, δ 10, K 5 layer-wise CG;
SGD lr 0.03, momentum 0.9, wd 1e-3, clip 10. Random weights (ours: Network(architecture:seed:), torch:
its default init) and seeded random data; the cost of a step does not depend on the values.

What is timed (each process: the median of STEPS timed steps after one warm-up step):
  torch               one `upper_step(...)` call: ℓ1 gradient, K exact HVPs (each: pretext gradient with
                      create_graph, then the gradient of g·v; the graph is rebuilt per product, as the reference implementation),
                      ℓ2 gradient, assembly, clipping, SGD step. torch.set_num_threads(2).
  ours <scheme>       `ImplicitGradient.setHessianBatch(B_H)` (one pretext gradient at θ_P: the exact
                      scheme's recorded primal pass on a copy of θ_P, φ_P; the finite-difference schemes'
                      ReLU/max-pool patterns and the forward scheme's cached gradient) + `UpperLevel.step`
                      (ℓ1 gradient, K HVPs: exact K tangent passes, central 2K / forward K pretext
                      gradients with pinned patterns; ℓ2 gradient, assembly, clipping, SGD). The headline charges the
                      whole B_H gradient to the one step; "amortized" spreads it over the reference implementation's NU = 8 steps.
How the ratio is measured (tools/bench/paired.py): ROUNDS rounds, each one AlignBench process and one torch
process, the order swapped every round. Per side the table shows the median over the rounds; each ratio is the
median of the per-round ratios ours/torch with its sign-test (binomial order-statistic) interval, whose actual
coverage is printed. Verdict on the headline (<= 0.5): met when the whole interval is at or below 0.5, MISSED
when it is wholly above, undecided when it straddles 0.5. Peak RSS: the maximum over the rounds of each side.
Not a test: prints a table, fails only when a command fails.
On a loaded machine (load average above the 2 cores) torch's 2 OpenMP threads spin-wait for each other
and its step time inflates several-fold (measured: 10x the CPU time of 1 thread on a ResNet-50 gradient at
load 9); --torch-1-thread adds one process with torch.set_num_threads(1) after the rounds, as a load-robust
reference (one figure, no interval).
--hvp LIST times those schemes of ours (comma-separated: exact, central, forward; default exact, the default
of `bissl align`).
Usage: python3 tools/bench/align.py PATH/TO/AlignBench [--rounds R] [--steps N] [--hvp LIST] [--torch-1-thread]
       (internal: --torch SIZE BATCH PBATCH K STEPS THREADS)
"""
import json
import os
import subprocess
import sys
import time

import paired

SIZE, BATCH, PBATCH, K = 32, 32, 32, 5
# 6 rounds (3 with each order; coverage 96.9%) of one timed step per process: ~4 minutes on 2 cores.
ROUNDS, STEPS = 6, 1
TARGET = 0.5


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
            "statistic": "median", "upper_step_s": paired.median(times), "hvp_calls": calls,
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


def option(args, name, convert):
    """(value, args without the option) for `name VALUE`, or (None, args)."""
    if name not in args[:-1]:
        return None, args
    at = args.index(name)
    try:
        value = convert(args[at + 1])
    except ValueError:
        sys.exit(__doc__)
    return value, args[:at] + args[at + 2:]


def main():
    if len(sys.argv) == 8 and sys.argv[1] == "--torch":
        print(json.dumps(torch_figures(*map(int, sys.argv[2:]))))
        return
    args = sys.argv[1:]
    one_thread = "--torch-1-thread" in args
    args = [a for a in args if a != "--torch-1-thread"]
    hvp, args = option(args, "--hvp", str)
    rounds, args = option(args, "--rounds", int)
    steps, args = option(args, "--steps", int)
    hvp = "exact" if hvp is None else hvp
    rounds = ROUNDS if rounds is None else rounds
    steps = STEPS if steps is None else steps
    if len(args) != 1 or steps < 1 or rounds < 1:
        sys.exit(__doc__)
    binary = os.path.abspath(args[0])
    import torch
    print(f"align: one BiSSL upper step, ResNet-50 width 64 imagenet stem, {SIZE}x{SIZE}, downstream batch "
          f"{BATCH}, B_H {PBATCH} pairs (2 x {PBATCH} views), K = {K} layer-wise CG; ours (AlignBench, --hvp {hvp}) "
          f"and torch {torch.__version__} (set_num_threads(2)) in {rounds} alternating rounds, order swapped every "
          f"round; each process the median of {steps} timed step(s) after 1 warm-up")
    print(f"  load average before: {paired.load()}")
    ours_cmd = [binary, "--size", str(SIZE), "--batch", str(BATCH), "--pretext-batch", str(PBATCH),
                "--iterations", str(K), "--steps", str(steps), "--hvp", hvp]
    torch_cmd = [sys.executable, os.path.abspath(__file__), "--torch", str(SIZE), str(BATCH), str(PBATCH),
                 str(K), str(steps)]
    ours, ref = paired.alternate(rounds, lambda r: timed(ours_cmd), lambda r: timed(torch_cmd + ["2"]))
    print(f"  load average after: {paired.load()}")
    o, t = [f for f, _ in ours], [f for f, _ in ref]
    schemes = [s for s in ("exact", "central", "forward") if f"{s}_upper_step_s" in o[0]]
    for r, (a, b) in enumerate(zip(o, t)):
        print(f"  round {r + 1} ({'ours' if r % 2 == 0 else 'torch'} first): torch {b['upper_step_s']:.3f} s; "
              + "; ".join(f"ours {s} {a[s + '_upper_step_s']:.3f} s ({a[s + '_upper_step_s'] / b['upper_step_s']:.2f}x)"
                          for s in schemes))
    print(f"{'measure':58} {'seconds':>8} {'x torch':>8} {'interval':>14}  target")
    print(f"{'torch reference upper step (K exact double-backward HVPs)':58} "
          f"{paired.median([f['upper_step_s'] for f in t]):8.3f} {1:8.2f}")
    for scheme in schemes:
        grads, tangents = o[0][f"{scheme}_pretext_gradients"], o[0][f"{scheme}_tangent_passes"]
        work = f"{grads} pretext grads" + (f" + {tangents} tangent passes" if tangents else "")
        for name, key, headline in [
            (f"ours {scheme}: B_H pass + upper step ({work})", "upper_step_s", True),
            (f"ours {scheme}: amortized over an 8-step phase", "upper_step_amortized_s", False),
            (f"ours {scheme}: upper step alone", "step_s", False),
        ]:
            values = [f[f"{scheme}_{key}"] for f in o]
            iv = paired.interval([v / f["upper_step_s"] for v, f in zip(values, t)])
            span = f"[{iv['low']:.2f}, {iv['high']:.2f}]"
            verdict = f"<= {TARGET}: {paired.verdict(iv['low'], iv['high'], TARGET, at_most=True)}" if headline else ""
            print(f"{name:58} {paired.median(values):8.3f} {iv['median']:8.2f} {span:>14}  {verdict}")
    rss, rss_t = [m for _, m in ours], [m for _, m in ref]
    if None not in rss and None not in rss_t:
        print(f"{'peak RSS (MB), max of rounds: ours (' + ', '.join(schemes) + ') / torch':58} "
              f"{max(rss):8.0f} {max(rss_t):8.0f}")
    print(f"  {paired.describe(rounds)}")
    print("  ‖Hg‖/((λ+δ)‖g‖) on these random weights (round 1): "
          + ", ".join(f"{s} {o[0][s + '_relative_hessian_term']}" for s in schemes))
    if one_thread:
        ref1, _ = timed(torch_cmd + ["1"])
        t1 = ref1["upper_step_s"]
        print(f"  torch, set_num_threads(1), one process after the rounds: {t1:.3f} s; "
              + "; ".join(f"ours {s} (median of the rounds) / it: "
                          f"{paired.median([f[s + '_upper_step_s'] for f in o]) / t1:.2f}" for s in schemes)
              + f"; load average after: {paired.load()}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
