"""Table QA domain: questions over four-row snippets of real tables that
``vega_datasets`` bundles (cars, Seattle weather, the barley trials).

Tasks: look up a cell; name the row with the highest or lowest value of a
column; count the rows meeting a condition. The input holds the snippet as a
Markdown table; every answer is computed from it (``solve``), which is also
the domain's oracle (the suite's own tests; agents never get it).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Container
from dataclasses import dataclass
from functools import cache

from ftdojo.tasking import Domain, Row, SourceSpec, TaskSpec
from tasks import _kit
from tasks._kit import Question

N_ROWS = 4


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    numbers: tuple[str, ...]
    label: str


TABLES = (
    Table("cars", "Name", ("Miles_per_Gallon", "Horsepower", "Weight_in_lbs"), "Origin"),
    Table("seattle-weather", "date", ("precipitation", "temp_max", "wind"), "weather"),
    Table("barley", "variety", ("yield",), "year"),
)


@cache
def rows_of(table: str) -> list[dict[str, str]]:
    """The table's rows as strings, with complete values, first row per key."""
    import vega_datasets

    folder = os.path.join(os.path.dirname(vega_datasets.__file__), "_data")
    spec = next(t for t in TABLES if t.name == table)
    if table == "seattle-weather":
        import csv

        with open(os.path.join(folder, "seattle-weather.csv"), newline="") as f:
            raw = list(csv.DictReader(f))
    else:
        with open(os.path.join(folder, f"{table}.json")) as f:
            raw = json.load(f)
    if table == "barley":  # one row per (variety, site, year): the row's name says all three
        raw = [{**r, "variety": f"{r['variety']} {r['site']} {r['year']}"} for r in raw]
    out, seen = [], set()
    for r in raw:
        cols = (spec.key, *spec.numbers, spec.label)
        if any(r.get(c) in (None, "") for c in cols) or r[spec.key] in seen:
            continue
        seen.add(r[spec.key])
        out.append({c: _fmt(r[c]) for c in cols})
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def render(cols: list[str], rows: list[dict[str, str]]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(r[c] for c in cols) + " |\n" for r in rows)


def render_csv(cols: list[str], rows: list[dict[str, str]]) -> str:
    return ",".join(cols) + "\n" + "".join(",".join(r[c] for c in cols) + "\n" for r in rows)


def parse(text: str) -> tuple[list[str], list[dict[str, str]]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|") and not ln.startswith("|---")]
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(cols, (c.strip() for c in ln.strip("|").split("|")), strict=True)) for ln in lines[1:]]
    return cols, rows


def _snippet(rng: random.Random) -> tuple[Table, list[str], list[dict[str, str]]]:
    spec = rng.choice(TABLES)
    rows = rng.sample(rows_of(spec.name), N_ROWS)
    return spec, [spec.key, rng.choice(spec.numbers), spec.label], rows


def _prompt(cols: list[str], rows: list[dict[str, str]], question: str) -> str:
    return f"Table:\n{render(cols, rows)}Question: {question}"


# --- questions -----------------------------------------------------------------------------------------------


def _question(spec: Table, cols: list[str], rows: list[dict[str, str]], q: str, answer: str, category: str, why: str) -> Question:
    """The item shows the snippet and the question; the sources may render the snippet otherwise."""
    return Question(_prompt(cols, rows, q), answer, category, why, {"table": spec, "cols": cols, "rows": rows, "question": q})


def lookup_q(rng: random.Random) -> Question:
    spec, cols, rows = _snippet(rng)
    row, col = rng.choice(rows), rng.choice(cols[1:-1])
    q = f"What is the {col} of {row[spec.key]}?"
    why = f"The row for {row[spec.key]} has {col} = {row[col]}."
    return _question(spec, cols, rows, q, row[col], spec.name, why)


