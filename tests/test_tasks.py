"""Task generators: deterministic, answers computed correctly, splits disjoint and sealed."""

from __future__ import annotations

import random

import sympy

from ftdojo import datafiles, paths, repository
from ftdojo.registry import all_tasks
from tasks import math as math_tasks


def test_registry_discovers_math_tasks() -> None:
    assert {"math-arith", "math-linear"} <= set(all_tasks())


def test_generators_are_deterministic() -> None:
    for task in (t for t in all_tasks().values() if t.generate is not None):
        a = [task.generate(random.Random("s")) for _ in range(50)]
        b = [task.generate(random.Random("s")) for _ in range(50)]
        assert a == b


def test_materialised_files_are_byte_identical_across_homes(tmp_path, monkeypatch) -> None:
    from ftdojo.registry import get_domain

    d = get_domain("math")
    hashes = []
    for name in ("one", "two"):
        monkeypatch.setenv("FTDOJO_HOME", str(tmp_path / name))
        raw = repository.materialize(d)
        files = sorted(p for p in raw.parent.rglob("*") if p.is_file() and p.name != ".complete")
        files += sorted(repository.sealed_path(t, d) for t in d.tasks)
        hashes.append([(p.name, paths.sha256_file(p)) for p in files])
    assert hashes[0] == hashes[1] and len(hashes[0]) >= 10


def test_word_problem_answers_are_right() -> None:
    rng = random.Random(3)
    for _ in range(200):
        q, ans, cat, steps = math_tasks.word_problem(rng)
        # the worked steps end in the answer, and each step's arithmetic holds
        for step in steps.rstrip(".").split(". "):
            lhs, rhs = step.split(" = ")
            assert sympy.sympify(lhs) == int(rhs), step
        assert steps.rstrip(".").endswith(f"= {ans}")


def _sides(eq: str):
    tf = sympy.parsing.sympy_parser.standard_transformations + (
        sympy.parsing.sympy_parser.implicit_multiplication_application,
    )
    lhs, rhs = eq.split("=")
    return sympy.parsing.parse_expr(lhs, transformations=tf), sympy.parsing.parse_expr(rhs, transformations=tf)


def _holds(eq: str, value: int) -> bool:
    lhs, rhs = _sides(eq)
    x = sympy.Symbol("x")
    return sympy.simplify(lhs.subs(x, value) - rhs.subs(x, value)) == 0


def test_equation_solutions_satisfy_the_equation() -> None:
    rng = random.Random(4)
    for _ in range(100):
        eq, sol, _, _ = math_tasks.equation(rng)
        assert _holds(eq, sol) and not _holds(eq, sol + 1), eq


def test_dev_and_test_never_overlap_and_sources_exclude_them(math_domain) -> None:
    reserved: set[str] = set()
    for task in math_domain.tasks:
        dev = {i["input"] for i in datafiles.read_items(repository.dev_path(task, math_domain))}
        test = {i["input"] for i in datafiles.read_items(repository.sealed_path(task, math_domain))}
        assert len(dev) == task.dev_size and len(test) == task.test_size
        assert not dev & test
        reserved |= dev | test
    raw = repository.raw_dir(math_domain)
    for src in math_domain.sources:
        if src.role == "leak":
            continue  # the leak trap holds test items on purpose (tests/test_suite.py)
        rows = datafiles.read_rows(raw / f"{src.name}.{src.format}", src.format)
        prompts = {src.suggested_prompt.format(**r) for r in rows}
        assert not prompts & reserved, src.name


def test_noisy_source_is_noisy_and_clean_source_is_clean(math_domain) -> None:
    raw = repository.raw_dir(math_domain)
    forum = datafiles.read_rows(raw / "homework_forum.jsonl", "jsonl")
    drills = datafiles.read_rows(raw / "algebra_drills.csv", "csv")
    assert all(_holds(r["equation"], int(r["solution"])) for r in drills[:200])
    eqs = [r for r in forum if r["question"].startswith("Solve for x: ")][:200]
    wrong = sum(not _holds(r["question"].removeprefix("Solve for x: "), int(r["accepted_reply"])) for r in eqs)
    checked = len(eqs)
    assert 0.25 < wrong / checked < 0.55


def test_math_verifier_accepts_true_and_rejects_wrong_answers() -> None:
    rng = random.Random(9)
    for _ in range(100):
        q, ans, _, _ = math_tasks.word_problem(rng)
        assert math_tasks.verify(q, str(ans)) is True and math_tasks.verify(q, str(ans + 1)) is False
        eq, x, _, _ = math_tasks.equation(rng)
        assert math_tasks.verify(f"Solve for x: {eq}", str(x)) is True
        assert math_tasks.verify(f"Solve for x: {eq}", str(x + 2)) is False
    assert math_tasks.verify("What is the airspeed of a swallow?", "11") is None
