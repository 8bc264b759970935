"""Engine benchmark: bissl's EngineBench beside PyTorch 2.13 CPU, same run, in alternating paired rounds.

Two models, random N(0,1) images and random labels, cross-entropy, SGD (lr 0.01, momentum 0.9, weight
decay 1e-4):
  ResNet-50 (torchvision width 64, imagenet stem, 1000 classes), batch 32, at 32x32 and 96x96;
  the studies' small model, ResNet-18 width 8 with the small stem (3x3/1 conv, no max pool) and a 10-class
  head (`bissl pretrain --arch resnet18 --width 8 --stem small`), at 16x16 and 32x32, batch 64 and 256
  (train, inference and peak RSS only).
Figures:
  train img/s   forward (train mode) + backward + SGD step;
  infer img/s   eval-mode forward (ours: ResNet.infer, BatchNorm folded into the convolutions; torch under no_grad);
  HVP cost      ours: one exact Hessian-vector product (forward-over-reverse: tangent forward + tangent
                backward at the primal pass recorded once, as BiSSL records it once per upper phase) / one
                gradient, and the forward-difference product (one gradient at θ+εv) / one gradient;
                torch: one double-backward HVP (autograd.grad with create_graph, then grad of g.v) / one gradient;
  peak RSS      GNU /usr/bin/time %M of each whole process.
lr 0.01 rather than 0.1: at 0.1 the random-label loss diverged within a few steps and torch ran 40x
slower in one run (cause not confirmed; denormal numbers are a guess). A step's cost does not depend on lr.
How a row is measured (tools/bench/paired.py): R rounds (RESNET50 and SMALL_ROUNDS below: 6 at ResNet-50
32x32 and for the small model, 4 at 96x96), each one EngineBench process and one torch process
(torch.set_num_threads(2)), the order swapped every round; each process times its steps of each kind (3 at
32x32, 2 at 96x96, 5 for the small model) after one warm-up step (excluded) and gives their median. Per side the table shows the median over the
rounds; the ratio is the median of the per-round ratios ours/torch with its sign-test (binomial
order-statistic) interval, whose actual coverage is printed (below 95% with fewer than 6 rounds). Verdict:
met when the whole interval is on the target's side, MISSED when it is wholly off it, undecided when it
straddles the target. The HVP rows are measured in the first round only (both sides; no target, no
interval). Peak RSS: the maximum over the rounds of each side (the first round's processes include the HVP
part), and the ratio of the two maxima. Targets (ours/torch, same run): training >= 1.3, inference >= 1.2,
small-model rows >= 2, peak RSS <= 1.
EngineBench runs with the environment as given. When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set, one more
short EngineBench process runs with both removed and its kernel is printed, so the kernel chosen with no
setting by the user is always shown.
Usage: python3 tools/bench/engine.py PATH/TO/EngineBench [--small-only] [--rounds R]
       (--rounds sets every row group's R; internal: --torch SIZE BATCH STEPS DEPTH WIDTH STEM CLASSES HVP)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import paired

BATCH = 32
# (rounds, timed steps per process) per ResNet-50 size; an even number of rounds runs each order equally often
# (6 rounds: coverage 96.9%; 4: 87.5%, as 96x96 training is a few img/s on 2 cores). The engine part takes
# about 5 minutes on 2 cores.
RESNET50 = {32: (6, 3), 96: (4, 2)}
SMALL = {"depth": 18, "width": 8, "stem": "small", "classes": 10}   # the studies' model
SMALL_SIZES, SMALL_BATCHES, SMALL_ROUNDS, SMALL_STEPS = (16, 32), (64, 256), 6, 5
TARGETS = {"train": 1.3, "infer": 1.2, "small": 2.0, "rss": 1.0}   # ours/torch; rss: at most


def torch_figures(size, batch, steps, depth=50, width=64, stem="imagenet", classes=1000, hvp=True):
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from reference_resnet import ResNet

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = ResNet(depth, width=width, stem=stem, num_classes=classes)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    params = list(model.parameters())
    med = paired.median

    model.train()
    train = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if s:
            train.append(time.perf_counter() - t0)
    model.eval()
    infer = []
    with torch.no_grad():
        for s in range(steps + 1):
            t0 = time.perf_counter()
            model(x)
            if s:
                infer.append(time.perf_counter() - t0)
    figures = {"size": size, "batch": batch, "steps": steps, "statistic": "median",
               "train_img_s": batch / med(train), "infer_img_s": batch / med(infer)}
    if not hvp:
        return figures
    model.train()
    v = [torch.randn_like(p) for p in params]
    grad_t, hvp_t = [], []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        g = torch.autograd.grad(loss_fn(model(x), y), params)
        tg = time.perf_counter() - t0
        t0 = time.perf_counter()
        g = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
        torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params)
        th = time.perf_counter() - t0
        del g
        if s:
            grad_t.append(tg)
            hvp_t.append(th)
    gr, hv = med(grad_t), med(hvp_t)
    return dict(figures, gradient_s=gr, hvp_s=hv, hvp_cost_gradients=hv / gr)


def timed(cmd, env):
    """Runs cmd under GNU time; returns (last stdout line as JSON, peak RSS in MB)."""
    with tempfile.NamedTemporaryFile(suffix=".time") as tf:
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd, env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"engine.py: {' '.join(cmd)} failed with status {out.returncode}")
        rss_kb = int(open(tf.name).read().strip().splitlines()[-1])
    return json.loads(out.stdout.strip().splitlines()[-1]), rss_kb / 1024


def kernel(figures):
    return (f"OpenBLAS kernel {figures['blas_kernel']} ({figures['blas_kernel_choice']}); "
            f"direct 3x3 convolution kernels {figures['conv_kernels']}")


HEADER = f"{'measure':34} {'ours':>10} {'torch':>10} {'ours/torch':>10} {'interval':>14}  {'target'}"


def row(name, ours, torch, ratios, target, at_most=False):
    """One table line: per-side medians over the rounds, the median paired ratio, its interval and verdict."""
    iv = paired.interval(ratios)
    v = paired.verdict(iv["low"], iv["high"], target, at_most)
    span = f"[{iv['low']:.2f}, {iv['high']:.2f}]"
    return (f"{name:34} {paired.median(ours):10.2f} {paired.median(torch):10.2f} {iv['median']:10.2f} "
            f"{span:>14}  {'<=' if at_most else '>='} {target:.1f}: {v}")


def rss_row(name, ours, torch):
    a, t = max(ours), max(torch)
    met = "met" if a / t <= TARGETS["rss"] else "MISSED"
    return (f"{name:34} {a:10.2f} {t:10.2f} {a / t:10.2f} {'max of rounds':>14}  "
            f"<= {TARGETS['rss']:.1f}: {met}")


def paired_rounds(rounds, ours_cmd, reference_cmd, env):
    """The alternating rounds of one row group: ([(ours JSON, RSS MB)], [(torch JSON, RSS MB)]); ours_cmd(r)
    and reference_cmd(r) give round r's command lines."""
    return paired.alternate(rounds, lambda r: timed(ours_cmd(r), env), lambda r: timed(reference_cmd(r), env))


