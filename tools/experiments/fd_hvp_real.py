"""How accurate is a finite-difference HVP on a REAL aligned network? (docs/bissl.md, deviation 1)

Loads a bissl entry exported with `bissl export REF -o FILE.safetensors` (backbone + projector +
classifier), takes a pretext batch of N Fashion-MNIST images (two views: random 16x16 crops of the
28x28 images, one flipped, [0,1] scaled, ImageNet-normalised) and a downstream batch of N digits
(upscaled 8 -> 16), and compares, along v = g = dCE/dtheta_P (and along a random v):
  exact    H v by double backward in float64 (what the reference implementation computes),
  fd       finite differences in float32 with eps = c (1 + ||theta||) / ||v|| (the port's rule),
           unpinned (plain torch ReLUs) and pinned (every ReLU mask held at those of theta, our
           ActivationPatterns), forward and central.
Usage: python3 tools/experiments/fd_hvp_real.py FILE.safetensors [N]
"""
import gzip
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import reference_resnet as rr  # noqa: E402
import bissl_reference as ref  # noqa: E402

torch.manual_seed(0)
np.random.seed(0)
N = int(sys.argv[2]) if len(sys.argv) > 2 else 64
sd = load_file(sys.argv[1])
width = sd["conv1.weight"].shape[0]
backbone = rr.ResNet(18, width=width, stem="small", num_classes=0)
backbone.load_state_dict({k: v for k, v in sd.items() if not k.startswith(("projector.", "fc."))})
pdims = [sd["projector.0.weight"].shape[1]] + [sd[f"projector.{3 * i}.weight"].shape[0] for i in range(3)]
projector = ref.mlp(pdims)
projector.load_state_dict({k[10:]: v for k, v in sd.items() if k.startswith("projector.")})
classifier = torch.nn.Linear(sd["fc.weight"].shape[1], sd["fc.weight"].shape[0])
classifier.load_state_dict({"weight": sd["fc.weight"], "bias": sd["fc.bias"]})

mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    fm = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
idx = np.random.default_rng(0).choice(len(fm), N, replace=False)
imgs = torch.tensor(fm[idx], dtype=torch.float32) / 255


def view(flip):
    out = []
    for im in imgs:
        i, j = np.random.randint(0, 13, 2)
        c = im[i:i + 16, j:j + 16]
        out.append(c.flip(-1) if flip else c)
    x = torch.stack(out)[:, None].repeat(1, 3, 1, 1)
    return (x - mean) / std


x1, x2 = view(False), view(True)
with h5py.File(os.path.join(HERE, "..", "..", "data", "digits", "digits.h5")) as h:
    dimg, dlab = h["images"][:N], h["labels"][:N]
xd = torch.tensor(dimg, dtype=torch.float32).permute(0, 3, 1, 2).repeat(1, 3, 1, 1) / 255
xd = F.interpolate(xd, size=16, mode="bilinear", align_corners=False)
xd = (xd - mean) / std
yd = torch.tensor(dlab, dtype=torch.long)


class PinnedReLU(torch.nn.Module):
    """ReLU whose masks are recorded (mode 'record') or replayed ('replay') in call order."""
    state = {"mode": "off", "masks": [], "i": 0}

    def forward(self, x):
        s = PinnedReLU.state
        if s["mode"] == "record":
            m = x > 0
            s["masks"].append(m)
            return x * m
        if s["mode"] == "replay":
            m = s["masks"][s["i"]]
            s["i"] += 1
            return x * m
        return F.relu(x)


def swap_relus(module):
    for name, child in module.named_children():
        if isinstance(child, torch.nn.ReLU):
            setattr(module, name, PinnedReLU())
        else:
            swap_relus(child)


swap_relus(backbone)
swap_relus(projector)
for m in (backbone, projector, classifier):
    m.train()


def pretext_grad(dtype, mode="off"):
    PinnedReLU.state.update(mode=mode, i=0)
    if mode == "record":
        PinnedReLU.state["masks"] = []
    saved = ref._bn_buffers(backbone, projector)
    b, p = backbone.to(dtype), projector.to(dtype)
    loss = ref.simclr_loss(b, p, x1.to(dtype), x2.to(dtype), 0.5)
    g = torch.autograd.grad(loss, list(b.parameters()))
    ref._restore_bn_buffers(backbone, projector, saved)
    PinnedReLU.state["mode"] = "off"
    return [t.detach() for t in g]


def flat(ts):
    return torch.cat([t.flatten().double() for t in ts])


# g = dCE/dtheta_P on the digits batch (float64)
backbone.double(); classifier.double()
ce = F.cross_entropy(classifier(backbone(xd.double())), yd)
g = [t.detach() for t in torch.autograd.grad(ce, list(backbone.parameters()))]
classifier.float()
# exact H v (float64, double backward; ReLU'' = 0 as in autograd)
projector.double()
gen = torch.Generator().manual_seed(1)
vr = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in g]
exact = {}
for name, v in (("g", g), ("random", vr)):
    exact[name] = flat(ref.ExactHVP(backbone, projector, x1.double(), x2.double(), 0.5)(v))
gn = flat(g).norm().item()
print(f"N = {N}, width {width}; ||Hg|| / ((0.001 + 10) ||g||) = {exact['g'].norm().item() / (10.001 * gn):.4f}")
theta = [p.detach().clone().float() for p in backbone.parameters()]
tn = flat(theta).norm().item()
backbone.float(); projector.float()


def fd(v, c, scheme, pinned):
    v32 = [t.float() for t in v]
    eps = c * (1 + tn) / flat(v32).norm().item()
    mode = "replay" if pinned else "off"
    if pinned:
        pretext_grad(torch.float32, "record")
    def at(s):
        with torch.no_grad():
            for p, t, d in zip(backbone.parameters(), theta, v32):
                p.copy_(t + s * eps * d)
        out = pretext_grad(torch.float32, mode)
        with torch.no_grad():
            for p, t in zip(backbone.parameters(), theta):
                p.copy_(t)
        return flat(out)
    if scheme == "forward":
        return (at(1) - at(0)) / eps
    return (at(1) - at(-1)) / (2 * eps)


print("| v | scheme | c | unpinned rel. error | unpinned cosine | pinned rel. error | pinned cosine |")
print("|---|---|---|---|---|---|---|")
for name, v in (("g", g), ("random", vr)):
    e = exact[name]
    for scheme, cs in (("forward", (1e-5, 1e-4, 3e-4)), ("central", (1e-5, 1e-4, 3e-4, 1e-3))):
        for c in cs:
            row = []
            for pinned in (False, True):
                a = fd(v, c, scheme, pinned)
                row += [f"{((a - e).norm() / e.norm()).item():.2e}", f"{(a @ e / (a.norm() * e.norm())).item():.5f}"]
            print(f"| {name} | {scheme} | {c:g} | " + " | ".join(row) + " |")
