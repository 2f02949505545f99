"""The experiment tree: which node is best, and when a difference is real.

"Best" is numeric, respects the metric's direction, and does not chase
dev-set noise: a challenger replaces the incumbent only when it wins by more
than one standard error of the incumbent's dev score (for a proportion on
n items, sqrt(p(1-p)/n), floored at one item's worth, 1/n). Among probes the
bar is ``PROBE_MARGIN_SE`` standard errors: a probe is a short fit scored on a
few items, and its ranking of data choices need not hold for the full fit.
"""

from __future__ import annotations

import math

from ftdojo.messages import EvalReport, Experiment


PROBE_MARGIN_SE = 2.0
"""Standard errors a later probe must win by. Probes of 16 steps on the bundled model ranked chem-rings' and
bio-gc's data choices against what 24 steps and the full fits showed (bench/RESULTS.md); two of the 30-item
standard errors is about 1.4 standard errors of the difference of two such scores."""


def noise_margin(report: EvalReport) -> float:
    if report.n == 0:
        return 0.0
    p = min(max(report.score, 0.0), 1.0)
    return max(math.sqrt(p * (1 - p) / report.n), 1.0 / report.n)


def is_probe(e: Experiment) -> bool:
    return e.plan is not None and e.plan.probe


def best_score(direction: str) -> float:
    """The metric's best possible score (a proportion's): 1 when higher is better, 0 when lower is."""
    return 1.0 if direction == "max" else 0.0


def better(a: float, b: float, direction: str, margin: float = 0.0) -> bool:
    """True when score ``a`` beats ``b`` by more than ``margin`` in the metric's direction."""
    return a > b + margin if direction == "max" else a < b - margin


def best_node(experiments: list[Experiment], direction: str, probes: bool = False) -> Experiment | None:
    """The incumbent after replaying the tree in creation order with the noise rule, among the full fits
    (scored on all of dev), or among the probes (``Plan.probe``, scored on its first items) with ``probes``."""
    best: Experiment | None = None
    bar = PROBE_MARGIN_SE if probes else 1.0
    for e in experiments:
        if e.status != "ok" or e.dev is None or is_probe(e) != probes:
            continue
        if best is None or better(e.dev.score, best.dev.score, direction, bar * noise_margin(best.dev)):  # type: ignore[union-attr,arg-type]
            best = e
    return best
