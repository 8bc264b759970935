"""`bissl eval` intervals and `bissl compare` statistics against scipy: three small random ResNets
(torch, imported) are evaluated on the 8x8 digits; from the per-pair discordant counts bissl reports,
the exact McNemar p-value must equal `scipy.stats.binomtest(b, b + c, 0.5).pvalue`, the Holm
adjustment must equal the step-down rule recomputed here from scipy's p-values, and every top-1
interval must equal scipy's Wilson interval (`BinomTestResult.proportion_ci(method="wilson")`).
Tolerance: 1e-9 relative on p-values (both sides sum the binomial tail in float64: a few ulps per
term over at most a few thousand terms) and 1e-9 absolute on interval ends (closed form in float64).
"""
import json
import pathlib
import sys

import pytest
import torch

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is installed by tools/interop.sh")

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from reference_resnet import ResNet, randomized  # noqa: E402

DIGITS = f"h5:{ROOT}/data/digits/digits.h5"


@pytest.fixture(scope="module")
def entries(tmp_path_factory, bissl):
    tmp = tmp_path_factory.mktemp("compare")
    zoo = str(tmp / "zoo")
    names = []
    for seed in (1, 2, 3):
        model = randomized(ResNet(18, width=4, stem="small", num_classes=10), seed=seed)
        path = tmp / f"m{seed}.pth"
        torch.save(model.state_dict(), path)
        bissl("import", path, "--zoo", zoo, "--name", f"m{seed}")
        names.append(f"m{seed}")
    return zoo, names


def holm(p):
    """Holm (1979) step-down adjusted p-values, written from the definition."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def wilson(k, n):
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return 100 * ci.low, 100 * ci.high


def test_compare_matches_scipy(bissl, entries):
    zoo, names = entries
    report = json.loads(bissl("compare", *names, "--data", DIGITS, "--zoo", zoo, "--json").stdout)
    n = report["images"]
    assert n == 1797 and report["correction"] == "holm" and len(report["pairs"]) == 3
    for e in report["entries"]:
        k = round(e["top1"] * n / 100)
        lo, hi = wilson(k, n)
        assert abs(e["top1Lower"] - lo) <= 1e-9 and abs(e["top1Upper"] - hi) <= 1e-9
    p = []
    for pair in report["pairs"]:
        c = pair["comparison"]
        b, d = c["onlyARight"], c["onlyBRight"]
        assert b + d > 0, "random models should disagree on some images"
        want = scipy_stats.binomtest(b, b + d, 0.5).pvalue
        assert c["mcnemarP"] == pytest.approx(want, rel=1e-9, abs=0)
        assert c["difference"] == pytest.approx(100 * (b - d) / n, abs=1e-9)
        assert c["differenceLower"] <= c["difference"] <= c["differenceUpper"]
        p.append(want)
    for pair, want in zip(report["pairs"], holm(p)):
        assert pair["comparison"]["holmP"] == pytest.approx(want, rel=1e-9, abs=0)
        significant = pair["comparison"]["holmP"] <= 0.05
        assert ("better than" in pair["verdict"]) == significant
        assert ("no significant difference at 5%" in pair["verdict"]) == (not significant)


def test_eval_interval_matches_scipy(bissl, entries):
    zoo, names = entries
    m = json.loads(bissl("eval", names[0], "--data", DIGITS, "--zoo", zoo, "--json").stdout)["metrics"]
    k = round(m["top1"] * m["count"] / 100)
    lo, hi = wilson(k, m["count"])
    assert abs(m["top1Lower"] - lo) <= 1e-9 and abs(m["top1Upper"] - hi) <= 1e-9
    assert m["meanPerClassLower"] <= m["meanPerClassAccuracy"] <= m["meanPerClassUpper"]
    assert m["bootstrapResamples"] == 10000


def test_compare_refuses_one_entry_and_duplicates(bissl, entries):
    zoo, names = entries
    for args in ([names[0]], [names[0], names[0]]):
        proc = bissl("compare", *args, "--data", DIGITS, "--zoo", zoo, check=False)
        assert proc.returncode != 0 and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