def extreme_q(rng: random.Random) -> Question:
    while True:
        spec, cols, rows = _snippet(rng)
        col, most = rng.choice(cols[1:-1]), rng.random() < 0.5
        values = [float(r[col]) for r in rows]
        best = max(values) if most else min(values)
        if values.count(best) == 1:
            break
    row = rows[values.index(best)]
    word = "highest" if most else "lowest"
    q = f"Which {spec.key} has the {word} {col}?"
    why = f"{col} values: {', '.join(r[col] for r in rows)}; the {word} is {row[col]}, in the row for {row[spec.key]}."
    return _question(spec, cols, rows, q, row[spec.key], word, why)


def count_q(rng: random.Random) -> Question:
    spec, cols, rows = _snippet(rng)
    if rng.random() < 0.5:
        value = rng.choice(rows)[spec.label]
        hits = [r for r in rows if r[spec.label] == value]
        q = f"How many rows have {spec.label} equal to {value}?"
        cat = "equal"
        shown = [r[spec.label] for r in rows]
    else:
        col = rng.choice(cols[1:-1])
        values = sorted({float(r[col]) for r in rows})
        threshold = values[rng.randrange(len(values))]
        hits = [r for r in rows if float(r[col]) > threshold]
        q = f"How many rows have {col} greater than {_fmt(threshold)}?"
        cat = "greater"
        shown = [r[col] for r in rows]
    why = f"Values: {', '.join(shown)}; {len(hits)} of them match."
    return _question(spec, cols, rows, q, str(len(hits)), cat, why)


DRAW = {"table-lookup": lookup_q, "table-extreme": extreme_q, "table-count": count_q}


def solve(task_input: str) -> str | None:
    """The answer to a table question, computed from the table in its text (None: not a known form)."""
    if "Table:\n" not in task_input or "\nQuestion: " not in task_input:
        return None
    table, question = task_input.split("\nQuestion: ", 1)
    try:
        cols, rows = parse(table.split("Table:\n", 1)[1])
        if m := re.fullmatch(r"What is the (\w+) of (.+)\?", question):
            return next(r[m.group(1)] for r in rows if r[cols[0]] == m.group(2))
        if m := re.fullmatch(r"Which \w+ has the (highest|lowest) (\w+)\?", question):
            pick = max if m.group(1) == "highest" else min
            return pick(rows, key=lambda r: float(r[m.group(2)]))[cols[0]]
        if m := re.fullmatch(r"How many rows have (\w+) equal to (.+)\?", question):
            return str(sum(r[m.group(1)] == m.group(2) for r in rows))
        if m := re.fullmatch(r"How many rows have (\w+) greater than (.+)\?", question):
            return str(sum(float(r[m.group(1)]) > float(m.group(2)) for r in rows))
    except (StopIteration, KeyError, ValueError, IndexError):
        return None
    return None


def verify(task_input: str, answer: str) -> bool | None:
    gold = solve(task_input)
    if gold is None:
        return None
    try:
        return abs(float(answer) - float(gold)) < 1e-9
    except ValueError:
        return answer.strip().lower() == gold.lower()


# --- raw sources ----------------------------------------------------------------------------------