def torch_cmd(size, batch, steps, depth, width, stem, classes, hvp):
    return [sys.executable, os.path.abspath(__file__), "--torch", str(size), str(batch), str(steps), str(depth),
            str(width), stem, str(classes), "1" if hvp else "0"]


def same_kernel(results):
    """The kernel line of the first round, or a warning when a later round ran another kernel."""
    lines = {kernel(figures) for figures, _ in results}
    first = kernel(results[0][0])
    return first if len(lines) == 1 else f"{first}; WARNING: the rounds ran different kernels: {sorted(lines)}"


def resnet50(binary, env, rounds_override):
    print(f"\nResNet-50 width 64, imagenet stem, 1000 classes, batch {BATCH}")
    for size, (rounds, steps) in RESNET50.items():
        rounds = rounds_override or rounds
        print(f"{size}x{size}: {rounds} rounds, each process the median of {steps} timed steps after 1 warm-up "
              f"(HVP rows: round 1); load average before: {paired.load()}")
        ours, ref = paired_rounds(
            rounds,
            lambda r: [binary, str(size), str(BATCH), str(steps)] + ([] if r == 0 else ["--no-hvp"]),
            lambda r: torch_cmd(size, BATCH, steps, 50, 64, "imagenet", 1000, r == 0), env)
        print(f"  {same_kernel(ours)}")
        print(HEADER)
        o, t = [f for f, _ in ours], [f for f, _ in ref]
        for key, label, target in [("train_img_s", "train step (img/s)", TARGETS["train"]),
                                   ("infer_img_s", "inference (img/s)", TARGETS["infer"])]:
            print(row(f"{size}x{size} {label}", [f[key] for f in o], [f[key] for f in t],
                      [a[key] / b[key] for a, b in zip(o, t)], target))
        for key, label in [("hvp_exact_cost_gradients", "exact HVP (gradients)*"),
                           ("hvp_forward_cost_gradients", "fwd-diff HVP (gradients)*")]:
            a, b = o[0][key], t[0]["hvp_cost_gradients"]
            print(f"{size}x{size} {label:28} {a:10.2f} {b:10.2f} {a / b:10.2f} {'round 1':>14}")
        print(rss_row(f"{size}x{size} peak RSS (MB)", [m for _, m in ours], [m for _, m in ref]))
        print(f"  {paired.describe(rounds)}; load average after: {paired.load()}")
        sys.stdout.flush()
    print("  * ours: exact HVP (tangent forward + backward at the recorded primal pass) / one gradient, and the "
          "forward-difference HVP (one gradient at θ+εv, cached ∇L(θ)) / one gradient; "
          "torch: double-backward HVP (grad with create_graph, then grad of g·v, the graph rebuilt per product) "
          "/ one gradient; first round only")


