"""Engine benchmark: bissl's EngineBench beside PyTorch 2.13 CPU, same run.

ResNet-50 (torchvision width 64, imagenet stem, 1000 classes), batch 32, random images and labels,
cross-entropy, SGD (lr 0.01, momentum 0.9, weight decay 1e-4), at 32x32 and 96x96:
  train img/s   forward (train mode) + backward + SGD step;
  infer img/s   eval-mode forward (torch under no_grad);
  HVP cost      ours: one exact Hessian-vector product (forward-over-reverse: tangent forward + tangent
                backward at the primal pass recorded once, as BiSSL records it once per upper phase) / one
                gradient, and the forward-difference product (one gradient at θ+εv) / one gradient;
                torch: one double-backward HVP (autograd.grad with create_graph, then grad of g.v) / one gradient;
  peak RSS      GNU /usr/bin/time %M of each whole process (torch: one process per size).
lr 0.01 rather than 0.1: at 0.1 the random-label loss diverged within a few steps and torch ran 40x
slower in one run (cause not confirmed; denormal numbers are a guess). A step's cost does not depend on lr. First step of each kind is a warm-up; figures are medians of the timed steps. torch runs with
torch.set_num_threads(2). EngineBench runs twice: with the environment as set (OPENBLAS_CORETYPE,
OPENBLAS_L2_SIZE) and with both unset for that command only.
Usage: python3 tools/bench/engine.py PATH/TO/EngineBench        (or --torch SIZE BATCH STEPS: internal)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

BATCH = 32
STEPS = {32: 5, 96: 2}  # timed steps per size (96x96 ResNet-50 training is a few img/s on 2 cores)


def torch_figures(size, batch, steps):
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from reference_resnet import ResNet

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = ResNet(50)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
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
    tr, inf, gr, hv = med(train), med(infer), med(grad_t), med(hvp_t)
    return {"size": size, "batch": batch, "steps": steps, "statistic": "median",
            "train_img_s": batch / tr, "infer_img_s": batch / inf, "gradient_s": gr, "hvp_s": hv,
            "hvp_cost_gradients": hv / gr}


def timed(cmd, env):
    """Runs cmd under GNU time; returns (last stdout line as JSON, peak RSS in MB)."""
    with tempfile.NamedTemporaryFile(suffix=".time") as tf:
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd, env=env,
                             capture_output=True, text=True, check=True)
        rss_kb = int(open(tf.name).read().strip().splitlines()[-1])
    return json.loads(out.stdout.strip().splitlines()[-1]), rss_kb / 1024


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--torch":
        print(json.dumps(torch_figures(*map(int, sys.argv[2:]))))
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    env_set = dict(os.environ)
    env_unset = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    shown = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"engine: ResNet-50 width 64, imagenet stem, 1000 classes, batch {BATCH}; medians of timed steps "
          f"(warm-up excluded); torch {__import__('torch').__version__} with set_num_threads(2)")
    print(f"  CPU: {cpu}, {os.cpu_count()} cores; load average at start: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"  'ours' = EngineBench with the environment as set ({shown or 'neither variable set'}); "
          f"'ours, unset' = OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed")
    print(f"{'measure':34} {'ours':>10} {'ours,unset':>11} {'torch':>10} {'ours/torch':>11}")
    for size in (32, 96):
        steps = str(STEPS[size])
        ours, rss = timed([binary, str(size), str(BATCH), steps], env_set)
        unset, rss_u = timed([binary, str(size), str(BATCH), steps], env_unset)
        if size == 32:
            print(f"  OpenBLAS kernel: 'ours' {ours['blas_kernel']} ({ours['blas_kernel_choice']}), "
                  f"'ours, unset' {unset['blas_kernel']} ({unset['blas_kernel_choice']})")
        ref, rss_t = timed([sys.executable, os.path.abspath(__file__), "--torch", str(size), str(BATCH), steps],
                           env_set)
        rows = [
            (f"{size}x{size} train step (img/s)", ours["train_img_s"], unset["train_img_s"], ref["train_img_s"]),
            (f"{size}x{size} inference (img/s)", ours["infer_img_s"], unset["infer_img_s"], ref["infer_img_s"]),
            (f"{size}x{size} exact HVP (gradients)*", ours["hvp_exact_cost_gradients"], unset["hvp_exact_cost_gradients"],
             ref["hvp_cost_gradients"]),
            (f"{size}x{size} fwd-diff HVP (gradients)*", ours["hvp_forward_cost_gradients"],
             unset["hvp_forward_cost_gradients"], ref["hvp_cost_gradients"]),
            (f"{size}x{size} peak RSS (MB)", rss, rss_u, rss_t),
        ]
        for name, a, b, t in rows:
            print(f"{name:34} {a:10.2f} {b:11.2f} {t:10.2f} {a / t:11.2f}")
        sys.stdout.flush()
    print("  * ours: exact HVP (tangent forward + backward at the recorded primal pass) / one gradient, and the "
          "forward-difference HVP (one gradient at θ+εv, cached ∇L(θ)) / one gradient; "
          "torch: double-backward HVP (grad with create_graph, then grad of g·v, the graph rebuilt per product) / one gradient")


if __name__ == "__main__":
    main()
