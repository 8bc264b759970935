"""Paired rounds against a reference, and the interval of their median ratio (tools/bench/engine.py, align.py).

A row is measured in R rounds; each round runs one process of ours and one of the reference, one after the
other, the order swapped every round (round 1 ours first, round 2 the reference first, ...), so that drifts of
the shared machine's load fall on both sides alike. Each round gives one paired ratio ours/reference.

The ratio reported is the median of the R paired ratios, with the sign-test interval of that median (the
binomial order-statistic interval, distribution-free: it assumes only that the rounds are independent draws
from one continuous distribution): sorted r_(1) <= ... <= r_(R), the interval [r_(k), r_(R+1-k)] covers
the true median with probability 1 - 2 P(B <= k - 1), B ~ Binomial(R, 1/2). k is the largest rank whose
coverage is at least 95%; below R = 6 no rank reaches 95% and the interval is [min, max] with its actual
coverage (R = 5: 93.8%, R = 3: 75.0%), which the benches print. Reference: Conover, "Practical
Nonparametric Statistics", 3rd ed., section 3.2 (the confidence interval for a quantile).
"""
import os
from math import comb

LEVEL = 0.95


def median(values):
    s = sorted(values)
    n = len(s)
    if n == 0:
        raise ValueError("median of no values")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def coverage(n, k):
    """Coverage of [x_(k), x_(n+1-k)] (ranks from 1) for the median of n independent continuous draws."""
    if not 1 <= k <= (n + 1) // 2:
        raise ValueError(f"rank {k} is not a lower rank of {n} values")
    return 1 - 2 * sum(comb(n, i) for i in range(k)) / 2 ** n


def ranks(n, level=LEVEL):
    """(k, n + 1 - k, coverage): the narrowest order-statistic interval of the median with coverage >= level,
    or (1, n, its coverage) when even [min, max] falls short (n < 6 at 95%)."""
    if n < 1:
        raise ValueError("no rounds")
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(n, k + 1) >= level:
        k += 1
    return k, n + 1 - k, coverage(n, k)


def interval(values, level=LEVEL):
    """{"median", "low", "high", "k", "coverage", "n"} of paired values (the ratios of one row's rounds)."""
    n = len(values)
    k, upper, cov = ranks(n, level)
    s = sorted(values)
    return {"median": median(values), "low": s[k - 1], "high": s[upper - 1], "k": k, "n": n, "coverage": cov}


def verdict(low, high, target, at_most=False):
    """"met" when the whole interval is on the target's side, "MISSED" when the whole interval is off it,
    "undecided" when it straddles the target. at_most: the target is an upper bound (ratio <= target)."""
    if at_most:
        return "met" if high <= target else "MISSED" if low > target else "undecided"
    return "met" if low >= target else "MISSED" if high < target else "undecided"


def describe(n, level=LEVEL):
    """One line saying how the interval of n rounds is formed and its actual coverage."""
    k, upper, cov = ranks(n, level)
    short = "" if cov >= level else f", below {level:.0%}: {n} rounds cannot give more"
    return (f"intervals: sign-test (binomial order-statistic) interval of the median of the {n} per-round ratios, "
            f"ranks {k} and {upper} of {n}: coverage {cov:.1%}{short}")


def alternate(rounds, ours, reference):
    """Calls ours(r) and reference(r) once per round r = 0 ... rounds - 1, ours first when r is even and second
    when r is odd; returns ([ours results], [reference results]) in round order."""
    a, b = [], []
    for r in range(rounds):
        if r % 2 == 0:
            a.append(ours(r))
            b.append(reference(r))
        else:
            b.append(reference(r))
            a.append(ours(r))
    return a, b


def load():
    """The load averages (1, 5, 15 min), with a note when the last minute's is above 1.5x the cores (the
    benchmark's own processes keep it near the core count): then other jobs run beside it, torch's 2 OpenMP
    threads spin-wait for each other and its figures collapse (docs/performance.md), so the ratios are not
    those of an idle machine."""
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count() or 1
    note = f" (above 1.5x the {cores} cores: other jobs are running)" if one > 1.5 * cores else ""
    return f"{one:.2f} {five:.2f} {fifteen:.2f}{note}"
