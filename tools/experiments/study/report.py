"""Analysis of the BiSSL study (docs/experiments.md, "BiSSL study"): tables on stdout, figures in docs/img/.

    report.py calibration TASK-calibration.jsonl -> the lambda calibration table, the lambda the choice rule
                                                    picks and whether the stop rule applies there
    report.py protocol TASK-protocol.jsonl       -> JSON {arm: {lr, wd, valTop1}}: per arm the grid point with
                                                    the highest validation top-1 (ties: smaller lr, then wd)
    report.py theta0 theta0_curve.jsonl          -> the pretraining curve table + docs/img/study_theta0.svg
    report.py main TASK-main.jsonl [--task T]    -> per-arm test top-1, the paired comparisons,
                                                    docs/img/study_TASK.svg
Paired comparisons are over seeds (one seed = one alignment seed and the same fine-tuning head init, data
order and augmentations in every arm). For each: the mean difference, its 95% Student-t interval, the
exact two-sided sign-flip permutation p-value (all 2^n sign patterns of the per-seed differences), and the
minimum detectable effect at 80% power, alpha 5% (paired t: (t_0.975 + t_0.8) * sd / sqrt(n)). The primary
comparison is bissl - control; the others are Holm-adjusted together.
"""
import argparse
import itertools
import json
import math
import pathlib

from scipy import stats as st

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("phase", choices=["calibration", "protocol", "theta0", "main"])
ap.add_argument("results")
ap.add_argument("--task", default="digits")
a = ap.parse_args()
rows = [json.loads(l) for l in open(a.results) if l.strip()]
img = pathlib.Path(__file__).resolve().parents[3] / "docs" / "img"


def ci(v):
    n = len(v)
    m = sum(v) / n
    if n < 2:
        return m, float("nan"), float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))
    return m, st.t.ppf(0.975, n - 1) * sd / math.sqrt(n), sd


def sign_flip_p(d):
    obs = abs(sum(d))
    hits = sum(1 for s in itertools.product((1, -1), repeat=len(d)) if abs(sum(x * y for x, y in zip(s, d))) >= obs - 1e-12)
    return hits / 2 ** len(d)


def svg_points(path, title, series, xlabel):
    """series: [(label, values, (mean, half))]; a horizontal dot plot with 95% intervals, zero line."""
    allv = [x for _, v, _ in series for x in v] + [m + s * h for _, _, (m, h) in series for s in (1, -1) if h == h] + [0]
    lo, hi = min(allv) - 0.5, max(allv) + 0.5
    W, L, R, rowh = 720, 250, 30, 34
    H = 50 + rowh * len(series) + 40
    X = lambda v: L + (v - lo) / (hi - lo) * (W - L - R)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{X(0):.1f}" y1="30" x2="{X(0):.1f}" y2="{H - 35}" stroke="#999" stroke-dasharray="4,3"/>']
    for i, (label, v, (m, h)) in enumerate(series):
        y = 50 + rowh * i
        out.append(f'<text x="{L - 8}" y="{y + 4}" text-anchor="end">{label}</text>')
        for x in v:
            out.append(f'<circle cx="{X(x):.1f}" cy="{y}" r="3" fill="#4a7ab5" fill-opacity="0.6"/>')
        if h == h:
            out.append(f'<line x1="{X(m - h):.1f}" y1="{y + 9}" x2="{X(m + h):.1f}" y2="{y + 9}" stroke="#c0392b" stroke-width="2"/>')
        out.append(f'<rect x="{X(m) - 3:.1f}" y="{y + 6}" width="6" height="6" fill="#c0392b"/>')
    for t in range(math.ceil(lo), math.floor(hi) + 1, max(1, round((hi - lo) / 8))):
        out.append(f'<text x="{X(t):.1f}" y="{H - 18}" text-anchor="middle">{t}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 3}" text-anchor="middle">{xlabel}</text></svg>')
    path.write_text("\n".join(out) + "\n")


if a.phase == "calibration":
    # docs/experiments.md, "Protocol": the largest lambda whose held-out pretext loss is at most 10% above
    # the lambda = 0 control's; stop if there the penalty share is below 0.05 and theta_P is within 10% of
    # the control's own distance from theta_0 (relDist < 0.1).
    rs = sorted(rows, key=lambda r: r["lambda"])
    control = next(r for r in rs if r["lambda"] == 0)
    print("| λ | penalty share (last lower step) | held-out pretext loss | upper val top-1 | θ_P val k-NN "
          "| θ_P val linear | ‖θ_P − control‖ / ‖control − θ_0‖ |\n|---|---|---|---|---|---|---|")
    for r in rs:
        name = "0 (control, `--no-ij`)" if r["lambda"] == 0 else f'{r["lambda"]:g}'
        print(f'| {name} | {r["penaltyShare"]:.3f} | {r["pretextHeldout"]:.3f} | {r["upperValTop1"]:.1f} | '
              f'{r["valKnn"]:.1f} | {r["valLinear"]:.1f} | {r["relDist"]:.2f} |')
    ok = [r for r in rs if r["lambda"] > 0 and r["pretextHeldout"] <= 1.1 * control["pretextHeldout"]]
    if not ok:
        print("\nchoice: none (every lambda raises the held-out pretext loss more than 10%)")
    else:
        pick = ok[-1]
        stop = pick["penaltyShare"] < 0.05 and pick["relDist"] < 0.1
        print(f'\nchoice: lambda = {pick["lambda"]:g} (held-out pretext loss {pick["pretextHeldout"]:.3f}, '
              f'control {control["pretextHeldout"]:.3f}); stop rule {"APPLIES: stop" if stop else "does not apply"}'
              f'{" (largest candidate: the edge of the set)" if pick is rs[-1] else ""}')

