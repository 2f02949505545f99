"""The report's numbers: a typed, versioned summary computed from run records alone.

``summarize`` computes everything (statistics in ``ftdojo.stats``): per task x
agent mean ± std over seeds with bootstrap 95% CIs; ranks, average rank and
wins; paired comparisons of every two agents on the same tasks and seeds (a
sign-flip permutation test over (task, seed) pairs, and an exact sign test
over the paired test items); efficiency figures (successful iterations, time
to the first valid model, compute fail-fast saved, LLM tokens and cost); the
calibration verdict; and flagged runs (failed, leaked, substituted model),
which are reported apart and kept out of every headline figure. The
renderers (``ftdojo.report.render``) only read it.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ftdojo import stats
from ftdojo.errors import UserError
from ftdojo.messages import RunRecord

SUMMARY_VERSION = 1
"""Version of ``ReportSummary`` (``results.json``)."""



class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Cell(Model):
    """One task x agent: the test scores of its counted seeds and their statistics."""

    task: str
    agent: str
    seeds: list[int]
    """Every seed that ran (counted or not)."""
    n: int
    """Seeds counted in the headline (ok, not flagged)."""
    test: list[float]
    dev: list[float]
    test_mean: float
    """Mean test score (NaN when no seed counts)."""
    test_std: float
    test_ci95: list[float]
    """Bootstrap 95% interval of the mean (exact enumeration up to 8 seeds)."""
    dev_mean: float
    failed: int
    leak_flagged: int
    provenance_flagged: int
    fallback_to_base: int
    wall_s: float


class Paired(Model):
    """Two agents on the same tasks and seeds."""

    a: str
    b: str
    pairs: int
    """(task, seed) pairs both ran."""
    mean_diff: float
    """Mean test-score difference a - b in each task's better direction."""
    a_better_pairs: int
    b_better_pairs: int
    p_sign_flip: float
    """Sign-flip permutation test over the pairs."""
    items: int
    """Test items both scored, seeds pooled."""
    a_better_items: int
    b_better_items: int
    p_items: float
    """Exact sign test over the items."""


class Efficiency(Model):
    """What one agent's runs spent and how often they produced a valid model."""

    runs: int
    iterations: int
    ok_iterations: int
    rejected: int
    failed_iterations: int
    ok_share: float | None
    ok_per_hour: float | None
    time_to_first_valid_s: float | None
    failfast_saved_s: float
    train_steps: float
    dev_evals: float
    wall_s: float
    llm_tokens: float
    """Per run: backbone tokens (planner, diagnostician)."""
    data_tokens: float
    """Per run: data-model tokens (synthesis)."""
    llm_cost_usd: float
    """Per run: both at their configured prices."""


class Flagged(Model):
    """A run kept out of the statistics, and why."""

    run: str
    task: str
    agent: str
    seed: int
    why: str
    test: float | None


class CalibrationRow(Model):
    """One task of the calibration: is it learnable, does curation matter."""

    task: str
    zero_shot: float
    naive_sft: float | None
    curated_agent: str | None
    """The best agent that is not a baseline."""
    curated: float | None
    best_agent: str
    gain: float | None
    """Best agent minus zero-shot (None until some agent trains)."""
    learnable: bool | None
    curation_matters: bool | None
    vs_naive: tuple[int, int, float] | None
    """Items the curated agent got right and naive-sft wrong, the reverse, and the sign test's p."""
    curation_significant: bool | None
    seeds: list[int]
    """Seeds behind zero-shot, naive-sft and the curated agent."""


class Calibration(Model):
    rows: list[CalibrationRow]
    learnable: int
    curation_matters: int
    curation_significant: int
    tasks: int
    """Tasks judged for learnability (some agent trained)."""
    judged: int
    """Tasks judged for curation (naive-sft and a curated agent both ran)."""


class Damaged(Model):
    """A run record that could not be read: set aside, named in the report, its run redone by the next bench."""

    file: str
    problem: str
    """The first thing wrong with it, one line."""
    moved_to: str


