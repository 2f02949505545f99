"""Multi-run statistics: pure functions over scores, checked by hand-computed tests.

* ``bootstrap_ci``: percentile bootstrap CI of a mean; exact (every resample
  enumerated) when there are at most 8 values, Monte Carlo with a fixed seed
  otherwise, so a report is reproducible.
* ``ranks`` / ``wins``: per task, agents ranked by mean score in the task's
  direction (ties share the average rank); wins count tasks an agent is best
  on (ties count for each tied agent).
* ``sign_flip_test``: exact paired permutation test of a mean difference
  (all 2^n sign flips up to n = 16, seeded Monte Carlo above).
* ``sign_test``: exact two-sided binomial test on paired item outcomes,
  ignoring ties (McNemar's exact test for 0/1 scores).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence

EXACT_BOOTSTRAP_MAX_N = 8
EXACT_FLIP_MAX_N = 16


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _percentile(sorted_vals: Sequence[float], weights: Sequence[float] | None, q: float) -> float:
    """Lower percentile (the smallest value whose cumulative share reaches q)."""
    if weights is None:
        weights = [1.0] * len(sorted_vals)
    total = sum(weights)
    acc = 0.0
    for v, w in zip(sorted_vals, weights, strict=True):
        acc += w
        if acc / total >= q - 1e-12:
            return v
    return sorted_vals[-1]


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    if n <= EXACT_BOOTSTRAP_MAX_N:
        # Every ordered resample is equally likely; enumerate the multiset counts instead of n^n tuples.
        dist: dict[float, float] = {}
        for combo in itertools.combinations_with_replacement(range(n), n):
            counts = [combo.count(i) for i in set(combo)]
            ways = math.factorial(n) / math.prod(math.factorial(c) for c in counts)
            m = round(sum(values[i] for i in combo) / n, 12)
            dist[m] = dist.get(m, 0.0) + ways
        means = sorted(dist)
        weights = [dist[m] for m in means]
        return _percentile(means, weights, lo_q), _percentile(means, weights, hi_q)
    rng = random.Random(seed)
    boots = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(n_boot))
    return _percentile(boots, None, lo_q), _percentile(boots, None, hi_q)


def ranks(table: dict[str, dict[str, float]], direction: dict[str, str]) -> dict[str, dict[str, float]]:
    """``table[task][agent]`` mean score -> rank per task (1 = best, ties share the average)."""
    out: dict[str, dict[str, float]] = {}
    for task, scores in table.items():
        sign = -1.0 if direction.get(task, "max") == "max" else 1.0
        ordered = sorted(scores, key=lambda a: sign * scores[a])
        r: dict[str, float] = {}
        i = 0
        while i < len(ordered):
            j = i
            while j + 1 < len(ordered) and math.isclose(scores[ordered[j + 1]], scores[ordered[i]], abs_tol=1e-12):
                j += 1
            for a in ordered[i : j + 1]:
                r[a] = (i + j) / 2 + 1
            i = j + 1
        out[task] = r
    return out


def average_rank(rank_table: dict[str, dict[str, float]]) -> dict[str, float]:
    agents = {a for r in rank_table.values() for a in r}
    return {a: statistics.fmean(r[a] for r in rank_table.values() if a in r) for a in sorted(agents)}


def wins(rank_table: dict[str, dict[str, float]]) -> dict[str, int]:
    """Tasks on which each agent is best (rank 1 or tied for it)."""
    agents = {a for r in rank_table.values() for a in r}
    out = {a: 0 for a in sorted(agents)}
    for r in rank_table.values():
        best = min(r.values())
        for a, v in r.items():
            out[a] += math.isclose(v, best)
    return out


def sign_flip_test(diffs: Sequence[float], n_mc: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of a paired permutation test: is the mean difference zero?"""
    n = len(diffs)
    if n == 0:
        return 1.0
    observed = abs(sum(diffs))
    if n <= EXACT_FLIP_MAX_N:
        hits = sum(
            abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12
            for signs in itertools.product((1, -1), repeat=n)
        )
        return hits / 2**n
    rng = random.Random(seed)
    hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed - 1e-12 for _ in range(n_mc))
    return (hits + 1) / (n_mc + 1)


def sign_test(a: Sequence[float], b: Sequence[float]) -> tuple[int, int, float]:
    """Items where a beats b, items where b beats a, and the exact two-sided binomial p-value."""
    up = sum(x > y for x, y in zip(a, b, strict=True))
    down = sum(x < y for x, y in zip(a, b, strict=True))
    n = up + down
    if n == 0:
        return 0, 0, 1.0
    k = min(up, down)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return up, down, min(1.0, 2 * tail)
