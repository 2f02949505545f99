"""The report's renderers: Markdown and one self-contained HTML page, read from a ``ReportSummary``.

The HTML page draws its plots as inline SVG and its tables as real HTML
tables (the same tables as the Markdown, rendered from it): it needs no
network and no script.
"""

from __future__ import annotations

import html as _html
import re
import statistics
from typing import Any

from ftdojo.report.summary import LEARNABLE_GAIN, SIGNIFICANCE, Calibration, Cell, ReportSummary, verdict

def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or x != x else f"{100 * x:.{digits}f}"

def _cell(row: Cell) -> str:
    if not row.n:
        return "—"
    lo, hi = row.test_ci95
    spread = f" ± {_pct(row.test_std)}" if row.n > 1 else ""
    ci = f" ({_pct(lo)}–{_pct(hi)})" if row.n > 1 else ""
    return f"{_pct(row.test_mean)}{spread}{ci} [{_pct(row.dev_mean)}]"

def _p(p: float) -> str:
    return "<1e-6" if p < 1e-6 else f"{p:.3g}"

def calibration_markdown(cal: Calibration, complete: list[str] | None = None) -> list[str]:
    """The calibration verdict and table (``summarize().calibration``) as Markdown lines. Given the
    suite's ``complete`` tasks (every planned run finished), the verdict counts only those: a partly run
    task's means rest on fewer seeds than the rest, so its row is shown but marked and not counted."""
    partial = [] if complete is None else [r.task for r in cal.rows if r.task not in complete]
    if complete is not None:
        cal = cal.model_copy(update=verdict([r for r in cal.rows if r.task in complete]))
    lines = [f"Calibration: **{cal.learnable} of {cal.tasks} tasks learnable** (the best agent at least "
             f"{100 * LEARNABLE_GAIN:.0f} points above zero-shot)"
             + (f"; **curation matters on {cal.curation_matters} of {cal.judged}** (the best curated agent above naive-sft), "
                f"**significantly on {cal.curation_significant}** (p < {SIGNIFICANCE:g}, exact sign test over the test items "
                "both scored, seeds pooled)" if cal.judged else "") + "."
             + (f" Partly run, shown but not counted until every run is in: {', '.join(partial)}." if partial else "")
             + " Mean test score (%) over the seeds counted in the last column:", "",
             "| task | zero-shot | naive-sft | best curated | gain over zero-shot (pts) | learnable | curation matters "
             "| curated vs naive-sft: items better/worse, p | seeds (zero-shot / naive-sft / curated) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in cal.rows:
        cur = "—" if r.curated_agent is None else f"{_pct(r.curated)} ({r.curated_agent})"
        matters = "—" if r.curation_matters is None else ("yes" if r.curation_matters else "no")
        learnable = "—" if r.learnable is None else ("yes" if r.learnable else "no")
        gain = "—" if r.gain is None else f"{100 * r.gain:+.1f}"
        vs = "—" if r.vs_naive is None else f"{r.vs_naive[0]}/{r.vs_naive[1]}, p{'' if r.vs_naive[2] < 1e-6 else '='}{_p(r.vs_naive[2])}"
        name = f"{r.task} (partly run)" if r.task in partial else r.task
        lines.append(f"| {name} | {_pct(r.zero_shot)} | {_pct(r.naive_sft)} | {cur} | {gain} | "
                     f"{learnable} | {matters} | {vs} | {' / '.join(str(k) if k else '—' for k in r.seeds)} |")
    return lines

def markdown(s: ReportSummary, wall_s: float | None = None) -> str:
    tasks, agents = s.tasks, s.agents
    by = {(r.task, r.agent): r for r in s.rows}
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
        rank = s.average_rank.get(a)
        lines.append(f"| {a} | {s.wins.get(a, 0)} | {'—' if rank is None else f'{rank:.2f}'} |")
    if s.paired:
        lines += ["", "Paired comparisons on the same tasks and seeds (difference in the task's better direction):", "",
                  "| A vs B | pairs | mean diff (pts) | A/B better pairs | p (sign-flip) | items A/B better | p (items, sign test) |",
                  "|---|---|---|---|---|---|---|"]
        for c in s.paired:
            lines.append(
                f"| {c.a} vs {c.b} | {c.pairs} | {100 * c.mean_diff:+.1f} | {c.a_better_pairs}/{c.b_better_pairs} | "
                f"{_p(c.p_sign_flip)} | {c.a_better_items}/{c.b_better_items} | {_p(c.p_items)} |"
            )
    lines += ["", "Efficiency (per agent, over its runs):", "",
              "| agent | iterations | ok | rejected by fail-fast | failed | ok per hour | time to first valid model | fail-fast saved | train steps / run | dev evals / run | wall / run | LLM tokens / run | data-model tokens / run | LLM cost / run |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in agents:
        e = s.efficiency[a]
        ttf = "—" if e.time_to_first_valid_s is None else f"{e.time_to_first_valid_s:.0f} s"
        per_h = "—" if e.ok_per_hour is None else f"{e.ok_per_hour:.1f}"
        lines.append(
            f"| {a} | {e.iterations} | {e.ok_iterations} | {e.rejected} | {e.failed_iterations} | {per_h} | {ttf} | "
            f"{e.failfast_saved_s:.0f} s | {e.train_steps:.0f} | {e.dev_evals:.1f} | {e.wall_s:.0f} s | "
            f"{e.llm_tokens:.0f} | {e.data_tokens:.0f} | ${e.llm_cost_usd:.4f} |"
        )
    if s.normalised:
        norm_tasks = sorted({t for v in s.normalised.values() for t in v})
        lines += ["", "Normalised score, (agent − zero-shot) ÷ (reference − zero-shot) over mean test scores "
                  "(1 = the reference recipe):", "",
                  "| agent | " + " | ".join(norm_tasks) + " | mean |", "|---|" + "---|" * (len(norm_tasks) + 1)]
        for a in agents:
            if a in s.normalised:
                v = s.normalised[a]
                lines.append(f"| {a} | " + " | ".join(f"{v[t]:.2f}" if t in v else "—" for t in norm_tasks)
                             + f" | {s.normalised_mean[a]:.2f} |")
    if s.calibration:
        lines += ["", *calibration_markdown(s.calibration)]
    if s.flagged:
        lines += ["", "Runs kept out of the statistics:", ""]
        lines += [f"- {f.task} / {f.agent} / seed {f.seed}: {f.why}" for f in s.flagged]
    if s.damaged:
        lines += ["", "Damaged run records set aside (their runs are redone by the next bench):", ""]
        lines += [f"- {d.file}: {d.problem} (moved to {d.moved_to})" for d in s.damaged]
    fallback = [f"- {r.task} / {r.agent}: {r.fallback_to_base} run(s) fell back to the base model"
                for r in s.rows if r.fallback_to_base]
    if fallback:
        lines += ["", *fallback]
    if wall_s is not None:
        lines += ["", f"Bench wall time: {wall_s / 60:.1f} min."]
    return "\n".join(lines) + "\n"

# --- HTML with inline SVG -----------------------------------------------------------------

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

def _esc(x: Any) -> str:
    return _html.escape(str(x))

def _bars_svg(s: ReportSummary) -> str:
    """Test score per task per agent, with bootstrap CI whiskers."""
    tasks, agents = s.tasks, s.agents
    by = {(r.task, r.agent): r for r in s.rows}
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
            if not r or not r.n:
                continue
            x = x0 + ai * bw
            m = r.test_mean
            parts.append(f'<rect class="bar" x="{x}" y="{top + h - h * m}" width="{bw - 3}" height="{h * m}" fill="{PALETTE[ai % 10]}">'
                         f'<title>{_esc(t)} / {_esc(a)}: {100 * m:.1f}</title></rect>'
                         f'<text x="{x + (bw - 3) / 2}" y="{top + h - h * m - 4}" font-size="9" text-anchor="middle">{100 * m:.0f}</text>')
            lo, hi = r.test_ci95
            if r.n > 1:
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

def _budget_svg(s: ReportSummary) -> str:
    """Budget use per agent: train steps, dev evaluations and wall time per run."""
    agents = s.agents
    metrics = [("train_steps", "train steps / run"), ("dev_evals", "dev evals / run"), ("wall_s", "wall s / run")]
    w, row, left = 220, 16, 110
    height = len(metrics) * (len(agents) * row + 30)
    parts = [f'<svg class="plot" id="budget" xmlns="http://www.w3.org/2000/svg" width="{left + w + 80}" height="{height}">']
    y = 0
    for key, label in metrics:
        parts.append(f'<text x="0" y="{y + 12}" font-size="11" font-weight="bold">{label}</text>')
        y += 18
        top = max((getattr(s.efficiency[a], key) for a in agents), default=0) or 1
        for ai, a in enumerate(agents):
            v = getattr(s.efficiency[a], key)
            parts.append(f'<text x="{left - 6}" y="{y + 11}" font-size="10" text-anchor="end">{_esc(a)}</text>'
                         f'<rect class="bar" x="{left}" y="{y}" width="{w * v / top:.1f}" height="{row - 4}" fill="{PALETTE[ai % 10]}"/>'
                         f'<text x="{left + w * v / top + 4:.1f}" y="{y + 11}" font-size="10">{v:.0f}</text>')
            y += row
        y += 12
    parts.append("</svg>")
    return "".join(parts)


def _inline(text: str) -> str:
    """Escape a Markdown span and render its bold and code parts."""
    out = _esc(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def tables_html(md: str) -> str:
    """The report's Markdown as HTML: pipe tables become ``<table>`` (header row as ``<th>``), ``- `` lines
    lists, other lines paragraphs. Only the Markdown this module writes is expected."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in block[1:] if not all(set(c) <= {"-", ":"} and c for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in block[0]) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body) + "</tbody></table>")
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        if line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def html(s: ReportSummary, md: str) -> str:
    curves = "".join(_curves_svg(t, s.curves[t], s.agents) for t in s.tasks if t in s.curves)
    body = tables_html(md)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ftdojo bench report</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1200px}} table{{border-collapse:collapse;margin:8px 0 16px;font-size:13px}} th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}} th{{background:#f0f0f0}} tbody tr:nth-child(even){{background:#fafafa}}
.plots{{display:flex;flex-wrap:wrap;gap:16px}} h2{{margin-top:28px}}</style></head><body>
<h1>ftdojo bench report</h1>
<h2>Test score per task and agent (95% bootstrap CI)</h2>
{_bars_svg(s)}
<h2>Dev score against iteration</h2>
<div class="plots">{curves or "<p>No iterations recorded.</p>"}</div>
<h2>Budget use</h2>
{_budget_svg(s)}
<h2>Tables</h2>
{body}
</body></html>
"""

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

def readme_block(p: dict[str, Any], cal: Calibration | None) -> str:
    """What ``ftdojo report DIR --suite S --readme F`` puts between the markers: the progress
    (``progress``) through the suite's grid, then the calibration verdict and table."""
    lines = progress_markdown(p)
    if cal:
        lines += [""] + calibration_markdown(cal, p["complete"])
    return "\n".join(lines)