class ReportSummary(Model):
    """Everything the report shows, computed from run records alone; ``results.json`` is this, serialised."""

    version: int = SUMMARY_VERSION
    tasks: list[str]
    agents: list[str]
    direction: dict[str, str]
    rows: list[Cell]
    ranks: dict[str, dict[str, float]]
    average_rank: dict[str, float]
    wins: dict[str, int]
    paired: list[Paired]
    efficiency: dict[str, Efficiency]
    flagged: list[Flagged]
    curves: dict[str, dict[str, list[list[float | None]]]]
    """Per task and agent, each counted run's dev score by iteration."""
    normalised: dict[str, dict[str, float]] = {}
    """Per agent and task: (agent - zero-shot) / (reference - zero-shot), where both ran."""
    normalised_mean: dict[str, float] = {}
    """Per agent: its normalised score's mean over those tasks."""
    calibration: Calibration | None
    bench_wall_s: float | None = None
    damaged: list[Damaged] = []
    """Records found damaged (torn, truncated, edited) and set aside under ``runs/damaged/``."""

class DamagedRecord(UserError):
    """A run record file that does not parse or validate."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: damaged run record ({problem})")


def read_record(path: Path) -> RunRecord:
    """One run record; a torn, truncated or edited file raises ``DamagedRecord`` naming the first problem."""
    try:
        return RunRecord.model_validate_json(path.read_bytes())
    except OSError as e:
        raise DamagedRecord(path, e.strerror or type(e).__name__) from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise DamagedRecord(path, (f"{where}: " if where else "") + err["msg"].splitlines()[0]) from None


def set_aside(e: DamagedRecord) -> Damaged:
    """Move a damaged record into ``runs/damaged/`` (kept for inspection, out of every table)."""
    src = Path(e.path)
    dest_dir = src.parent / "damaged"
    dest_dir.mkdir(exist_ok=True)
    dest, n = dest_dir / src.name, 1
    while dest.exists():
        dest, n = dest_dir / f"{src.stem}.{n}{src.suffix}", n + 1
    src.replace(dest)
    return Damaged(file=str(src), problem=e.problem, moved_to=str(dest))


def load_store(out: Path, slugs: set[str] | None = None) -> tuple[list[RunRecord], list[Damaged]]:
    """The run store's records, and the damaged ones it set aside (``set_aside``)."""
    records, damaged = [], []
    for p in sorted((out / "runs").glob("*.json")):
        try:
            records.append(read_record(p))
        except DamagedRecord as e:
            damaged.append(set_aside(e))
    return _pick(records, slugs), damaged


def load_records(out: Path, slugs: set[str] | None = None) -> list[RunRecord]:
    """The run store's records; ``slugs`` limits them to one bench's runs. Otherwise, where a
    folder holds several records of the same task, agent, seed and profile (runs of older code
    or configs), the newest counts. Damaged records are set aside (``load_store`` names them)."""
    return load_store(out, slugs)[0]


def _pick(records: list[RunRecord], slugs: set[str] | None) -> list[RunRecord]:
    if slugs is not None:
        return [r for r in records if r.key.slug in slugs]
    newest: dict[tuple[str, str, int, str], RunRecord] = {}
    for r in records:
        k = (r.key.task, r.key.agent, r.key.seed, r.key.profile)
        if k not in newest or r.started_at > newest[k].started_at:
            newest[k] = r
    return sorted(newest.values(), key=lambda r: r.key.slug)

def headline(r: RunRecord) -> bool:
    """Whether a run counts in headline statistics."""
    return r.status == "ok" and r.test is not None and not r.leak_flagged and not r.provenance_flagged

def _why_flagged(r: RunRecord) -> str:
    if r.status != "ok":
        return f"failed: {r.error}"
    if r.leak_flagged:
        worst = max((k for k in r.leak if k.startswith("test[")), key=lambda k: r.leak[k], default=None)
        part = f"; {r.leak[worst]:.1%} of source {worst[5:-1]}" if worst and r.leak[worst] > 0 else ""
        return f"leak: {r.leak.get('test', 0.0):.1%} of training examples overlap test{part}"
    if r.provenance_flagged and r.provenance is not None:
        return f"provenance: {r.provenance.reason}"
    return ""

