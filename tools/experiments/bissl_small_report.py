"""Summary of tools/experiments/bissl_small.sh: mean and 95% t-interval per arm and metric, a Markdown
table on stdout and an SVG dot plot (docs/img/bissl_small.svg). Usage: bissl_small_report.py RESULTS.jsonl"""
import collections
import json
import math
import os
import sys

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = collections.defaultdict(list)
for r in rows:
    by[(r["arm"], r["metric"])].append(r["value"])


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

# SVG: test top-1 after fine-tuning and k-NN top-1, per arm, mean +- CI with the seeds as dots
panels = [("finetuneTop1", ["finetune-only", "noij", "bissl"], "fine-tune test top-1 (%)"),
          ("knn", ["theta0", "noij", "bissl"], "k-NN top-1 of the frozen backbone (%)")]
W, H, PW = 720, 320, 340
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
                   f'<text x="{cx - 20}" y="{H - 25}">{a}</text>')
out.append("</svg>")
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "img", "bissl_small.svg")
os.makedirs(os.path.dirname(path), exist_ok=True)
open(path, "w").write("\n".join(out))
print(f"\nplot: {os.path.normpath(path)}")
