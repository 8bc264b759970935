"""Distances between backbones for the study's lambda calibration (docs/experiments.md, "BiSSL study").

Usage: distance.py THETA0 CONTROL ARM (three safetensors files of backbones, same keys). Prints a JSON
fragment: "distArmToControl": ||ARM - CONTROL||, "distControlToTheta0": ||CONTROL - THETA0||,
"relDist": their ratio (how far lambda moves theta_P from the lambda = 0 control, in units of how far the
control moved from theta_0). Norms are L2 over every floating-point tensor except BN running statistics
and counters (parameters only).
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file

a, c, x = (load_file(p) for p in sys.argv[1:4])
keys = [k for k in c if c[k].dtype.kind == "f" and "running_" not in k and "num_batches" not in k]


def dist(p, q):
    return float(np.sqrt(sum(float(np.sum((p[k].astype(np.float64) - q[k].astype(np.float64)) ** 2)) for k in keys)))


d_x, d_c = dist(x, c), dist(c, a)
print(json.dumps({"distArmToControl": d_x, "distControlToTheta0": d_c, "relDist": d_x / d_c if d_c else None})[1:-1])