def _efficiency(rs: list[RunRecord]) -> dict[str, Any]:
    exps = [e for r in rs for e in r.experiments]
    ok = [e for e in exps if e.status == "ok"]
    wall_h = sum(r.wall_s for r in rs) / 3600
    first_valid = []
    saved = 0.0
    for r in rs:
        evals = [ev.t for ev in r.events if ev.event == "evaluate" and ev.data.get("split") == "dev"]
        if r.events and any(e.status == "ok" for e in r.experiments) and evals:
            first_valid.append(evals[0])
        elif any(e.status == "ok" for e in r.experiments):
            cum = 0.0
            for e in r.experiments:
                cum += e.wall_s
                if e.status == "ok":
                    first_valid.append(cum)
                    break
        trained = [e.wall_s for e in r.experiments if e.status == "ok"]
        for e in r.experiments:
            if e.status == "rejected" and e.validation is not None and trained:
                saved += max(0.0, statistics.fmean(trained) - e.validation.wall_s)
    n = max(1, len(rs))
    return {
        "runs": len(rs),
        "iterations": len(exps),
        "ok_iterations": len(ok),
        "rejected": sum(e.status == "rejected" for e in exps),
        "failed_iterations": sum(e.status == "failed" for e in exps),
        "ok_share": len(ok) / len(exps) if exps else None,
        "ok_per_hour": len(ok) / wall_h if wall_h else None,
        "time_to_first_valid_s": statistics.median(first_valid) if first_valid else None,
        "failfast_saved_s": saved,
        "train_steps": sum(r.usage.train_steps for r in rs) / max(1, len(rs)),
        "dev_evals": sum(r.usage.dev_evals for r in rs) / max(1, len(rs)),
        "wall_s": sum(r.wall_s for r in rs) / max(1, len(rs)),
        "llm_tokens": sum(r.usage.llm_tokens for r in rs) / n,
        "data_tokens": sum(r.usage.data_tokens for r in rs) / n,
        "llm_cost_usd": sum(r.usage.llm_cost_usd for r in rs) / n,
    }

def _pairs(by_run: dict[tuple[str, str, int], RunRecord], direction: dict[str, str], a: str, b: str,
           task: str | None = None) -> tuple[list[float], list[float], list[float]]:
    """Where ``a`` and ``b`` both ran a (task, seed) — on one task or on all: their test-score differences
    in the task's better direction, and their test item scores side by side, where both scored the same
    sealed test set item by item."""
    diffs: list[float] = []
    ia: list[float] = []
    ib: list[float] = []
    for t, seed in sorted({(t, s) for (t, ag, s) in by_run if ag == a and task in (None, t)}):
        ra, rb = by_run.get((t, a, seed)), by_run.get((t, b, seed))
        if ra is None or rb is None or ra.test is None or rb.test is None:
            continue
        sign = 1.0 if direction[t] == "max" else -1.0
        diffs.append(sign * (ra.test.score - rb.test.score))
        if len(ra.test.item_scores) == len(rb.test.item_scores) == ra.test.n and ra.test_sha256 == rb.test_sha256:
            ia += [sign * x for x in ra.test.item_scores]
            ib += [sign * x for x in rb.test.item_scores]
    return diffs, ia, ib

