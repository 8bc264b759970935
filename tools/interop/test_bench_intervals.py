"""The benchmarks' paired-ratio intervals (tools/bench/paired.py, used by `make bench`'s engine rows and the
BiSSL upper step) on known inputs: the sign-test interval of the median over n rounds is [x_(k), x_(n+1-k)]
with coverage 1 - 2 P(B <= k - 1), B ~ Binomial(n, 1/2). The coverages are checked against
`scipy.stats.binom.cdf` (tolerance 1e-12: a sum of at most 16 exact binomial terms over 2^n, in float64,
against scipy's incomplete beta function: a few ulps either way) and, for n = 9, against the hand value
1 - 2 (1 + 9) / 512 = 96.09%. No bissl binary is needed.
"""
import pathlib
import random
import sys

import pytest

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is installed by tools/interop.sh")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))
import paired  # noqa: E402


def test_nine_rounds_use_ranks_two_and_eight():
    assert paired.ranks(9) == (2, 8, pytest.approx(1 - 2 * 10 / 512, abs=1e-15))
    assert round(100 * paired.ranks(9)[2], 1) == 96.1
    values = [5.0, 3.0, 9.0, 1.0, 7.0, 2.0, 8.0, 4.0, 6.0]
    iv = paired.interval(values)
    assert (iv["median"], iv["low"], iv["high"], iv["k"], iv["n"]) == (5.0, 2.0, 8.0, 2, 9)


def test_small_rounds_fall_back_to_min_max_with_their_coverage():
    # Below 6 rounds not even [min, max] reaches 95%: 1 - 2 / 2^n.
    for n, want in [(1, 0.0), (2, 0.5), (3, 0.75), (4, 0.875), (5, 0.9375)]:
        assert paired.ranks(n) == (1, n, pytest.approx(want, abs=1e-15))
    assert paired.interval([1.2, 0.8, 1.0]) == {"median": 1.0, "low": 0.8, "high": 1.2, "k": 1, "n": 3,
                                                "coverage": 0.75}
    assert "below 95%" in paired.describe(5) and "93.8%" in paired.describe(5)
    assert "below" not in paired.describe(6) and "96.9%" in paired.describe(6)


@pytest.mark.parametrize("n", range(1, 41))
def test_rank_is_the_largest_with_95_percent_against_scipy(n):
    k, upper, cov = paired.ranks(n)
    assert upper == n + 1 - k
    assert cov == pytest.approx(1 - 2 * scipy_stats.binom.cdf(k - 1, n, 0.5), abs=1e-12)
    if cov >= 0.95:
        # the next rank inward (if any) must fall below 95%
        if k + 1 <= (n + 1) // 2:
            assert 1 - 2 * scipy_stats.binom.cdf(k, n, 0.5) < 0.95
    else:
        assert k == 1


def test_interval_ends_are_order_statistics_whatever_the_order():
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 0.3) for _ in range(12)]
    iv = paired.interval(values)
    s = sorted(values)
    assert (iv["low"], iv["high"], iv["k"]) == (s[2], s[9], 3)
    assert iv["median"] == (s[5] + s[6]) / 2
    rng.shuffle(values)
    assert paired.interval(values) == iv


def test_verdicts():
    assert paired.verdict(1.31, 1.5, 1.3) == "met"
    assert paired.verdict(1.3, 1.5, 1.3) == "met"
    assert paired.verdict(1.0, 1.29, 1.3) == "MISSED"
    assert paired.verdict(1.2, 1.4, 1.3) == "undecided"
    assert paired.verdict(0.4, 0.5, 0.5, at_most=True) == "met"
    assert paired.verdict(0.51, 0.6, 0.5, at_most=True) == "MISSED"
    assert paired.verdict(0.45, 0.55, 0.5, at_most=True) == "undecided"


def test_rounds_alternate_the_order():
    calls = []
    ours, ref = paired.alternate(4, lambda r: calls.append(("ours", r)) or r, lambda r: calls.append(("ref", r)) or -r)
    assert calls == [("ours", 0), ("ref", 0), ("ref", 1), ("ours", 1), ("ours", 2), ("ref", 2), ("ref", 3), ("ours", 3)]
    assert (ours, ref) == ([0, 1, 2, 3], [0, -1, -2, -3])
