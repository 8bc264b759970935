"""PyTorch reference of one BiSSL lower step and one BiSSL upper step (docs/bissl.md "Problem and hypergradient", 3, 5.4, 5.5).

This is the yardstick the Swift port (Sources/Training/BiSSL) is checked against
(tools/fixtures/make_bissl_fixtures.py writes Tests/Fixtures/bissl/*.npz from it). It follows the
authors' code (docs/bissl.md, "Method reference"), with the Hessian-vector product computed EXACTLY by double
backward (torch.autograd.grad with create_graph=True), as the reference implementation does.

Networks: a backbone (tools/reference_resnet.py ResNet with num_classes=0, features [N, F]), the
SimCLR projector phi_P (docs/bissl.md "Network, heads and state-dict keys" MLP: Linear-BN1d-ReLU-...-Linear(no bias)) and a linear classifier
phi_D = nn.Linear(F, C). Images are NCHW tensors.

SimCLR forward convention (shared with the Swift port and Tests/Fixtures/engine/simclr.npz): the two
views are concatenated into ONE batch [x1; x2] of 2N images, so BatchNorm statistics are taken over
both views together; NT-Xent as in docs/bissl.md "Pretext methods" (tau 0.5).

Lower step (docs/bissl.md "The alternation loop", step 5, lower phase):
    loss = NTXent(phi_P(theta_P([x1; x2]))) + (lam/2) * sum_tensors ||theta_P - theta_D||^2  (theta_D detached)
    grads over (theta_P, phi_P); clip_grad_norm_(., clip); LARS step (docs/bissl.md "Optimisers and schedule") at lr.
    BN in train mode: running statistics of theta_P and phi_P move (one forward).

Upper step (docs/bissl.md "Problem and hypergradient" and 3, upper phase), gamma = 1:
    l1 = CE(phi_D(theta_P(x)), y)          train-mode BN (theta_P running stats move, as in the reference implementation)
    g = d l1 / d theta_P ; gphi1 = d l1 / d phi_D
    u = CG(v -> v + H v / (lam + delta), rhs g, K iterations), layer-wise (the reference implementation default) or global,
        H = Hessian of the SimCLR loss on the fixed batch B_H w.r.t. theta_P only, at (theta_P, phi_P),
        BN in train mode (batch statistics); nan_to_num at the end.
    l2 = CE(phi_D(theta_D(x)), y)          train-mode BN (theta_D running stats move)
    h = d l2 / d theta_D ; gphi2 = d l2 / d phi_D
    grad theta_D = u + h ; grad phi_D = gphi1 + gphi2 ; clip global norm of (theta_D, phi_D) grads to clip;
    torch.optim.SGD(lr, momentum 0.9, weight_decay wd) step (first step: buf = d).

BatchNorm running statistics during the HVPs: The reference implementation runs each HVP forward in train mode, so every one of
the K HVPs moves theta_P's and phi_P's running statistics with pretext data (docs/bissl.md, "Deliberate differences", item 4).
The Swift port does the same by default (`bissl align --hvp-bn train`: one momentum update with B_H's
batch statistics per product) and can freeze them (`--hvp-bn frozen`). The running statistics never
enter a train-mode loss or gradient, so this changes only the buffers, never u, the parameters or the
losses. `hvp_updates_bn_stats` selects the behaviour here: True = the reference implementation's (the upper-step fixtures),
False = frozen.

Run directly for a quick self-check: python3 tools/bissl_reference.py
"""
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from reference_resnet import mlp  # noqa: F401  (docs/bissl.md "Network, heads and state-dict keys" heads; re-exported for the scripts using this module)


def nt_xent(z, tau):
    """docs/bissl.md "Pretext methods": rows 0..N-1 view 1, N..2N-1 view 2; positive of row i is (i+N) mod 2N."""
    n2 = z.shape[0]
    n = n2 // 2
    s = F.normalize(z, dim=1) / math.sqrt(tau)
    logits = (s @ s.T).masked_fill(torch.eye(n2, dtype=torch.bool), -1e9)
    pos = (torch.arange(n2) + n) % n2
    return -F.log_softmax(logits, dim=1)[torch.arange(n2), pos].mean()


def simclr_loss(backbone, projector, x1, x2, tau):
    return nt_xent(projector(backbone(torch.cat([x1, x2]))), tau)


