"""Summary of tools/experiments/bissl_small.sh: mean and 95% t-interval per arm and metric, paired differences
over seeds (same seed = same fine-tuning head init, data order and augmentations), Markdown tables on stdout and
an SVG dot plot per task (digits: docs/img/bissl_small.svg; other tasks: docs/img/bissl_small_TASK.svg).
Usage: bissl_small_report.py RESULTS.jsonl [--task digits|fashion]"""
import argparse
import collections
import json
import math
import os

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
ap = argparse.ArgumentParser(description="Summary of tools/experiments/bissl_small.sh")
ap.add_argument("results", help="results.jsonl written by bissl_small.sh")
ap.add_argument("--task", default="digits", help="task name (selects the plot file; default digits)")
args = ap.parse_args()
rows = [json.loads(l) for l in open(args.results) if l.strip()]
by = collections.defaultdict(list)
seeded = collections.defaultdict(dict)  # (arm, metric) -> {seed: value}
for r in rows:
    by[(r["arm"], r["metric"])].append(r["value"])
    seeded[(r["arm"], r["metric"])][r["seed"]] = r["value"]


def stats(v):
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan"), len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return m, T975.get(len(v) - 1, 1.96) * sd / math.sqrt(len(v)), len(v)


print("| arm | metric | n | mean | 95% CI half-width | values |")
print("|---|---|---|---|---|---|")
for (arm, metric), v in sorted(by.items()):
    m, h, n = stats(v)
    print(f"| {arm} | {metric} | {n} | {m:.2f} | {h:.2f} | {', '.join(f'{x:.1f}' for x in v)} |")

# Paired differences a - b over the seeds both arms have; theta0 (one shared entry, seed 0) is a constant.
comparisons = [("finetuneTop1", "bissl", "finetune-only"), ("finetuneTop1", "bissl", "noij"),
               ("finetuneTop1", "bissl", "pretext-continued"), ("finetuneTop1", "noij", "finetune-only"),
               ("finetuneTop1", "pretext-continued", "finetune-only"), ("finetuneTop1", "noij", "pretext-continued"),
               ("knn", "bissl", "theta0"), ("knn", "noij", "theta0"), ("knn", "pretext-continued", "theta0"),
               ("knn", "bissl", "pretext-continued"), ("knn", "noij", "pretext-continued"),
               ("linear", "bissl", "theta0"), ("linear", "noij", "theta0"), ("linear", "pretext-continued", "theta0"),
               ("linear", "bissl", "pretext-continued"), ("linear", "noij", "pretext-continued")]
print("\n| metric | comparison | n | per-seed differences | mean | 95% CI half-width |")
print("|---|---|---|---|---|---|")
for metric, a, b in comparisons:
    va, vb = seeded.get((a, metric), {}), seeded.get((b, metric), {})
    if not va or not vb:
        continue
    if b == "theta0":
        (base,) = vb.values()
        diffs = [va[s] - base for s in sorted(va)]
    else:
        diffs = [va[s] - vb[s] for s in sorted(va) if s in vb]
    if not diffs:
        continue
    m, h, n = stats(diffs)
    print(f"| {metric} | {a} − {b} | {n} | {', '.join(f'{d:+.1f}' for d in diffs)} | {m:+.2f} | ±{h:.2f} |")

# SVG: test top-1 after fine-tuning and k-NN top-1 (and, beyond digits, linear-probe top-1), per arm,
# mean +- CI with the seeds as dots
if args.task == "digits":
    panels = [("finetuneTop1", ["finetune-only", "noij", "bissl"], "fine-tune test top-1 (%)"),
              ("knn", ["theta0", "noij", "bissl"], "k-NN top-1 of the frozen backbone (%)")]
else:
    panels = [("finetuneTop1", ["finetune-only", "pretext-continued", "noij", "bissl"], "fine-tune test top-1 (%)"),
              ("knn", ["theta0", "pretext-continued", "noij", "bissl"], "k-NN top-1, frozen backbone (%)"),
              ("linear", ["theta0", "pretext-continued", "noij", "bissl"], "linear-probe top-1, frozen backbone (%)")]
short = {"pretext-continued": "continued"}
PW = 40 + 100 * max(len(arms) for _, arms, _ in panels)
W, H = len(panels) * (PW + 20), 320
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
for k, (metric, arms, title) in enumerate(panels):
    x0 = 20 + k * (PW + 20)
    vals = [x for a in arms for x in by.get((a, metric), [])]
    if not vals:
        continue
    lo, hi = math.floor(min(vals) - 2), math.ceil(max(vals) + 2)
    y = lambda v: 40 + (hi - v) / (hi - lo) * (H - 90)  # noqa: E731
    out.append(f'<text x="{x0}" y="20">{title}</text>')
    for t in range(int(lo), int(hi) + 1, max(1, int((hi - lo) / 6))):
        out.append(f'<line x1="{x0 + 40}" x2="{x0 + PW}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>'
                   f'<text x="{x0}" y="{y(t) + 4:.1f}">{t}</text>')
    for i, a in enumerate(arms):
        v = by.get((a, metric), [])
        if not v:
            continue
        cx = x0 + 80 + i * 100
        m, h, n = stats(v)
        for j, x in enumerate(v):
            out.append(f'<circle cx="{cx - 12 + 6 * j}" cy="{y(x):.1f}" r="3" fill="#999"/>')
        if not math.isnan(h):
            out.append(f'<line x1="{cx + 20}" x2="{cx + 20}" y1="{y(m - h):.1f}" y2="{y(m + h):.1f}" stroke="black" stroke-width="2"/>')
        out.append(f'<circle cx="{cx + 20}" cy="{y(m):.1f}" r="5" fill="#c33"/>'
                   f'<text x="{cx - 20}" y="{H - 25}">{short.get(a, a)}</text>')
out.append("</svg>")
name = "bissl_small.svg" if args.task == "digits" else f"bissl_small_{args.task}.svg"
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "img", name)
os.makedirs(os.path.dirname(path), exist_ok=True)
open(path, "w").write("\n".join(out))
print(f"\nplot: {os.path.normpath(path)}")
