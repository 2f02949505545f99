"""Answer extraction and scoring: small, pure, registry-backed.

A task names its extractor pattern and metric; the evaluator and the
validator (parseable-target check) use the same functions, so "what counts as
parseable" is one definition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from fractions import Fraction

from ftdojo.errors import UnknownName


def extract(output: str, pattern: str) -> str | None:
    """Last match of ``pattern``'s first group in ``output`` (None: unparseable)."""
    matches = re.findall(pattern, output)
    if not matches:
        return None
    last = matches[-1]
    value = last[0] if isinstance(last, tuple) else last
    return normalize(value)


def normalize(value: str) -> str:
    return value.strip().rstrip(".").strip().replace(",", "") if value else value


def _as_number(value: str) -> float | None:
    try:
        return float(Fraction(value))
    except (ValueError, ZeroDivisionError):
        try:
            return float(value)
        except ValueError:
            return None


def exact(pred: str, gold: str, tolerance: float = 0.0) -> float:
    return float(normalize(pred).lower() == normalize(gold).lower())


def numeric(pred: str, gold: str, tolerance: float = 1e-6) -> float:
    p, g = _as_number(normalize(pred)), _as_number(normalize(gold))
    if p is None or g is None or math.isnan(p):
        return 0.0
    return float(abs(p - g) <= tolerance * max(1.0, abs(g)))


def choice(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Choice accuracy: the chosen option (letter or label), case-insensitive, ignoring brackets."""
    def key(v: str) -> str:
        return normalize(v).strip("()[] ").lower()

    return float(key(pred) == key(gold))


def f1(pred: str, gold: str, tolerance: float = 0.0) -> float:
    """Token F1 between the extracted answer and the gold answer (partial credit for names)."""
    p, g = normalize(pred).lower().split(), normalize(gold).lower().split()
    common = sum(min(p.count(w), g.count(w)) for w in set(p))
    if not p or not g or not common:
        return float(p == g)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


METRICS: dict[str, Callable[[str, str, float], float]] = {"exact": exact, "numeric": numeric, "choice": choice, "f1": f1}


def metric(name: str) -> Callable[[str, str, float], float]:
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownName("metric", name, list(METRICS)) from None


def score_outputs(
    outputs: list[str], golds: list[str], pattern: str, metric_name: str, tolerance: float = 1e-6
) -> tuple[list[float], list[str | None]]:
    """Per-item scores and extractions; an unparseable output scores 0."""
    fn = metric(metric_name)
    extracted = [extract(o, pattern) for o in outputs]
    scores = [0.0 if e is None else fn(e, g, tolerance) for e, g in zip(extracted, golds, strict=True)]
    return scores, extracted
