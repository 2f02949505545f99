"""The experiment tree: which node is best, and when a difference is real.

"Best" is numeric, respects the metric's direction, and does not chase
dev-set noise: a challenger replaces the incumbent only when it wins by more
than one standard error of the incumbent's dev score (for a proportion on
n items, sqrt(p(1-p)/n), floored at one item's worth, 1/n).
"""

from __future__ import annotations

import math

from ftdojo.messages import EvalReport, Experiment


def noise_margin(report: EvalReport) -> float:
    if report.n == 0:
        return 0.0
    p = min(max(report.score, 0.0), 1.0)
    return max(math.sqrt(p * (1 - p) / report.n), 1.0 / report.n)


def better(a: float, b: float, direction: str, margin: float = 0.0) -> bool:
    """True when score ``a`` beats ``b`` by more than ``margin`` in the metric's direction."""
    return a > b + margin if direction == "max" else a < b - margin


def best_node(experiments: list[Experiment], direction: str) -> Experiment | None:
    """The incumbent after replaying the tree in creation order with the noise rule."""
    best: Experiment | None = None
    for e in experiments:
        if e.status != "ok" or e.dev is None:
            continue
        if best is None or better(e.dev.score, best.dev.score, direction, noise_margin(best.dev)):  # type: ignore[union-attr]
            best = e
    return best