def small_model(binary, env, rounds_override):
    """The studies' small model, ours beside torch for each size and batch."""
    rounds = rounds_override or SMALL_ROUNDS
    arch = ["--depth", str(SMALL["depth"]), "--width", str(SMALL["width"]), "--stem", SMALL["stem"],
            "--classes", str(SMALL["classes"]), "--no-hvp"]
    print(f"\nResNet-18 width {SMALL['width']}, small stem, {SMALL['classes']} classes; {rounds} rounds, each "
          f"process the median of {SMALL_STEPS} timed steps after 1 warm-up")
    print(HEADER)
    for size in SMALL_SIZES:
        for batch in SMALL_BATCHES:
            before = paired.load()
            ours, ref = paired_rounds(
                rounds, lambda r: [binary, str(size), str(batch), str(SMALL_STEPS)] + arch,
                lambda r: torch_cmd(size, batch, SMALL_STEPS, SMALL["depth"], SMALL["width"], SMALL["stem"],
                                    SMALL["classes"], False), env)
            if size == SMALL_SIZES[0] and batch == SMALL_BATCHES[0]:
                print(f"  {same_kernel(ours)}")
            o, t = [f for f, _ in ours], [f for f, _ in ref]
            tag = f"{size}x{size} b{batch}"
            for key, label in [("train_img_s", "train step (img/s)"), ("infer_img_s", "inference (img/s)")]:
                print(row(f"{tag} {label}", [f[key] for f in o], [f[key] for f in t],
                          [a[key] / b[key] for a, b in zip(o, t)], TARGETS["small"]))
            print(rss_row(f"{tag} peak RSS (MB)", [m for _, m in ours], [m for _, m in ref]))
            print(f"  load average before: {before}, after: {paired.load()}")
            sys.stdout.flush()
    print(f"  {paired.describe(rounds)}")


def unset_kernel(binary):
    """The kernel line with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (one short small-model process),
    or None when neither is set (then every round already runs with no setting)."""
    names = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    if not any(k in os.environ for k in names):
        return None
    env = {k: v for k, v in os.environ.items() if k not in names}
    figures, _ = timed([binary, "16", "64", "1", "--depth", "18", "--width", "8", "--stem", "small",
                        "--classes", "10", "--no-hvp"], env)
    return kernel(figures)


def main():
    if len(sys.argv) == 10 and sys.argv[1] == "--torch":
        size, batch, steps, depth, width = map(int, sys.argv[2:7])
        print(json.dumps(torch_figures(size, batch, steps, depth, width, sys.argv[7], int(sys.argv[8]),
                                       sys.argv[9] == "1")))
        return
    args = sys.argv[1:]
    small_only = "--small-only" in args
    args = [a for a in args if a != "--small-only"]
    rounds = None
    if "--rounds" in args[:-1]:
        at = args.index("--rounds")
        rounds = int(args[at + 1]) if args[at + 1].isdigit() and int(args[at + 1]) > 0 else 0
        args = args[:at] + args[at + 2:]
        if not rounds:
            sys.exit(__doc__)
    if len(args) != 1:
        sys.exit(__doc__)
    binary = os.path.abspath(args[0])
    env = dict(os.environ)
    shown = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"engine: ours (EngineBench) and torch {__import__('torch').__version__} (set_num_threads(2)) in "
          f"alternating paired rounds, order swapped every round; warm-up steps excluded")
    print(f"  CPU: {cpu}, {os.cpu_count()} cores; load average at start: {paired.load()}")
    print(f"  EngineBench runs with the environment as given ({shown or 'OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset'})")
    unset = unset_kernel(binary)
    if unset:
        print(f"  with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed: {unset}")
    if not small_only:
        resnet50(binary, env, rounds)
    small_model(binary, env, rounds)
    print(f"  load average at the end: {paired.load()}")


if __name__ == "__main__":
    main()
