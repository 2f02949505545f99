"""Where a run's wall time went, from its record's event log.

Each event that has a duration is one phase: start-up (actors, imports, the task card), planning, curation,
validation (the smoke train apart from the other checks), training, dev evaluation, diagnosis, releasing servers, the sealed
test and the leak check. ``iteration`` events span the phases of one iteration and are not counted again.
What no event covers is ``unaccounted`` (supervisor bookkeeping, Ray round trips, waits), so the phases add
up to the record's wall time. Training and evaluation are ``train``, ``evaluate`` (dev) and ``test``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

WORK = ("train", "evaluate", "test")
"""The phases a run exists for."""
_NAMES = {"run_start": "startup", "finalize": "test"}


def breakdown(record: dict[str, Any]) -> dict[str, float]:
    """Seconds per phase of a run record (as JSON), ``unaccounted`` included; they sum to ``wall_s``."""
    out: Counter[str] = Counter()
    for e in record.get("events", []):
        if e.get("duration_s") is None or e["event"] == "iteration":
            continue
        name = _NAMES.get(e["event"], e["event"])
        if name == "check":  # within its plan's ``validate``: only the smoke train is broken out
            if e.get("data", {}).get("name") == "smoke_train":
                out["smoke_train"] += e["duration_s"]
                out["checks"] -= e["duration_s"]
            continue
        out["checks" if name == "validate" else name] += e["duration_s"]
    wall = float(record["wall_s"])
    out["unaccounted"] = wall - sum(out.values())
    return dict(out)


def work_share(record: dict[str, Any]) -> float:
    """The share of the run's wall time spent training or evaluating."""
    b = breakdown(record)
    return sum(b.get(k, 0.0) for k in WORK) / float(record["wall_s"]) if record["wall_s"] else 0.0


def render(name: str, record: dict[str, Any]) -> str:
    """A table of the phases, longest first, and the share outside training and evaluation."""
    b, wall = breakdown(record), float(record["wall_s"])
    lines = [f"{name}: {wall:.1f} s wall", f"  {'phase':<14}{'seconds':>10}{'share':>8}"]
    for k, v in sorted(b.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {k:<14}{v:>10.1f}{v / wall if wall else 0:>8.1%}")
    share = work_share(record)
    lines.append(f"  training + evaluation {share:.1%}, outside them {1 - share:.1%}")
    if record.get("peak_rss_mb"):
        lines.append("  peak memory: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in record["peak_rss_mb"].items()))
        if record.get("memory_bound_mb") is not None:
            over = record.get("over_memory_bound") or []
            lines.append(f"  memory bound {record['memory_bound_mb']:.0f} MiB per model-holding process: "
                         + (f"ABOVE it: {', '.join(over)}" if over else "every process within it"))
    return "\n".join(lines)
