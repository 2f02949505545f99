"""TableBench's visualisation score: run the model's plotting code on the table and read the chart back.

As TableBench's own evaluation does (``parse_chart_code_then_exec`` and ``chat_metric_utils``): the
table is written to ``table.csv``, the last ```` ```python ```` block of the output runs, the plotted
values are read from matplotlib's current axes by chart type (line heights, bar heights or widths, pie
fractions, area and scatter y values, radar lines without their closing point), and the item passes
(Pass@1) when they equal the reference values (``y_references = [[...]]`` in the answer), both
flattened, rounded to two decimals and sorted; a pie's references are first turned into fractions.

The model's code is untrusted: it runs in ``ftdojo.sandbox`` with the installed packages bound back
(pandas, matplotlib) and everything else covered (the sealed splits, the data, the project), under a
15-second alarm per item (the benchmark's timeout) and the sandbox's own limits.
"""

from __future__ import annotations

import ast
import json
import os
import re
import tempfile
from typing import Any

from ftdojo import sandbox

CHART_TYPES = ("line", "bar", "hbar", "pie", "area", "radar", "scatter", "waterfall")
_CODE = re.compile(r"```python\n(.*?)```", re.S)
LIMITS = sandbox.Limits(wall_s=60, cpu_s=40, memory_mb=2048, libraries=True)

HARNESS = r'''
import json, math, os, signal

def _values(plt, kind):
    ax = plt.gca()
    if kind in ("line", "radar"):
        ys = [list(line.get_ydata()) for line in ax.get_lines()]
        return [y[:-1] for y in ys] if kind == "radar" else ys
    if kind in ("bar", "waterfall"):
        return [p.get_height() for p in ax.patches]
    if kind == "hbar":
        return [p.get_width() for p in ax.patches]
    if kind == "pie":
        return [round((p.theta2 - p.theta1) / 360.0, 2) for p in ax.patches]
    if kind == "area":
        return [[y for y in c.get_paths()[0].vertices[:, 1] if y != 0] for c in ax.collections]
    if kind == "scatter":
        return [[xy[1] for xy in c.get_offsets()] for c in ax.collections]
    return []

def _flat(vs):
    out = []
    for v in vs:
        out.extend(v if isinstance(v, (list, tuple)) else [v])
    return [float(x) for x in out]

def _same(a, b):
    a, b = sorted(round(x, 2) for x in a), sorted(round(x, 2) for x in b)
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))

def score(row):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    table = row["table"]
    pd.DataFrame(table["data"], columns=table["columns"]).to_csv("table.csv", index=False)
    plt.show = lambda *a, **k: None
    def expire(*_):
        raise TimeoutError("the plotting code ran past 15 s")
    signal.signal(signal.SIGALRM, expire)
    signal.alarm(15)
    try:
        exec(compile(row["code"], "model_code.py", "exec"), {"__name__": "__main__"})
        predicted = _values(plt, row["chart_type"])
        signal.alarm(0)
    except BaseException as e:
        signal.alarm(0)
        plt.close("all")
        return {"executed": False, "pass": False, "error": type(e).__name__}
    try:
        refs = _flat(row["references"])
        if row["chart_type"] == "pie":
            total = sum(refs)
            refs = [round(r / total, 2) for r in refs] if total else refs
        ok = _same(refs, _flat(predicted))
    except (TypeError, ValueError):
        ok = False
    plt.close("all")
    return {"executed": True, "pass": ok}
'''


def code_block(output: str) -> str | None:
    """The output's last ```` ```python ```` block (None: no code, unparseable)."""
    blocks = _CODE.findall(output)
    return blocks[-1] if blocks else None


def references(answer: str) -> Any:
    """The reference values of a TableBench answer ``y_references = [[...]]``, read as a literal
    (never executed)."""
    _, _, rhs = answer.partition("=")
    return ast.literal_eval((rhs or answer).strip())


def chart_pass(output: str, gold_text: str, tolerance: float = 0.0) -> float:
    """1 when the output's plotting code, run on the item's table, draws the reference values."""
    code = code_block(output)
    try:
        g = json.loads(gold_text)
        table = json.loads(g["table"]) if isinstance(g["table"], str) else g["table"]
        row = {"code": code, "chart_type": g["chart_type"], "table": table, "references": references(g["answer"])}
    except (ValueError, KeyError, TypeError, SyntaxError):
        return 0.0
    if code is None or row["chart_type"] not in CHART_TYPES:
        return 0.0
    with tempfile.TemporaryDirectory(prefix="ftdojo-chart-") as ws:
        os.chmod(ws, 0o755)  # the sandbox user must reach its job folder where namespaces are missing
        try:
            result = sandbox.run(HARNESS, "score", [row], ws, LIMITS)[0]
        except sandbox.SandboxViolation:
            return 0.0
    return float(bool(result.get("pass")))