elif a.phase == "protocol":
    best = {}
    for r in rows:
        key = (r["valTop1"], -r["lr"], -r["wd"])
        if r["arm"] not in best or key > best[r["arm"]][0]:
            best[r["arm"]] = (key, {"lr": r["lr"], "wd": r["wd"], "valTop1": r["valTop1"], "bestEpoch": r["bestEpoch"]})
    print(json.dumps({arm: v for arm, (_, v) in best.items()}, indent=1))

elif a.phase == "theta0":
    print("| segment | epochs | Fashion k-NN | Fashion linear | digits k-NN | digits linear |\n|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r["segment"]):
        print(f'| {r["segment"]} | {r["epochs"]} | {r["fashionKnn"]:.1f} | {r["fashionLinear"]:.1f} | {r["digitsKnn"]:.1f} | {r["digitsLinear"]:.1f} |')
    # a line plot of the four curves against epochs
    rs = sorted(rows, key=lambda r: r["epochs"])
    keys = [("fashionKnn", "#4a7ab5"), ("fashionLinear", "#1f3f66"), ("digitsKnn", "#e08a3c"), ("digitsLinear", "#8a4a10")]
    vals = [r[k] for r in rs for k, _ in keys]
    lo, hi, e1 = math.floor(min(vals)) - 1, math.ceil(max(vals)) + 1, rs[-1]["epochs"]
    W, H, L, B = 640, 360, 50, 40
    X = lambda e: L + e / e1 * (W - L - 20)
    Y = lambda v: H - B - (v - lo) / (hi - lo) * (H - B - 30)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">theta_0: SimCLR on Fashion-MNIST, frozen-backbone top-1 (val)</text>']
    for i, (k, c) in enumerate(keys):
        pts = " ".join(f"{X(r['epochs']):.1f},{Y(r[k]):.1f}" for r in rs)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{L + 10}" y="{40 + 15 * i}" fill="{c}">{k}</text>')
    for v in range(lo, hi + 1, max(1, (hi - lo) // 6)):
        out.append(f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v}</text>')
    for r in rs:
        out.append(f'<text x="{X(r["epochs"]):.1f}" y="{H - B + 16}" text-anchor="middle">{r["epochs"]}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 4}" text-anchor="middle">pretraining epochs</text></svg>')
    (img / "study_theta0.svg").write_text("\n".join(out) + "\n")

else:
    by = {}
    for r in rows:
        by.setdefault(r["arm"], {})[r["seed"]] = r
    arms = [x for x in ["finetune-only", "control", "noij", "bissl", "thetaD"] if x in by]
    print("| arm | n | test top-1 mean | 95% CI | linear probe (frozen) | k-NN (frozen) |\n|---|---|---|---|---|---|")
    for arm in arms:
        v = [r["testTop1"] for r in by[arm].values()]
        m, h, _ = ci(v)
        lm, lh, _ = ci([r["linear"] for r in by[arm].values()])
        km, kh, _ = ci([r["knn"] for r in by[arm].values()])
        print(f"| {arm} | {len(v)} | {m:.2f} | ±{h:.2f} | {lm:.2f} ± {lh:.2f} | {km:.2f} ± {kh:.2f} |")
    comps = [("bissl", "control"), ("noij", "control"), ("bissl", "noij"), ("bissl", "finetune-only"), ("thetaD", "finetune-only")]
    res = []
    for x, y in comps:
        if x not in by or y not in by:
            continue
        seeds = sorted(set(by[x]) & set(by[y]))
        if len(seeds) < 2:
            continue
        d = [by[x][s]["testTop1"] - by[y][s]["testTop1"] for s in seeds]
        m, h, sd = ci(d)
        n = len(d)
        mde = (st.t.ppf(0.975, n - 1) + st.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)
        res.append({"comparison": f"{x} - {y}", "n": n, "diffs": d, "mean": m, "half": h, "p": sign_flip_p(d), "mde": mde})
    # Holm over the secondary comparisons (all but the primary, the first)
    sec = sorted(res[1:], key=lambda r: r["p"])
    running = 0.0
    for i, r in enumerate(sec):
        running = max(running, min(1.0, (len(sec) - i) * r["p"]))
        r["pAdj"] = running
    if res:
        res[0]["pAdj"] = res[0]["p"]
    print("\n| comparison (test top-1, points) | n | per-seed differences | mean | 95% CI | sign-flip p | Holm p | MDE (80%) |\n|---|---|---|---|---|---|---|---|")
    for r in res:
        ds = ", ".join(f"{x:+.1f}" for x in r["diffs"])
        print(f'| {r["comparison"]}{" (primary)" if r is res[0] else ""} | {r["n"]} | {ds} | {r["mean"]:+.2f} | '
              f'[{r["mean"] - r["half"]:+.2f}, {r["mean"] + r["half"]:+.2f}] | {r["p"]:.3f} | {r["pAdj"]:.3f} | {r["mde"]:.2f} |')
    if res:
        svg_points(img / f"study_{a.task}.svg", f"BiSSL study ({a.task}): paired test top-1 differences per seed",
                   [(r["comparison"], r["diffs"], (r["mean"], r["half"])) for r in res], "difference in test top-1 (points); squares: mean, bars: 95% CI")