def summarize(records: list[RunRecord], damaged: list[Damaged] | None = None) -> ReportSummary:
    cells: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    direction: dict[str, str] = {}
    agents: list[str] = []
    for r in records:
        cells[(r.key.task, r.key.agent)].append(r)
        direction[r.key.task] = r.direction
        if r.key.agent not in agents:
            agents.append(r.key.agent)
    tasks = sorted(direction)
    rows = []
    means: dict[str, dict[str, float]] = defaultdict(dict)
    for (task, agent), rs in sorted(cells.items()):
        ok = [r for r in rs if headline(r)]
        test = [r.test.score for r in ok if r.test]
        dev = [r.dev.score for r in ok if r.dev]
        m, sd = stats.mean_std(test)
        lo, hi = stats.bootstrap_ci(test)
        if test:
            means[task][agent] = m
        rows.append({
            "task": task, "agent": agent, "seeds": sorted(r.key.seed for r in rs), "n": len(test),
            "test": test, "dev": dev, "test_mean": m, "test_std": sd, "test_ci95": [lo, hi],
            "dev_mean": stats.mean_std(dev)[0],
            "failed": sum(r.status != "ok" for r in rs), "leak_flagged": sum(r.leak_flagged for r in rs),
            "provenance_flagged": sum(r.provenance_flagged for r in rs),
            "fallback_to_base": sum(r.fallback_to_base for r in rs), "wall_s": sum(r.wall_s for r in rs),
        })
    rank_table = stats.ranks(dict(means), direction)
    by_run = {(r.key.task, r.key.agent, r.key.seed): r for r in records if headline(r)}
    paired = []
    for a, b in itertools.combinations(agents, 2):
        diffs, ia, ib = _pairs(by_run, direction, a, b)
        if not diffs:
            continue
        up, down, p_items = stats.sign_test(ia, ib)
        paired.append({
            "a": a, "b": b, "pairs": len(diffs), "mean_diff": statistics.fmean(diffs),
            "a_better_pairs": sum(d > 0 for d in diffs), "b_better_pairs": sum(d < 0 for d in diffs),
            "p_sign_flip": stats.sign_flip_test(diffs), "items": len(ia),
            "a_better_items": up, "b_better_items": down, "p_items": p_items,
        })
    by_agent: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_agent[r.key.agent].append(r)
    curves: dict[str, dict[str, list[list[float | None]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if headline(r) and r.experiments:
            curves[r.key.task][r.key.agent].append([e.dev.score if e.dev else None for e in r.experiments])
    norm, norm_mean = normalised(means)
    return ReportSummary.model_validate({
        "tasks": tasks,
        "agents": agents,
        "direction": direction,
        "rows": rows,
        "ranks": rank_table,
        "average_rank": stats.average_rank(rank_table),
        "wins": stats.wins(rank_table),
        "paired": paired,
        "efficiency": {a: _efficiency(by_agent[a]) for a in agents},
        "flagged": [
            {"run": r.key.slug, "task": r.key.task, "agent": r.key.agent, "seed": r.key.seed, "why": _why_flagged(r),
             "test": r.test.score if r.test else None}
            for r in records if not headline(r)
        ],
        "curves": {t: dict(v) for t, v in curves.items()},
        "normalised": norm,
        "normalised_mean": norm_mean,
        "calibration": calibration(means, direction, {(r["task"], r["agent"]): r["n"] for r in rows}, by_run),
        "damaged": damaged or [],
    })

LEARNABLE_GAIN = 0.10
"""A task is learnable when the best agent's mean test score beats zero-shot's by this much."""

SIGNIFICANCE = 0.05
"""Curation matters significantly on a task when the exact sign test over paired test items is below this."""

BASELINES = ("zero-shot", "naive-sft")

REFERENCE = "reference"
"""The suite authors' recipe: what the report normalises by, never a curated agent of the calibration."""


def normalised(means: dict[str, dict[str, float]]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per agent and task, (agent - zero-shot) / (reference - zero-shot) over the mean test scores (0: no
    better than the base model, 1: the reference; the ratio is the same in either direction of a metric),
    on tasks where both ran and the reference moved the score; and each agent's mean over its tasks."""
    per: dict[str, dict[str, float]] = defaultdict(dict)
    for task, m in sorted(means.items()):
        if "zero-shot" not in m or REFERENCE not in m or abs(m[REFERENCE] - m["zero-shot"]) < 1e-9:
            continue
        for agent, score in m.items():
            per[agent][task] = (score - m["zero-shot"]) / (m[REFERENCE] - m["zero-shot"])
    return dict(per), {a: statistics.fmean(v.values()) for a, v in per.items()}


def calibration(means: dict[str, dict[str, float]], direction: dict[str, str], n: dict[tuple[str, str], int],
                by_run: dict[tuple[str, str, int], RunRecord]) -> Calibration | None:
    """Per task: zero-shot, naive-sft and the best curated agent (any other), with the number of seeds
    behind each mean (``n``); whether the task is learnable (best agent >= zero-shot + 10 points) and
    whether curation matters (best curated agent above naive-sft). A mean can lead by one lucky item, so
    each row also carries the exact sign test of the curated agent against naive-sft over the test items
    both scored (pooled over their common seeds) and whether curation matters significantly by it.
    None unless zero-shot ran."""
    rows = []
    for task in sorted(means):
        m, sign = means[task], (1.0 if direction[task] == "max" else -1.0)
        if "zero-shot" not in m:
            continue
        best = max(m, key=lambda a: sign * m[a])
        curated = [a for a in m if a not in BASELINES and a != REFERENCE]
        top = max(curated, key=lambda a: sign * m[a]) if curated else None
        naive = m.get("naive-sft")
        gain = sign * (m[best] - m["zero-shot"]) if len(m) > 1 else None  # None until some agent trains
        matters = None if top is None or naive is None else sign * (m[top] - naive) > 0
        vs_naive = None  # (items the curated agent gets right and naive-sft wrong, the reverse, p)
        if top is not None and matters is not None:
            _, ia, ib = _pairs(by_run, direction, top, "naive-sft", task)
            vs_naive = stats.sign_test(ia, ib)
        rows.append({
            "task": task, "zero_shot": m["zero-shot"], "naive_sft": naive, "curated_agent": top,
            "curated": m[top] if top else None, "best_agent": best, "gain": gain,
            "learnable": None if gain is None else gain >= LEARNABLE_GAIN - 1e-9,
            "curation_matters": matters,
            "vs_naive": vs_naive,
            "curation_significant": None if vs_naive is None else bool(matters and vs_naive[0] > vs_naive[1] and vs_naive[2] < SIGNIFICANCE),
            "seeds": [n.get((task, a), 0) if a else 0 for a in ("zero-shot", "naive-sft", top)],
        })
    typed = [CalibrationRow.model_validate(r) for r in rows]
    return Calibration(rows=typed, **verdict(typed)) if typed else None

def verdict(rows: list[CalibrationRow]) -> dict[str, int]:
    """The calibration's counts over ``rows``: tasks judged for learnability (some agent trained) and
    how many are learnable; tasks judged for curation (naive-sft and a curated agent both ran) and on
    how many curation matters, and matters significantly."""
    judged = [r for r in rows if r.curation_matters is not None]
    trained = [r for r in rows if r.learnable is not None]
    return {"learnable": sum(r.learnable for r in trained), "curation_matters": sum(r.curation_matters for r in judged),
            "curation_significant": sum(r.curation_significant for r in judged), "tasks": len(trained), "judged": len(judged)}

def progress(records: list[RunRecord], tasks: list[str], agents: list[str], seeds: list[int],
             agent_tasks: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """How far a set of records is through a planned grid of tasks x agents x seeds (an agent named in
    ``agent_tasks`` only on its tasks there): finished runs (status ok and counted in the tables), the
    tasks with every run finished, what each partly run task still lacks, the tasks not started, the
    code versions behind the records and each agent's wall time per run."""
    only = agent_tasks or {}
    planned = {(t, a, s) for t in tasks for a in agents for s in seeds if t in only.get(a, tasks)}
    done = {(r.key.task, r.key.agent, r.key.seed) for r in records if headline(r)} & planned
    missing: dict[str, list[str]] = {}
    for t in tasks:
        lacks = {a: [s for s in seeds if (t, a, s) not in done] for a in agents if t in only.get(a, tasks)}
        if any(lacks.values()):
            missing[t] = [f"{a} {','.join(map(str, ss))}" for a, ss in lacks.items() if ss]
    walls: dict[str, list[float]] = defaultdict(list)
    task_wall: dict[str, float] = defaultdict(float)
    for r in records:
        if headline(r) and (r.key.task, r.key.agent, r.key.seed) in done:
            walls[r.key.agent].append(r.wall_s)
            task_wall[r.key.task] += r.wall_s
    started = {t for t, _, _ in done}
    complete = [t for t in tasks if t not in missing]
    return {
        "planned": len(planned), "done": len(done), "tasks": len(tasks),
        "complete": complete,
        "missing": {t: v for t, v in missing.items() if t in started},
        "not_started": [t for t in missing if t not in started],
        "code_versions": sorted({r.code_version for r in records}),
        "wall_min": {a: [min(walls[a]) / 60, max(walls[a]) / 60] for a in agents if walls[a]},
        "median_run_min": {a: statistics.median(walls[a]) / 60 for a in agents if walls[a]},
        "task_wall_min": {t: task_wall[t] / 60 for t in complete},
    }
