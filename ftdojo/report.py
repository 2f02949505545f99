"""The bench report, rebuilt from run records alone: JSON, Markdown and one HTML page.

``summarize`` computes everything from the records (statistics in
``ftdojo.stats``): per task x agent mean ± std over seeds with bootstrap 95%
CIs; ranks, average rank and wins; paired comparisons of every two agents on
the same tasks and seeds (a sign-flip permutation test over (task, seed)
pairs, and an exact sign test over the paired test items); efficiency figures
(successful iterations, time to the first valid model, compute fail-fast
saved, LLM tokens and cost); and flagged runs (failed, leaked, substituted
model), which are reported apart and kept out of every headline figure.
``html`` draws the plots as inline SVG: the page needs no network and no
script.
"""

from __future__ import annotations

import html as _html
import itertools
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ftdojo import stats
from ftdojo.errors import UserError
from ftdojo.messages import RunRecord
from ftdojo.paths import atomic_write_text


def load_records(out: Path, slugs: set[str] | None = None) -> list[RunRecord]:
    """The run store's records; ``slugs`` limits them to one bench's runs. Otherwise, where a
    folder holds several records of the same task, agent, seed and profile (runs of older code
    or configs), the newest counts."""
    records = [RunRecord.model_validate_json(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
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
        return f"leak: {r.leak.get('test', 0.0):.1%} of training inputs overlap test{part}"
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
    tokens = sum(r.usage.get("llm_tokens", 0.0) for r in rs)
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
        "train_steps": sum(r.usage.get("train_steps", 0.0) for r in rs) / max(1, len(rs)),
        "dev_evals": sum(r.usage.get("dev_evals", 0.0) for r in rs) / max(1, len(rs)),
        "wall_s": sum(r.wall_s for r in rs) / max(1, len(rs)),
        "llm_tokens": tokens,
        "llm_cost_usd": sum(r.usage.get("llm_cost_usd", 0.0) for r in rs),
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


def summarize(records: list[RunRecord]) -> dict[str, Any]:
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
    return {
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
        "calibration": calibration(means, direction, {(r["task"], r["agent"]): r["n"] for r in rows}, by_run),
    }


LEARNABLE_GAIN = 0.10
"""A task is learnable when the best agent's mean test score beats zero-shot's by this much."""
SIGNIFICANCE = 0.05
"""Curation matters significantly on a task when the exact sign test over paired test items is below this."""
BASELINES = ("zero-shot", "naive-sft")


def calibration(means: dict[str, dict[str, float]], direction: dict[str, str], n: dict[tuple[str, str], int],
                by_run: dict[tuple[str, str, int], RunRecord]) -> dict[str, Any] | None:
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
        curated = [a for a in m if a not in BASELINES]
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
    return {"rows": rows, **verdict(rows)} if rows else None


def verdict(rows: list[dict[str, Any]]) -> dict[str, int]:
    """The calibration's counts over ``rows``: tasks judged for learnability (some agent trained) and
    how many are learnable; tasks judged for curation (naive-sft and a curated agent both ran) and on
    how many curation matters, and matters significantly."""
    judged = [r for r in rows if r["curation_matters"] is not None]
    trained = [r for r in rows if r["learnable"] is not None]
    return {"learnable": sum(r["learnable"] for r in trained), "curation_matters": sum(r["curation_matters"] for r in judged),
            "curation_significant": sum(r["curation_significant"] for r in judged), "tasks": len(trained), "judged": len(judged)}


# --- Markdown -----------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or x != x else f"{100 * x:.{digits}f}"


def _cell(row: dict[str, Any]) -> str:
    if not row["n"]:
        return "—"
    lo, hi = row["test_ci95"]
    spread = f" ± {_pct(row['test_std'])}" if row["n"] > 1 else ""
    ci = f" ({_pct(lo)}–{_pct(hi)})" if row["n"] > 1 else ""
    return f"{_pct(row['test_mean'])}{spread}{ci} [{_pct(row['dev_mean'])}]"


def _p(p: float) -> str:
    return "<1e-6" if p < 1e-6 else f"{p:.3g}"


def calibration_markdown(cal: dict[str, Any], complete: list[str] | None = None) -> list[str]:
    """The calibration verdict and table (``summarize()["calibration"]``) as Markdown lines. Given the
    suite's ``complete`` tasks (every planned run finished), the verdict counts only those: a partly run
    task's means rest on fewer seeds than the rest, so its row is shown but marked and not counted."""
    partial = [] if complete is None else [r["task"] for r in cal["rows"] if r["task"] not in complete]
    if complete is not None:
        cal = {**cal, **verdict([r for r in cal["rows"] if r["task"] in complete])}
    lines = [f"Calibration: **{cal['learnable']} of {cal['tasks']} tasks learnable** (the best agent at least "
             f"{100 * LEARNABLE_GAIN:.0f} points above zero-shot)"
             + (f"; **curation matters on {cal['curation_matters']} of {cal['judged']}** (the best curated agent above naive-sft), "
                f"**significantly on {cal['curation_significant']}** (p < {SIGNIFICANCE:g}, exact sign test over the test items "
                "both scored, seeds pooled)" if cal["judged"] else "") + "."
             + (f" Partly run, shown but not counted until every run is in: {', '.join(partial)}." if partial else "")
             + " Mean test score (%) over the seeds counted in the last column:", "",
             "| task | zero-shot | naive-sft | best curated | gain over zero-shot (pts) | learnable | curation matters "
             "| curated vs naive-sft: items better/worse, p | seeds (zero-shot / naive-sft / curated) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in cal["rows"]:
        cur = "—" if r["curated_agent"] is None else f"{_pct(r['curated'])} ({r['curated_agent']})"
        matters = "—" if r["curation_matters"] is None else ("yes" if r["curation_matters"] else "no")
        learnable = "—" if r["learnable"] is None else ("yes" if r["learnable"] else "no")
        gain = "—" if r["gain"] is None else f"{100 * r['gain']:+.1f}"
        vs = "—" if r["vs_naive"] is None else f"{r['vs_naive'][0]}/{r['vs_naive'][1]}, p{'' if r['vs_naive'][2] < 1e-6 else '='}{_p(r['vs_naive'][2])}"
        name = f"{r['task']} (partly run)" if r["task"] in partial else r["task"]
        lines.append(f"| {name} | {_pct(r['zero_shot'])} | {_pct(r['naive_sft'])} | {cur} | {gain} | "
                     f"{learnable} | {matters} | {vs} | {' / '.join(str(k) if k else '—' for k in r['seeds'])} |")
    return lines


def markdown(s: dict[str, Any], wall_s: float | None = None) -> str:
    tasks, agents = s["tasks"], s["agents"]
    by = {(r["task"], r["agent"]): r for r in s["rows"]}
    lines = [
        "Held-out **test** score (%): mean ± std over seeds, bootstrap 95% CI in parentheses, dev mean in brackets. "
        "Failed, leak-flagged and provenance-flagged runs are excluded and listed below.",
        "",
        "| task | " + " | ".join(agents) + " |",
        "|---|" + "---|" * len(agents),
    ]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(_cell(by[(t, a)]) if (t, a) in by else "—" for a in agents) + " |")
    lines += ["", f"Wins (best on k of {len(tasks)} tasks) and average rank (1 = best):", "",
              "| agent | wins | avg rank |", "|---|---|---|"]
    for a in agents:
        rank = s["average_rank"].get(a)
        lines.append(f"| {a} | {s['wins'].get(a, 0)} | {'—' if rank is None else f'{rank:.2f}'} |")
    if s["paired"]:
        lines += ["", "Paired comparisons on the same tasks and seeds (difference in the task's better direction):", "",
                  "| A vs B | pairs | mean diff (pts) | A/B better pairs | p (sign-flip) | items A/B better | p (items, sign test) |",
                  "|---|---|---|---|---|---|---|"]
        for c in s["paired"]:
            lines.append(
                f"| {c['a']} vs {c['b']} | {c['pairs']} | {100 * c['mean_diff']:+.1f} | {c['a_better_pairs']}/{c['b_better_pairs']} | "
                f"{_p(c['p_sign_flip'])} | {c['a_better_items']}/{c['b_better_items']} | {_p(c['p_items'])} |"
            )
    lines += ["", "Efficiency (per agent, over its runs):", "",
              "| agent | iterations | ok | rejected by fail-fast | failed | ok per hour | time to first valid model | fail-fast saved | train steps / run | dev evals / run | wall / run | LLM tokens | LLM cost |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in agents:
        e = s["efficiency"][a]
        ttf = "—" if e["time_to_first_valid_s"] is None else f"{e['time_to_first_valid_s']:.0f} s"
        per_h = "—" if e["ok_per_hour"] is None else f"{e['ok_per_hour']:.1f}"
        lines.append(
            f"| {a} | {e['iterations']} | {e['ok_iterations']} | {e['rejected']} | {e['failed_iterations']} | {per_h} | {ttf} | "
            f"{e['failfast_saved_s']:.0f} s | {e['train_steps']:.0f} | {e['dev_evals']:.1f} | {e['wall_s']:.0f} s | "
            f"{e['llm_tokens']:.0f} | ${e['llm_cost_usd']:.2f} |"
        )
    if s.get("calibration"):
        lines += ["", *calibration_markdown(s["calibration"])]
    if s["flagged"]:
        lines += ["", "Runs kept out of the statistics:", ""]
        lines += [f"- {f['task']} / {f['agent']} / seed {f['seed']}: {f['why']}" for f in s["flagged"]]
    fallback = [f"- {r['task']} / {r['agent']}: {r['fallback_to_base']} run(s) fell back to the base model"
                for r in s["rows"] if r["fallback_to_base"]]
    if fallback:
        lines += ["", *fallback]
    if wall_s is not None:
        lines += ["", f"Bench wall time: {wall_s / 60:.1f} min."]
    return "\n".join(lines) + "\n"


# --- HTML with inline SVG -----------------------------------------------------------------

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _esc(x: Any) -> str:
    return _html.escape(str(x))


def _bars_svg(s: dict[str, Any]) -> str:
    """Test score per task per agent, with bootstrap CI whiskers."""
    tasks, agents = s["tasks"], s["agents"]
    by = {(r["task"], r["agent"]): r for r in s["rows"]}
    bw, gap, h, top, left = 18, 24, 220, 20, 40
    width = max(left + len(tasks) * (len(agents) * bw + gap) + 20, left + len(agents) * 130 + 20)
    parts = [f'<svg class="plot" id="scores" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 70}">']
    for y in range(0, 101, 25):
        yy = top + h - h * y / 100
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{yy}" y2="{yy}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{yy + 4}" font-size="10" text-anchor="end">{y}</text>')
    for ti, t in enumerate(tasks):
        x0 = left + ti * (len(agents) * bw + gap) + gap / 2
        for ai, a in enumerate(agents):
            r = by.get((t, a))
            if not r or not r["n"]:
                continue
            x = x0 + ai * bw
            m = r["test_mean"]
            parts.append(f'<rect class="bar" x="{x}" y="{top + h - h * m}" width="{bw - 3}" height="{h * m}" fill="{PALETTE[ai % 10]}">'
                         f'<title>{_esc(t)} / {_esc(a)}: {100 * m:.1f}</title></rect>'
                         f'<text x="{x + (bw - 3) / 2}" y="{top + h - h * m - 4}" font-size="9" text-anchor="middle">{100 * m:.0f}</text>')
            lo, hi = r["test_ci95"]
            if r["n"] > 1:
                cx = x + (bw - 3) / 2
                parts.append(f'<line x1="{cx}" x2="{cx}" y1="{top + h - h * hi}" y2="{top + h - h * lo}" stroke="#000"/>')
        parts.append(f'<text x="{x0 + len(agents) * bw / 2}" y="{top + h + 16}" font-size="11" text-anchor="middle">{_esc(t)}</text>')
    for ai, a in enumerate(agents):
        parts.append(f'<rect x="{left + ai * 130}" y="{top + h + 34}" width="10" height="10" fill="{PALETTE[ai % 10]}"/>'
                     f'<text x="{left + ai * 130 + 14}" y="{top + h + 43}" font-size="11">{_esc(a)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _curves_svg(task: str, curves: dict[str, list[list[float | None]]], agents: list[str]) -> str:
    """Dev score against iteration, one line per run, coloured by agent."""
    w, h, left, top = 260, 150, 34, 10
    longest = max((len(c) for runs in curves.values() for c in runs), default=1)
    parts = [f'<svg class="plot curve" xmlns="http://www.w3.org/2000/svg" width="{w + left + 10}" height="{h + 40}">',
             f'<text x="{left}" y="{top + h + 30}" font-size="11">{_esc(task)}: dev score by iteration</text>']
    for y in (0, 50, 100):
        yy = top + h - h * y / 100
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{yy}" y2="{yy}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{yy + 4}" font-size="10" text-anchor="end">{y}</text>')
    step = w / max(1, longest - 1)
    for agent, runs in curves.items():
        color = PALETTE[agents.index(agent) % 10] if agent in agents else "#000"
        for run in runs:
            pts = [(left + i * step, top + h - h * v) for i, v in enumerate(run) if v is not None]
            if len(pts) > 1:
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in pts]
    for i in range(longest):
        parts.append(f'<text x="{left + i * step:.1f}" y="{top + h + 14}" font-size="10" text-anchor="middle">{i}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _budget_svg(s: dict[str, Any]) -> str:
    """Budget use per agent: train steps, dev evaluations and wall time per run."""
    agents = s["agents"]
    metrics = [("train_steps", "train steps / run"), ("dev_evals", "dev evals / run"), ("wall_s", "wall s / run")]
    w, row, left = 220, 16, 110
    height = len(metrics) * (len(agents) * row + 30)
    parts = [f'<svg class="plot" id="budget" xmlns="http://www.w3.org/2000/svg" width="{left + w + 80}" height="{height}">']
    y = 0
    for key, label in metrics:
        parts.append(f'<text x="0" y="{y + 12}" font-size="11" font-weight="bold">{label}</text>')
        y += 18
        top = max((s["efficiency"][a][key] for a in agents), default=0) or 1
        for ai, a in enumerate(agents):
            v = s["efficiency"][a][key]
            parts.append(f'<text x="{left - 6}" y="{y + 11}" font-size="10" text-anchor="end">{_esc(a)}</text>'
                         f'<rect class="bar" x="{left}" y="{y}" width="{w * v / top:.1f}" height="{row - 4}" fill="{PALETTE[ai % 10]}"/>'
                         f'<text x="{left + w * v / top + 4:.1f}" y="{y + 11}" font-size="10">{v:.0f}</text>')
            y += row
        y += 12
    parts.append("</svg>")
    return "".join(parts)


def html(s: dict[str, Any], md: str) -> str:
    curves = "".join(_curves_svg(t, s["curves"][t], s["agents"]) for t in s["tasks"] if t in s["curves"])
    body_md = _esc(md)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ftdojo bench report</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1200px}} pre{{background:#f6f6f6;padding:12px;overflow-x:auto;font-size:12px}}
.plots{{display:flex;flex-wrap:wrap;gap:16px}} h2{{margin-top:28px}}</style></head><body>
<h1>ftdojo bench report</h1>
<h2>Test score per task and agent (95% bootstrap CI)</h2>
{_bars_svg(s)}
<h2>Dev score against iteration</h2>
<div class="plots">{curves or "<p>No iterations recorded.</p>"}</div>
<h2>Budget use</h2>
{_budget_svg(s)}
<h2>Tables</h2>
<pre>{body_md}</pre>
</body></html>
"""


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
    records = load_records(out)
    if not records:
        raise UserError(f"{out}/runs: no run records to export; give a bench output folder (--out)")
    (dest / "runs").mkdir(parents=True, exist_ok=True)
    for r in records:
        atomic_write_text(dest / "runs" / f"{r.key.slug}.json", slim(r).model_dump_json() + "\n")
    return len(records)


def progress(records: list[RunRecord], tasks: list[str], agents: list[str], seeds: list[int]) -> dict[str, Any]:
    """How far a set of records is through a planned grid of tasks x agents x seeds: finished runs
    (status ok and counted in the tables), the tasks with every run finished, what each partly run
    task still lacks, the tasks not started, the code versions behind the records and each agent's
    wall time per run."""
    planned = {(t, a, s) for t in tasks for a in agents for s in seeds}
    done = {(r.key.task, r.key.agent, r.key.seed) for r in records if headline(r)} & planned
    missing: dict[str, list[str]] = {}
    for t in tasks:
        lacks = {a: [s for s in seeds if (t, a, s) not in done] for a in agents}
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


def progress_markdown(p: dict[str, Any]) -> list[str]:
    complete = f" ({', '.join(p['complete'])})" if p["complete"] else ""
    wall = "; ".join(f"{a} {lo:.1f}–{hi:.1f}" for a, (lo, hi) in p["wall_min"].items())
    lines = [f"Measured so far: **{p['done']} of {p['planned']} runs**; {len(p['complete'])} of {p['tasks']} tasks "
             f"have every run{complete}. Code version {', '.join(p['code_versions']) or '—'}. "
             f"Wall per run (min): {wall or '—'}."]
    if p["task_wall_min"]:
        spans = sorted(p["task_wall_min"].values())
        median = "; ".join(f"{a} {m:.1f}" for a, m in p["median_run_min"].items())
        lines[0] += (f" A complete task's runs took {spans[0]:.0f}–{spans[-1]:.0f} min in all (median "
                     f"{statistics.median(spans):.0f} over {len(spans)} tasks); median run (min): {median}.")
    todo = [f"{t} (lacks {', '.join(v)})" for t, v in p["missing"].items()] + (
        [f"not started: {', '.join(p['not_started'])}"] if p["not_started"] else [])
    if todo:
        lines += ["", "Still to run: " + "; ".join(todo) + "."]
    return lines


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


def readme_block(p: dict[str, Any], cal: dict[str, Any] | None) -> str:
    """What ``ftdojo report DIR --suite S --readme F`` puts between the markers: the progress
    (``progress``) through the suite's grid, then the calibration verdict and table."""
    lines = progress_markdown(p)
    if cal:
        lines += [""] + calibration_markdown(cal, p["complete"])
    return "\n".join(lines)


def write(out: Path, wall_s: float | None = None, slugs: set[str] | None = None) -> str:
    return publish(out, summarize(load_records(out, slugs)), wall_s)


def publish(out: Path, summary: dict[str, Any], wall_s: float | None = None) -> str:
    """Write results.md, results.json and report.html for ``summary`` into ``out``; return the Markdown."""
    if wall_s is not None:
        summary["bench_wall_s"] = wall_s
    md = markdown(summary, wall_s)
    atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "report.html", html(summary, md))
    return md
