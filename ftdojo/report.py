"""Reading the run store and summarising it: results table in Markdown and JSON."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from ftdojo.messages import RunRecord
from ftdojo.paths import atomic_write_text


def load_records(out: Path) -> list[RunRecord]:
    records = []
    for p in sorted((out / "runs").glob("*.json")):
        records.append(RunRecord.model_validate_json(p.read_text()))
    return records


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def summarize(records: list[RunRecord]) -> dict[str, object]:
    """Per task x agent: test and dev scores over seeds (0-1), wall time, failures."""
    cells: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        cells[(r.key.task, r.key.agent)].append(r)
    rows = []
    for (task, agent), rs in sorted(cells.items()):
        ok = [r for r in rs if r.status == "ok" and r.test is not None and not r.leak_flagged and not r.provenance_flagged]
        rows.append(
            {
                "task": task,
                "agent": agent,
                "seeds": sorted(r.key.seed for r in rs),
                "test": [r.test.score for r in ok if r.test],
                "dev": [r.dev.score for r in ok if r.dev],
                "failed": sum(r.status != "ok" for r in rs),
                "leak_flagged": sum(r.leak_flagged for r in rs),
                "provenance_flagged": sum(r.provenance_flagged for r in rs),
                "fallback_to_base": sum(r.fallback_to_base for r in rs),
                "wall_s": sum(r.wall_s for r in rs),
            }
        )
    return {"rows": rows}


def markdown(summary: dict[str, object], wall_s: float | None = None) -> str:
    rows: list[dict] = summary["rows"]  # type: ignore[assignment]
    tasks = sorted({r["task"] for r in rows})
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    by = {(r["task"], r["agent"]): r for r in rows}
    lines = [
        "Held-out **test** score (%, mean ± std over seeds; dev in brackets). "
        "Failed, leak-flagged and provenance-flagged runs are excluded and counted in the notes.",
        "",
        "| task | " + " | ".join(agents) + " |",
        "|---|" + "---|" * len(agents),
    ]
    notes = []
    for t in tasks:
        cells = []
        for a in agents:
            r = by.get((t, a))
            if r is None:
                cells.append("—")
                continue
            cells.append(f"{_fmt(r['test'])} [{_fmt(r['dev'])}]")
            for what in ("failed", "leak_flagged", "provenance_flagged", "fallback_to_base"):
                if r[what]:
                    notes.append(f"- {t} / {a}: {r[what]} run(s) {what.replace('_', ' ')}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *notes]
    if wall_s is not None:
        lines += ["", f"Bench wall time: {wall_s / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def write(out: Path, wall_s: float | None = None) -> str:
    summary = summarize(load_records(out))
    md = markdown(summary, wall_s)
    atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    return md
