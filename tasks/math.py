"""Math domain: arithmetic word problems and linear equations.

Every answer is computed, and every equation's solution is re-derived with
sympy before it is emitted. The shared raw repository holds six sources:
a clean Q/A set whose answers are bare numbers (the task wants
``Answer: N``), an equation drill table in CSV, worked solutions with
reasoning traces (Parquet), a homework-forum dump whose accepted replies
are wrong at a fixed rate, periodic-table facts (irrelevant), and a quiz
crawl that holds near-copies of test items (the leak trap).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Container

from ftdojo.tasking import Domain, Item, Row, SourceSpec, TaskSpec
from tasks import _kit

NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Milo", "Nia"]
THINGS = ["apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "coins", "cards", "books"]
NOISE_RATE = 0.4


def _id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


# --- arithmetic word problems ---------------------------------------------------


def word_problem(rng: random.Random) -> tuple[str, int, str, str]:
    """(question, answer, category, worked steps)."""
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    kind = rng.choice(["two-step", "three-step", "multiply"])
    if kind == "two-step":
        a, b = rng.randint(3, 20), rng.randint(1, 10)
        c = rng.randint(1, a + b - 1)
        q = f"{name} has {a} {thing}. {name} gets {b} more, then gives away {c}. How many {thing} does {name} have now?"
        ans = a + b - c
        steps = f"{a} + {b} = {a + b}. {a + b} - {c} = {ans}."
    elif kind == "three-step":
        a, b, c = rng.randint(3, 15), rng.randint(1, 9), rng.randint(1, 9)
        d = rng.randint(1, a + b + c - 1)
        q = (
            f"{name} starts with {a} {thing}, finds {b} more, buys {c} more, and loses {d}. "
            f"How many {thing} does {name} have?"
        )
        ans = a + b + c - d
        steps = f"{a} + {b} = {a + b}. {a + b} + {c} = {a + b + c}. {a + b + c} - {d} = {ans}."
    else:
        n, per, extra = rng.randint(2, 6), rng.randint(2, 6), rng.randint(1, 9)
        q = f"{name} has {n} bags with {per} {thing} in each bag, plus {extra} loose {thing}. How many {thing} in total?"
        ans = n * per + extra
        steps = f"{n} * {per} = {n * per}. {n * per} + {extra} = {ans}."
    return q, ans, kind, steps


def arith_item(rng: random.Random) -> Item:
    q, ans, cat, _ = word_problem(rng)
    return {"id": _id("arith", q), "input": q, "answer": str(ans), "category": cat}


# --- linear equations -------------------------------------------------------------


def _term(coef: int, var: str = "x") -> str:
    return var if coef == 1 else f"{coef}{var}"


def _signed(v: int) -> str:
    return f"+ {v}" if v >= 0 else f"- {-v}"


def equation(rng: random.Random) -> tuple[str, int, str, str]:
    """(equation, solution, category, worked steps); solution checked by sympy."""
    x = rng.randint(-5, 10)
    kind = rng.choice(["ax+b=c", "a(x+b)=c", "ax+b=cx+d"])
    if kind == "ax+b=c":
        a, b = rng.randint(2, 5), rng.choice([v for v in range(-10, 11) if v])
        eq = f"{_term(a)} {_signed(b)} = {a * x + b}"
        steps = f"{_term(a)} = {a * x + b} {_signed(-b)} = {a * x}. x = {a * x} / {a} = {x}."
    elif kind == "a(x+b)=c":
        a, b = rng.randint(2, 4), rng.choice([v for v in range(-6, 7) if v])
        eq = f"{a}(x {_signed(b)}) = {a * (x + b)}"
        steps = f"x {_signed(b)} = {a * (x + b)} / {a} = {x + b}. x = {x + b} {_signed(-b)} = {x}."
    else:
        a, c = rng.randint(3, 6), rng.randint(1, 2)
        b = rng.choice([v for v in range(-9, 10) if v])
        d = (a - c) * x + b
        eq = f"{_term(a)} {_signed(b)} = {_term(c)} {_signed(d)}"
        steps = f"{_term(a - c)} = {d} {_signed(-b)} = {d - b}. x = {d - b} / {a - c} = {x}."
    lhs, rhs = eq.split("=")
    import sympy  # lazily: every process that reads the task registry imports this module

    sym = sympy.Symbol("x")
    parse = sympy.parsing.sympy_parser.parse_expr
    tf = sympy.parsing.sympy_parser.standard_transformations + (
        sympy.parsing.sympy_parser.implicit_multiplication_application,
    )
    sol = sympy.solve(sympy.Eq(parse(lhs, transformations=tf), parse(rhs, transformations=tf)), sym)
    if sol != [x]:
        raise AssertionError(f"generator bug: {eq} has solution {sol}, not {x}")
    return eq, x, kind, steps


def linear_item(rng: random.Random) -> Item:
    eq, x, cat, _ = equation(rng)
    return {"id": _id("lin", eq), "input": f"Solve for x: {eq}", "answer": str(x), "category": cat}


# --- oracle (the suite's own tests; agents never get it) -----------------

_WORD_PATTERNS = (
    (re.compile(r"has (\d+) \w+\. \w+ gets (\d+) more, then gives away (\d+)\."), lambda a, b, c: a + b - c),
    (re.compile(r"starts with (\d+) \w+, finds (\d+) more, buys (\d+) more, and loses (\d+)\."), lambda a, b, c, d: a + b + c - d),
    (re.compile(r"has (\d+) bags with (\d+) \w+ in each bag, plus (\d+) loose"), lambda n, p, e: n * p + e),
)


def verify(task_input: str, answer: str) -> bool | None:
    """Check an answer by computation: True / False, or None when the input is not a known form."""
    try:
        value = int(answer.strip())
    except ValueError:
        return False
    if task_input.startswith("Solve for x: "):
        lhs, rhs = task_input.removeprefix("Solve for x: ").split("=")
        import sympy

        x = sympy.Symbol("x")
        tf = sympy.parsing.sympy_parser.standard_transformations + (
            sympy.parsing.sympy_parser.implicit_multiplication_application,
        )
        parse = sympy.parsing.sympy_parser.parse_expr
        return bool(sympy.simplify(parse(lhs, transformations=tf).subs(x, value) - parse(rhs, transformations=tf).subs(x, value)) == 0)
    for pattern, fn in _WORD_PATTERNS:
        m = pattern.search(task_input)
        if m:
            return fn(*map(int, m.groups())) == value
    return None


# --- raw sources --------------------------------------------------------------------


def _gradeschool(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def make(r):
        q, a, cat, _ = word_problem(r)
        return {"question": q, "answer": a, "topic": cat}, q

    return _kit.draw_rows(rng, reserved, 2500, make)


def _drills(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def make(r):
        eq, x, cat, _ = equation(r)
        return {"equation": eq, "solution": x, "form": cat}, f"Solve for x: {eq}"

    return _kit.draw_rows(rng, reserved, 2500, make)


def _worked(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def make(r):
        if r.random() < 0.5:
            q, a, _, steps = word_problem(r)
            return {"problem": q, "solution": f"{steps} So the answer is {a}.", "final": a}, q
        eq, x, _, steps = equation(r)
        q = f"Solve for x: {eq}"
        return {"problem": q, "solution": f"{steps} So the answer is {x}.", "final": x}, q

    return _kit.draw_rows(rng, reserved, 1500, make)


def _forum(rng: random.Random, reserved: Container[str]) -> list[Row]:
    def make(r):
        if r.random() < 0.5:
            q, a, _, _ = word_problem(r)
        else:
            eq, a, _, _ = equation(r)
            q = f"Solve for x: {eq}"
        if r.random() < NOISE_RATE:
            a = a + r.choice([-3, -2, -1, 1, 2, 3, 10])
        return {"post": f"Can someone help? {q}", "question": q, "accepted_reply": str(a), "votes": r.randint(0, 40)}, q

    return _kit.draw_rows(rng, reserved, 2000, make)


SOURCES = (
    SourceSpec(
        name="gradeschool_qa",
        format="jsonl",
        readme="Grade-school arithmetic word problems with their final numeric answers. "
        "Fields: question (text), answer (integer), topic (problem type). Collected from worksheets.",
        fields={"question": "word problem", "answer": "integer answer", "topic": "problem type"},
        build=_gradeschool,
        role="clean",
        suggested_prompt="{question}",
        suggested_answer="{answer}",
    ),
    SourceSpec(
        name="algebra_drills",
        format="csv",
        readme="Linear equation drills in one unknown x, with the solution. "
        "Columns: equation, solution (integer), form (equation shape).",
        fields={"equation": "equation in x", "solution": "value of x", "form": "equation shape"},
        build=_drills,
        role="clean",
        suggested_prompt="Solve for x: {equation}",
        suggested_answer="{solution}",
    ),
    SourceSpec(
        name="worked_solutions",
        format="parquet",
        readme="Step-by-step solutions to arithmetic and algebra exercises, written by tutors. "
        "Fields: problem, solution (worked steps ending in the answer), final (integer).",
        fields={"problem": "exercise text", "solution": "worked steps", "final": "final answer"},
        build=_worked,
        role="traces",
        suggested_prompt="{problem}",
        suggested_answer="{final}",
        suggested_rationale="{solution}",
    ),
    SourceSpec(
        name="homework_forum",
        format="jsonl",
        readme="Questions posted to a homework-help forum with the reply the asker accepted. "
        "Fields: post (raw post), question (extracted question), accepted_reply, votes.",
        fields={"post": "raw post", "question": "question text", "accepted_reply": "accepted answer", "votes": "votes"},
        build=_forum,
        role="noisy",
        suggested_prompt="{question}",
        suggested_answer="{accepted_reply}",
    ),
)

def _filler(r: random.Random):
    if r.random() < 0.5:
        q, a, _, _ = word_problem(r)
    else:
        eq, a, _, _ = equation(r)
        q = f"Solve for x: {eq}"
    return {"question": q, "answer": str(a)}, q


SOURCES += (_kit.element_facts(), _kit.leak_trap("math_quiz_crawl", "math", _filler))


DOMAIN = Domain(
    name="math",
    description="Grade-school arithmetic and linear algebra with computed answers.",
    sources=SOURCES,
    origin=__name__,
    depends=("tasks._kit",),
    oracle=verify,
    tasks=(
        TaskSpec(
            id="math-arith",
            domain="math",
            description="Solve multi-step arithmetic word problems.",
            instruction="Reply with the final answer as 'Answer: <integer>'.",
            answer_format=_kit.INT_FORMAT,
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=_kit.INT_PATTERN,
            metric="numeric",
            categories=("two-step", "three-step", "multiply"),
            generate=arith_item,
            dev_size=60,
            test_size=120,
            max_new_tokens=48,
            seed=11,
        ),
        TaskSpec(
            id="math-linear",
            domain="math",
            description="Solve linear equations in one unknown with integer solutions.",
            instruction="Reply with the value of x as 'Answer: <integer>'.",
            answer_format="A line 'Answer: <integer>' giving x; anything before it is ignored.",
            answer_template=_kit.ANSWER_TEMPLATE,
            answer_pattern=_kit.INT_PATTERN,
            metric="numeric",
            categories=("ax+b=c", "a(x+b)=c", "ax+b=cx+d"),
            generate=linear_item,
            dev_size=60,
            test_size=120,
            max_new_tokens=48,
            seed=12,
        ),
    ),
)
