"""Engine benchmark: bissl's EngineBench beside PyTorch 2.13 CPU, same run.

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
  peak RSS      GNU /usr/bin/time %M of each whole process (torch: one process per size).
lr 0.01 rather than 0.1: at 0.1 the random-label loss diverged within a few steps and torch ran 40x
slower in one run (cause not confirmed; denormal numbers are a guess). A step's cost does not depend on lr. First step of each kind is a warm-up; figures are medians of the timed steps. torch runs with
torch.set_num_threads(2). For ResNet-50, EngineBench runs twice: with the environment as set (OPENBLAS_CORETYPE,
OPENBLAS_L2_SIZE) and with both unset for that command only. Targets (ours/torch, same run): training
>= 1.3, inference >= 1.2, small-model rows >= 2, peak RSS <= 1.
Usage: python3 tools/bench/engine.py PATH/TO/EngineBench [--small-only]
       (internal: --torch SIZE BATCH STEPS DEPTH WIDTH STEM CLASSES HVP)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

BATCH = 32
STEPS = {32: 5, 96: 2}  # timed steps per size (96x96 ResNet-50 training is a few img/s on 2 cores)
SMALL = {"depth": 18, "width": 8, "stem": "small", "classes": 10}   # the studies' model
SMALL_SIZES, SMALL_BATCHES, SMALL_STEPS = (16, 32), (64, 256), 10
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
    med = lambda xs: sorted(xs)[len(xs) // 2] if len(xs) % 2 else sum(sorted(xs)[len(xs) // 2 - 1:len(xs) // 2 + 1]) / 2

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
                             capture_output=True, text=True, check=True)
        rss_kb = int(open(tf.name).read().strip().splitlines()[-1])
    return json.loads(out.stdout.strip().splitlines()[-1]), rss_kb / 1024


def verdict(ratio, target, at_most=False):
    met = ratio <= target if at_most else ratio >= target
    return f"{'<=' if at_most else '>='} {target:.1f}: {'met' if met else 'MISSED'}"


def small_model(binary, env):
    """The studies' small model, ours beside torch for each size and batch (one process each)."""
    arch = ["--depth", str(SMALL["depth"]), "--width", str(SMALL["width"]), "--stem", SMALL["stem"],
            "--classes", str(SMALL["classes"]), "--no-hvp"]
    print(f"\nResNet-18 width {SMALL['width']}, small stem, {SMALL['classes']} classes; medians of {SMALL_STEPS} "
          f"timed steps; load average now: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{'measure':34} {'ours':>10} {'torch':>10} {'ours/torch':>11} {'target':>15}")
    for size in SMALL_SIZES:
        for batch in SMALL_BATCHES:
            ours, rss = timed([binary, str(size), str(batch), str(SMALL_STEPS)] + arch, env)
            if size == SMALL_SIZES[0] and batch == SMALL_BATCHES[0]:
                print(f"  OpenBLAS kernel {ours['blas_kernel']} ({ours['blas_kernel_choice']}); "
                      f"direct 3x3 convolution kernels {ours['conv_kernels']}")
            ref, rss_t = timed([sys.executable, os.path.abspath(__file__), "--torch", str(size), str(batch),
                                str(SMALL_STEPS), str(SMALL["depth"]), str(SMALL["width"]), SMALL["stem"],
                                str(SMALL["classes"]), "0"], env)
            tag = f"{size}x{size} b{batch}"
            for name, a, t, target, at_most in [
                (f"{tag} train step (img/s)", ours["train_img_s"], ref["train_img_s"], TARGETS["small"], False),
                (f"{tag} inference (img/s)", ours["infer_img_s"], ref["infer_img_s"], TARGETS["small"], False),
                (f"{tag} peak RSS (MB)", rss, rss_t, TARGETS["rss"], True),
            ]:
                print(f"{name:34} {a:10.2f} {t:10.2f} {a / t:11.2f} {verdict(a / t, target, at_most):>15}")
            sys.stdout.flush()


def main():
    if len(sys.argv) == 10 and sys.argv[1] == "--torch":
        size, batch, steps, depth, width = map(int, sys.argv[2:7])
        print(json.dumps(torch_figures(size, batch, steps, depth, width, sys.argv[7], int(sys.argv[8]),
                                       sys.argv[9] == "1")))
        return
    args = sys.argv[1:]
    small_only = "--small-only" in args
    args = [a for a in args if a != "--small-only"]
    if len(args) != 1:
        sys.exit(__doc__)
    binary = os.path.abspath(args[0])
    env_set = dict(os.environ)
    env_unset = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    shown = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"engine: medians of timed steps (warm-up excluded); torch {__import__('torch').__version__} "
          f"with set_num_threads(2)")
    print(f"  CPU: {cpu}, {os.cpu_count()} cores; load average at start: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"  'ours' = EngineBench with the environment as set ({shown or 'neither variable set'}); "
          f"'ours, unset' = OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed")
    if small_only:
        small_model(binary, env_set)
        return
    print(f"\nResNet-50 width 64, imagenet stem, 1000 classes, batch {BATCH}")
    print(f"{'measure':34} {'ours':>10} {'ours,unset':>11} {'torch':>10} {'ours/torch':>11} {'target':>15}")
    for size in (32, 96):
        steps = str(STEPS[size])
        ours, rss = timed([binary, str(size), str(BATCH), steps], env_set)
        unset, rss_u = timed([binary, str(size), str(BATCH), steps], env_unset)
        if size == 32:
            print(f"  OpenBLAS kernel: 'ours' {ours['blas_kernel']} ({ours['blas_kernel_choice']}), "
                  f"'ours, unset' {unset['blas_kernel']} ({unset['blas_kernel_choice']}); "
                  f"direct 3x3 convolution kernels {ours['conv_kernels']}")
        ref, rss_t = timed([sys.executable, os.path.abspath(__file__), "--torch", str(size), str(BATCH), steps,
                            "50", "64", "imagenet", "1000", "1"], env_set)
        rows = [
            (f"{size}x{size} train step (img/s)", ours["train_img_s"], unset["train_img_s"], ref["train_img_s"],
             verdict(ours["train_img_s"] / ref["train_img_s"], TARGETS["train"])),
            (f"{size}x{size} inference (img/s)", ours["infer_img_s"], unset["infer_img_s"], ref["infer_img_s"],
             verdict(ours["infer_img_s"] / ref["infer_img_s"], TARGETS["infer"])),
            (f"{size}x{size} exact HVP (gradients)*", ours["hvp_exact_cost_gradients"], unset["hvp_exact_cost_gradients"],
             ref["hvp_cost_gradients"], ""),
            (f"{size}x{size} fwd-diff HVP (gradients)*", ours["hvp_forward_cost_gradients"],
             unset["hvp_forward_cost_gradients"], ref["hvp_cost_gradients"], ""),
            (f"{size}x{size} peak RSS (MB)", rss, rss_u, rss_t, verdict(rss / rss_t, TARGETS["rss"], at_most=True)),
        ]
        for name, a, b, t, v in rows:
            print(f"{name:34} {a:10.2f} {b:11.2f} {t:10.2f} {a / t:11.2f} {v:>15}")
        sys.stdout.flush()
    print("  * ours: exact HVP (tangent forward + backward at the recorded primal pass) / one gradient, and the "
          "forward-difference HVP (one gradient at θ+εv, cached ∇L(θ)) / one gradient; "
          "torch: double-backward HVP (grad with create_graph, then grad of g·v, the graph rebuilt per product) / one gradient")
    small_model(binary, env_set)


if __name__ == "__main__":
    main()
