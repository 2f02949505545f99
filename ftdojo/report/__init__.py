"""The bench report, rebuilt from run records alone: ``results.json`` (the typed summary), ``results.md``
and ``report.html``; and the published records (``export``) and the README's calibration block.

``ftdojo.report.summary`` computes, ``ftdojo.report.render`` draws; this module
writes files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ftdojo.datafiles import atomic_write_text
from ftdojo.errors import UserError
from ftdojo.messages import RunRecord
from ftdojo.report.render import calibration_markdown, html, markdown, progress_markdown, readme_block
from ftdojo.report.summary import (
    BASELINES,
    LEARNABLE_GAIN,
    SIGNIFICANCE,
    Calibration,
    Damaged,
    DamagedRecord,
    ReportSummary,
    calibration,
    headline,
    load_records,
    load_store,
    read_record,
    set_aside,
    progress,
    summarize,
    verdict,
)

__all__ = [
    "BASELINES", "LEARNABLE_GAIN", "README_BEGIN", "README_END", "SIGNIFICANCE", "Calibration", "Damaged", "DamagedRecord",
    "ReportSummary", "calibration", "calibration_markdown", "export", "fill_readme", "headline", "html", "load_records",
    "load_store", "markdown", "progress", "progress_markdown", "publish", "read_record", "readme_block", "set_aside", "slim",
    "summarize", "verdict", "warn_damaged", "write",
]

def slim(r: RunRecord) -> RunRecord:
    """A record fit to publish: every number the tables use, none of the bulk or the sealed text.

    Dropped: error samples (a test sample quotes a sealed item and its answer), dev item scores and
    error samples of each iteration, and every trace event but the dev evaluations the efficiency
    table times. Kept: keys, hashes, test item scores (paired tests), iterations with their plans,
    checks, losses and dev scores."""
    bare = {"errors": [], "item_scores": []}
    exps = [e.model_copy(update={"dev": e.dev.model_copy(update=bare) if e.dev else None}) for e in r.experiments]
    return r.model_copy(update={
        "test": r.test.model_copy(update={"errors": []}) if r.test else None,
        "dev": r.dev.model_copy(update=bare) if r.dev else None,
        "experiments": exps,
        "events": [ev for ev in r.events if ev.event == "evaluate"],
    })

def export(out: Path, dest: Path) -> int:
    """Copy a bench folder's run records, slimmed (``slim``), into ``dest/runs``: results to commit
    or carry to another machine, where ``ftdojo report dest`` rebuilds the tables and copying the
    records into a bench's ``--out/runs`` lets the same code resume without rerunning them."""
    records, damaged = load_store(out)
    warn_damaged(damaged)
    if not records:
        raise UserError(f"{out}/runs: no run records to export; give a bench output folder (--out)")
    (dest / "runs").mkdir(parents=True, exist_ok=True)
    for r in records:
        atomic_write_text(dest / "runs" / f"{r.key.slug}.json", slim(r).model_dump_json() + "\n")
    return len(records)

README_BEGIN = "<!-- ftdojo report: calibration -->"

README_END = "<!-- /ftdojo report -->"

def fill_readme(readme: Path, block: str) -> None:
    """Replace the text between the README's two markers with ``block`` (the markers stay)."""
    try:
        text = readme.read_text()
    except OSError as e:
        raise UserError(f"--readme {readme}: cannot read it ({e.strerror}); give an existing Markdown file") from None
    a, b = text.find(README_BEGIN), text.find(README_END)
    if a < 0 or b < a:
        raise UserError(f"--readme {readme}: no '{README_BEGIN}' ... '{README_END}' pair; put the two markers, "
                        f"on lines of their own, where the calibration table goes")
    atomic_write_text(readme, text[: a + len(README_BEGIN)] + "\n" + block.strip("\n") + "\n" + text[b:])

def write(out: Path, wall_s: float | None = None, slugs: set[str] | None = None) -> str:
    """Rebuild the report from ``out/runs``; damaged records are set aside, warned about on stderr
    and listed in the report."""
    records, damaged = load_store(out, slugs)
    warn_damaged(damaged)
    return publish(out, summarize(records, damaged), wall_s)


def warn_damaged(damaged: list[Damaged]) -> None:
    for d in damaged:
        print(f"warning: {d.file}: damaged run record ({d.problem}); set aside as {d.moved_to}", file=sys.stderr)

def publish(out: Path, summary: ReportSummary, wall_s: float | None = None) -> str:
    """Write results.md, results.json and report.html for ``summary`` into ``out``; return the Markdown."""
    if wall_s is not None:
        summary = summary.model_copy(update={"bench_wall_s": wall_s})
    md = markdown(summary, wall_s)
    atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "results.json", summary.model_dump_json(indent=2) + "\n")
    atomic_write_text(out / "report.html", html(summary, md))
    return md