def _csv_questions(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def row(r: random.Random, task: str, q: Question) -> Row:
        f = q.facts
        return {"table": f["table"].name, "table_csv": render_csv(f["cols"], f["rows"]), "question": f["question"], "answer": q.answer}

    return _kit.question_rows(rng, reserved, 2400, DRAW, row)


def _worked(rng: random.Random, reserved: Container[str]) -> list[Row]:
    return _kit.question_rows(rng, reserved, 2400, DRAW, lambda r, task, q: {
        "prompt": q.input, "reasoning": q.why, "answer": q.answer, "question_type": task.removeprefix("table-")})


def _wrong(task: str, q: Question):
    """A plausible wrong answer to ``q``: another count, another row, another cell of the column."""
    rows = q.facts["rows"]
    if task == "table-count":
        return lambda r: _kit.wrong_integer(r, int(q.answer))
    if task == "table-extreme":
        return lambda r: _kit.wrong_choice(r, q.answer, [x[q.facts["table"].key] for x in rows])
    col = re.match(r"What is the (\w+) of", q.facts["question"]).group(1)
    return lambda r: _kit.wrong_choice(r, q.answer, sorted({x[col] for x in rows} | {q.answer + "0"}))


def _crowd(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def row(r: random.Random, task: str, q: Question) -> Row:
        answer = _kit.noisy(r, q.answer, _wrong(task, q))
        return {"prompt": q.input, "crowd_answer": answer, "workers": r.randint(1, 5)}

    return _kit.question_rows(rng, reserved, 2400, DRAW, row)


SOURCES = (
    SourceSpec(
        name="table_questions_csv",
        format="jsonl",
        readme="Questions about small tables (cars, Seattle weather, barley trials) with their answers; each "
        "table is given as CSV text. Fields: table (dataset), table_csv, question, answer.",
        fields={"table": "source dataset", "table_csv": "the table as CSV", "question": "question", "answer": "answer"},
        build=_csv_questions,
        suggested_prompt="Table:\n{table_csv}Question: {question}",
        suggested_answer="{answer}",
        role="clean",
    ),
    SourceSpec(
        name="analyst_worked_answers",
        format="parquet",
        readme="Table questions answered by analysts who wrote down how they read the table. Fields: prompt "
        "(table and question), reasoning, answer, question_type.",
        fields={"prompt": "table and question", "reasoning": "how the answer was found", "answer": "answer",
                "question_type": "kind of question"},
        build=_worked,
        suggested_prompt="{prompt}",
        suggested_answer="{answer}",
        suggested_rationale="{reasoning}",
        role="traces",
    ),
    SourceSpec(
        name="crowd_table_answers",
        format="jsonl",
        readme="Table questions answered by crowd workers (one answer per question, majority where several "
        "workers answered). Fields: prompt (table and question), crowd_answer, workers.",
        fields={"prompt": "table and question", "crowd_answer": "answer given", "workers": "workers who answered"},
        build=_crowd,
        suggested_prompt="{prompt}",
        suggested_answer="{crowd_answer}",
        role="noisy",
    ),
    _kit.element_facts(),
    _kit.leak_trap("table_quiz_crawl", "data-literacy", _kit.filler(DRAW)),
)

DOMAIN = Domain(
    name="tableqa",
    description="Questions over snippets of real tables bundled with vega_datasets; answers computed from the table.",
    sources=SOURCES,
    origin=__name__,
    depends=("tasks._kit",),
    oracle=verify,
    tasks=(
        TaskSpec(
            id="table-lookup",
            domain="tableqa",
            description="Read one cell of a small table: the value of a column for a named row.",
            instruction="Reply with the value as 'Answer: <value>'.",
            answer_format="A line 'Answer: <number>' with the cell's value as written in the table.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=r"Answer:\s*(-?[\d.]+)",
            metric="numeric",
            categories=tuple(t.name for t in TABLES),
            generate=_kit.generator("table-lookup", lookup_q),
            dev_size=60, test_size=120, max_new_tokens=48, seed=31,
        ),
        TaskSpec(
            id="table-extreme",
            domain="tableqa",
            description="Name the row whose value in a column is the highest or the lowest.",
            instruction="Reply with the row's name as 'Answer: <name>'.",
            answer_format="A line 'Answer: <row name>' exactly as in the table's first column.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=r"Answer:\s*([^\n]+)",
            metric="exact",
            categories=("highest", "lowest"),
            generate=_kit.generator("table-extreme", extreme_q),
            dev_size=60, test_size=120, max_new_tokens=80, seed=32,
        ),
        TaskSpec(
            id="table-count",
            domain="tableqa",
            description="Count the rows of a small table that meet a condition.",
            instruction="Reply with the count as 'Answer: <integer>'.",
            answer_format=_kit.INT_FORMAT,
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=_kit.INT_PATTERN,
            metric="numeric",
            categories=("equal", "greater"),
            generate=_kit.generator("table-count", count_q),
            dev_size=60, test_size=120, max_new_tokens=64, seed=33,
        ),
    ),
)