def byol_loss(backbone, projector, predictor, target_backbone, target_projector, x1, x2):
    """BYOL's loss (docs/bissl.md "Pretext methods") on the joint batch [x1; x2] (the port's convention): mean over N of
    (2 - 2 cos(p1, t2)) + (2 - 2 cos(p2, t1)); the target runs under no_grad (a constant), in the
    same train mode as the online network (the reference implementation: its running statistics move too)."""
    n = x1.shape[0]
    x = torch.cat([x1, x2])
    p = predictor(projector(backbone(x)))
    with torch.no_grad():
        t = target_projector(target_backbone(x))

    def term(a, b):
        return (2 - 2 * (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)).mean()
    return term(p[:n], t[n:]) + term(p[n:], t[:n])


def clip_(params, max_norm):
    """torch.nn.utils.clip_grad_norm_ (returns the total norm before clipping)."""
    return torch.nn.utils.clip_grad_norm_(params, max_norm).item()


def lars_step(params, bufs, lr, momentum=0.9, wd=1e-6, eta=1e-3):
    """docs/bissl.md "Optimisers and schedule" (the reference implementation)."""
    with torch.no_grad():
        for p, mu in zip(params, bufs):
            d = p.grad + wd * p
            pn, dn = torch.norm(p), torch.norm(d)
            if pn > 0 and dn > 0:
                d = d * (eta * pn / dn)
            mu.mul_(momentum).add_(d)
            p.sub_(lr * mu)


def lower_step(backbone_p, projector, backbone_d, x1, x2, lam, lr, tau=0.5, clip=10.0, bufs=None,
               momentum=0.9, wd=1e-6, eta=1e-3):
    """One lower step in place on (backbone_p, projector). Returns dict of losses and the clip norm."""
    backbone_p.train(); projector.train()
    params = list(backbone_p.parameters()) + list(projector.parameters())
    for p in params:
        p.grad = None
    pretext = simclr_loss(backbone_p, projector, x1, x2, tau)
    reg = 0.5 * lam * sum(((p - q.detach()) ** 2).sum() for p, q in zip(backbone_p.parameters(), backbone_d.parameters()))
    (pretext + reg).backward()
    norm = clip_(params, clip)
    if bufs is None:
        bufs = [torch.zeros_like(p) for p in params]
    lars_step(params, bufs, lr, momentum, wd, eta)
    return dict(pretext=pretext.item(), reg=reg.item(), norm=norm, bufs=bufs)


class ExactHVP:
    """H v of a pretext loss on a fixed batch w.r.t. the backbone parameters, by double backward
    (the reference implementation's `ij_solvers.py`: the gradient graph is rebuilt on every call, one train-mode forward each).

    `loss_fn()` evaluates the loss (all modules in train mode); `modules` are every module whose BN
    buffers that forward moves (restored afterwards unless `updates_bn_stats`). The SimCLR form
    `ExactHVP(backbone, projector, x1, x2, tau)` is kept for the existing scripts."""

    def __init__(self, backbone, projector=None, x1=None, x2=None, tau=0.5, updates_bn_stats=False,
                 loss_fn=None, modules=None):
        self.backbone = backbone
        self.loss_fn = loss_fn or (lambda: simclr_loss(backbone, projector, x1, x2, tau))
        self.modules = modules or [backbone, projector]
        self.updates_bn_stats = updates_bn_stats
        self.calls = 0

    def __call__(self, v):
        self.calls += 1
        params = list(self.backbone.parameters())
        saved = None if self.updates_bn_stats else _bn_buffers(*self.modules)
        loss = self.loss_fn()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(sum((g * t).sum() for g, t in zip(grads, v)), params)
        if saved is not None:
            _restore_bn_buffers(*self.modules, saved)
        return [t.detach() for t in hv]


def _bn_buffers(*modules):
    return [[b.clone() for b in m.buffers()] for m in modules]


def _restore_bn_buffers(*args):
    *modules, saved = args
    with torch.no_grad():
        for m, s in zip(modules, saved):
            for b, v in zip(m.buffers(), s):
                b.copy_(v)


def cg_layerwise(op, b, iters):
    """docs/bissl.md "Problem and hypergradient" (the reference implementation cg_solver, layerwise_solve=True)."""
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    d = [t.clone() for t in b]
    for _ in range(iters):
        ad = op(d)
        for i in range(len(b)):
            rr = (r[i] * r[i]).sum()
            alpha = rr / ((d[i] * ad[i]).sum() + 1e-12)
            x[i] = x[i] + alpha * d[i]
            r[i] = r[i] - alpha * ad[i]
            beta = (r[i] * r[i]).sum() / (rr + 1e-12)
            d[i] = r[i] + beta * d[i]
    return [torch.nan_to_num(t) for t in x]


