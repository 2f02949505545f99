"""Finance domain: monthly closing prices of AAPL, AMZN, GOOG, IBM and MSFT
(2000-2010) from the stocks table that ``vega_datasets`` bundles.

Tasks: did the price rise or fall over a window of months; in which month of
the window was the close highest or lowest. Every answer is computed from
the prices in the input (``solve``), which is also the domain's oracle (the
suite's own tests; agents never get it).
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections.abc import Container
from functools import cache

from ftdojo.tasking import Domain, Row, SourceSpec, Suggestion, TaskSpec
from tasks import _kit
from tasks._kit import Question

SYMBOLS = ("AAPL", "AMZN", "GOOG", "IBM", "MSFT")


@cache
def series() -> dict[str, list[tuple[str, str]]]:
    """Symbol -> [(month label 'Jan 2004', close as written)] in date order."""
    import vega_datasets

    path = os.path.join(os.path.dirname(vega_datasets.__file__), "_data", "stocks.csv")
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in SYMBOLS}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            month, _, year = r["date"].split()
            out[r["symbol"]].append((f"{month} {year}", f"{float(r['price']):.2f}"))
    return out


def _window(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    symbol = rng.choice(SYMBOLS)
    length = rng.randint(3, 5)
    closes = series()[symbol]
    start = rng.randrange(len(closes) - length + 1)
    return symbol, closes[start : start + length]


def _listing(symbol: str, window: list[tuple[str, str]]) -> str:
    return f"Monthly closing prices of {symbol} (USD): " + "; ".join(f"{m}: {p}" for m, p in window) + "."


def trend_q(rng: random.Random) -> Question:
    while True:
        symbol, window = _window(rng)
        first, last = float(window[0][1]), float(window[-1][1])
        if first != last:
            break
    answer = "rise" if last > first else "fall"
    q = _listing(symbol, window) + " Did the price rise or fall from the first month shown to the last? Options: rise, fall"
    moved = "higher, so the price rose" if answer == "rise" else "lower, so the price fell"
    why = f"First close {window[0][1]} ({window[0][0]}), last close {window[-1][1]} ({window[-1][0]}); the last is {moved}."
    return Question(q, answer, symbol, why, {"symbol": symbol, "window": window})


def peak_q(rng: random.Random) -> Question:
    while True:
        symbol, window = _window(rng)
        most = rng.random() < 0.5
        values = [float(p) for _, p in window]
        best = max(values) if most else min(values)
        if values.count(best) == 1:
            break
    word = "highest" if most else "lowest"
    month = window[values.index(best)][0]
    q = _listing(symbol, window) + f" In which month was the closing price {word}?"
    why = f"Closes: {', '.join(p for _, p in window)}; the {word} is {window[values.index(best)][1]}, in {month}."
    return Question(q, month, word, why, {"symbol": symbol, "window": window})


DRAW = {"fin-trend": trend_q, "fin-peak": peak_q}


def solve(task_input: str) -> str | None:
    pairs = re.findall(r"([A-Z][a-z]{2} \d{4}): (-?\d+(?:\.\d+)?)", task_input)
    if len(pairs) < 2:
        return None
    values = [float(p) for _, p in pairs]
    if task_input.endswith("Options: rise, fall"):
        return None if values[0] == values[-1] else "rise" if values[-1] > values[0] else "fall"
    if m := re.search(r"In which month was the closing price (highest|lowest)\?$", task_input):
        best = max(values) if m.group(1) == "highest" else min(values)
        return pairs[values.index(best)][0]
    return None


def verify(task_input: str, answer: str) -> bool | None:
    gold = solve(task_input)
    return None if gold is None else answer.strip().lower() == gold.lower()


# --- raw sources ----------------------------------------------------------------------------------------


def _windows(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def row(r: random.Random, task: str, q: Question) -> Row:
        window = q.facts["window"]
        values = [float(p) for _, p in window]
        return {
            "symbol": q.facts["symbol"], "months": "; ".join(m for m, _ in window), "closes": "; ".join(p for _, p in window),
            "change": "rise" if values[-1] > values[0] else "fall" if values[-1] < values[0] else "flat",
            "max_month": window[values.index(max(values))][0], "min_month": window[values.index(min(values))][0],
        }

    return _kit.question_rows(rng, reserved, 1500, DRAW, row)


def _desk_notes(rng: random.Random, reserved: Container[str]) -> list[Row]:
    return _kit.question_rows(rng, reserved, 1500, DRAW,
                              lambda r, task, q: {"question": q.input, "analysis": q.why, "answer": q.answer})


def _forum(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def row(r: random.Random, task: str, q: Question) -> Row:
        options = ["rise", "fall"] if task == "fin-trend" else [m for m, _ in q.facts["window"]]
        answer = _kit.noisy(r, q.answer, lambda r: _kit.wrong_choice(r, q.answer, options))
        return {"post": q.input, "top_answer": answer, "score": r.randint(-2, 80)}

    return _kit.question_rows(rng, reserved, 1500, DRAW, row)


SOURCES = (
    SourceSpec(
        name="price_windows",
        format="csv",
        readme="Windows of 3-5 consecutive monthly closes of large US tech stocks (2000-2010), with summary "
        "columns. Columns: symbol, months, closes (';'-separated, USD), change (rise/fall/flat, last vs first), "
        "max_month, min_month.",
        fields={"symbol": "ticker", "months": "months of the window", "closes": "closing prices", "change": "last vs first",
                "max_month": "month of the highest close", "min_month": "month of the lowest close"},
        build=_windows,
        per_task={
            "fin-trend": Suggestion("{symbol} closes for {months}: {closes}. Rise or fall?", "{change}"),
            "fin-peak": Suggestion("{symbol} closes for {months}: {closes}. Month of the highest close?", "{max_month}"),
        },
        role="clean",
    ),
    SourceSpec(
        name="analyst_desk_notes",
        format="parquet",
        readme="Short notes by junior analysts answering questions about price moves, with the reasoning they "
        "showed their desk. Fields: question, analysis, answer.",
        fields={"question": "question", "analysis": "reasoning", "answer": "answer"},
        build=_desk_notes,
        suggested_prompt="{question}",
        suggested_answer="{answer}",
        suggested_rationale="{analysis}",
        role="traces",
    ),
    SourceSpec(
        name="investor_forum",
        format="jsonl",
        readme="Questions from a retail-investor forum with the top-voted answer. Fields: post, top_answer, score.",
        fields={"post": "question post", "top_answer": "top-voted answer", "score": "votes"},
        build=_forum,
        suggested_prompt="{post}",
        suggested_answer="{top_answer}",
        role="noisy",
    ),
    _kit.airport_facts(),
    _kit.leak_trap("finance_quiz_crawl", "finance", _kit.filler(DRAW)),
)

DOMAIN = Domain(
    name="finance",
    description="Price-move questions over real monthly closes of five stocks (vega_datasets stocks table).",
    sources=SOURCES,
    origin=__name__,
    depends=("tasks._kit",),
    oracle=verify,
    tasks=(
        TaskSpec(
            id="fin-trend",
            domain="finance",
            description="Say whether a stock's price rose or fell between the first and last month of a window.",
            instruction="Reply with one option as 'Answer: rise' or 'Answer: fall'.",
            answer_format="A line 'Answer: rise' or 'Answer: fall'.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=r"Answer:\s*([A-Za-z]+)",
            metric="choice",
            categories=SYMBOLS,
            generate=_kit.generator("fin-trend", trend_q),
            dev_size=60, test_size=120, max_new_tokens=64, seed=41,
        ),
        TaskSpec(
            id="fin-peak",
            domain="finance",
            description="Name the month of a window in which a stock closed highest or lowest.",
            instruction="Reply with the month as 'Answer: <Mon YYYY>'.",
            answer_format="A line 'Answer: <Mon YYYY>', e.g. 'Answer: Mar 2004'.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=r"Answer:\s*([A-Z][a-z]{2} \d{4})",
            metric="exact",
            categories=("highest", "lowest"),
            generate=_kit.generator("fin-peak", peak_q),
            dev_size=60, test_size=120, max_new_tokens=64, seed=42,
        ),
    ),
)
