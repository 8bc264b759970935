"""How far the aligned backbones moved: L2 distances between the exported backbones of a bissl_small.sh zoo
(theta0.safetensors, bissl-S, noij-S and, with CONTINUED=1, cont-S.safetensors), over the float32 parameters
(BatchNorm running statistics and counters excluded). Markdown table on stdout.
Usage: bissl_small_distances.py ZOO"""
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file

zoo = pathlib.Path(sys.argv[1])
t0 = load_file(zoo / "theta0.safetensors")
keys = sorted(k for k, v in t0.items() if v.dtype == np.float32 and "running_" not in k)


def vec(path):
    d = load_file(path)
    return np.concatenate([d[k].astype(np.float64).ravel() for k in keys])


v0 = vec(zoo / "theta0.safetensors")
print(f"||θ_0|| = {np.linalg.norm(v0):.3f} over {len(keys)} tensors, {v0.size} values\n")
print("| seed | ‖θ_P − θ_0‖ BiSSL | ‖θ_P − θ_0‖ --no-ij | ‖θ_cont − θ_0‖ | ‖θ_P BiSSL − θ_P --no-ij‖ | ‖θ_P BiSSL − θ_cont‖ |")
print("|---|---|---|---|---|---|")
seeds = sorted(int(p.stem.split("-")[1]) for p in zoo.glob("bissl-*.safetensors"))
for s in seeds:
    b, n = vec(zoo / f"bissl-{s}.safetensors"), vec(zoo / f"noij-{s}.safetensors")
    c = vec(zoo / f"cont-{s}.safetensors") if (zoo / f"cont-{s}.safetensors").exists() else None
    f = lambda x: "–" if x is None else f"{np.linalg.norm(x):.3f}"  # noqa: E731
    print(f"| {s} | {f(b - v0)} | {f(n - v0)} | {f(None if c is None else c - v0)} | {f(b - n)} | {f(None if c is None else b - c)} |")