def cg_global(op, b, iters, directions=None):
    """Textbook CG (the reference implementation's layerwise_solve=False). `directions`, a list, receives every d the operator sees."""
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    d = [t.clone() for t in b]
    rr = sum((t * t).sum() for t in r)
    for _ in range(iters):
        if directions is not None:
            directions.append([t.clone() for t in d])
        ad = op(d)
        alpha = rr / (sum((p * q).sum() for p, q in zip(d, ad)) + 1e-12)
        x = [a + alpha * p for a, p in zip(x, d)]
        r = [a - alpha * p for a, p in zip(r, ad)]
        new = sum((t * t).sum() for t in r)
        d = [a + new / (rr + 1e-12) * p for a, p in zip(r, d)]
        rr = new
    return [torch.nan_to_num(t) for t in x]


def upper_step(backbone_p, projector, backbone_d, classifier, x, y, h1, h2, lam, delta, iters, lr, wd,
               tau=0.5, clip=10.0, momentum=0.9, cg="layerwise", no_ij=False, optimizer=None,
               hvp_updates_bn_stats=False):
    """One upper step in place on (backbone_d, classifier); backbone_p's BN running stats move with the
    l1 forward. Returns a dict with the intermediate vectors (lists of tensors in parameters() order)."""
    for m in (backbone_p, projector, backbone_d, classifier):
        m.train()
    p_params = list(backbone_p.parameters())
    d_params = list(backbone_d.parameters())
    c_params = list(classifier.parameters())
    l1 = F.cross_entropy(classifier(backbone_p(x)), y)
    g_all = torch.autograd.grad(l1, p_params + c_params)
    g, gphi1 = list(g_all[:len(p_params)]), list(g_all[len(p_params):])
    hvp = ExactHVP(backbone_p, projector, h1, h2, tau, hvp_updates_bn_stats)
    if no_ij:
        u = [t.clone() for t in g]
    else:
        op = lambda v: [a + hv / (lam + delta) for a, hv in zip(v, hvp(v))]  # noqa: E731
        u = (cg_layerwise if cg == "layerwise" else cg_global)(op, g, iters)
    l2 = F.cross_entropy(classifier(backbone_d(x)), y)
    h_all = torch.autograd.grad(l2, d_params + c_params)
    h, gphi2 = list(h_all[:len(d_params)]), list(h_all[len(d_params):])
    for p, a, b in zip(d_params, u, h):
        p.grad = (a + b).detach().clone()
    for p, a, b in zip(c_params, gphi1, gphi2):
        p.grad = (a + b).detach().clone()
    norm = clip_(d_params + c_params, clip)
    if optimizer is None:
        optimizer = torch.optim.SGD(d_params + c_params, lr=lr, momentum=momentum, weight_decay=wd)
    optimizer.step()
    return dict(l1=l1.item(), l2=l2.item(), g=g, u=u, h=h, gphi1=gphi1, gphi2=gphi2, norm=norm,
                hvp_calls=hvp.calls, optimizer=optimizer)


if __name__ == "__main__":
    import sys, os  # noqa: E401
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from reference_resnet import ResNet, randomized
    torch.manual_seed(0)
    bp = randomized(ResNet(18, width=4, stem="small", num_classes=0), 1).double()
    pr = randomized(mlp([32, 16, 16, 8]), 2).double()
    bd = copy.deepcopy(bp)
    cl = nn.Linear(32, 5).double()
    x1, x2 = torch.randn(4, 3, 16, 16).double(), torch.randn(4, 3, 16, 16).double()
    out = lower_step(bp, pr, bd, x1, x2, lam=1e-3, lr=1.0)
    print("lower", {k: v for k, v in out.items() if k != "bufs"})
    x, y = torch.randn(6, 3, 16, 16).double(), torch.randint(0, 5, (6,))
    out = upper_step(bp, pr, bd, cl, x, y, x1, x2, lam=1e-3, delta=10, iters=5, lr=0.05, wd=1e-3)
    print("upper", out["l1"], out["l2"], out["norm"], out["hvp_calls"])
