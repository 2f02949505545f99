"""A run's key holds the hash of the code it executes: what the run loop imports and its domain's module,
without docstrings, comments or layout; a change elsewhere (a document, the report, another domain) leaves
the key and so the finished run alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ftdojo import paths

ROOT = Path(paths.__file__).resolve().parent.parent
MATH = ("tasks.math", "tasks._kit")
FINANCE = ("tasks.finance", "tasks._kit")


@pytest.fixture
def tree(tmp_path) -> Path:
    for pkg in paths.CODE_PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_the_run_code_is_the_loop_its_imports_the_sandbox_boot_and_the_domain() -> None:
    files = paths.code_files(*paths.RUN_ENTRIES, *MATH)
    for needed in ("actors/supervisor.py", "actors/trainer.py", "ftdojo/training.py", "ftdojo/evaluation.py",
                   "ftdojo/scoring.py", "ftdojo/sandbox_boot.py", "ftdojo/prompts/planner.md", "tasks/math.py", "tasks/_kit.py"):
        assert needed in files, needed
    for apart in ("ftdojo/report/render.py", "ftdojo/cli.py", "tasks/finance.py", "tasks/paper/aime24.yaml"):
        assert apart not in files, apart


def test_docstrings_comments_and_layout_leave_the_version_and_code_changes_it(tree) -> None:
    before = paths.code_version(*MATH, root=tree)
    assert before == paths.code_version(*MATH, root=ROOT)  # a copy of the tree is the same code
    training = tree / "ftdojo" / "training.py"
    text = training.read_text()
    first = text.index('"""', text.index("def "))  # the first function's docstring
    training.write_text(text[:first + 3] + "Reworded. " + text[first + 3:] + "\n# a closing comment\n\n\n")
    assert paths.code_version(*MATH, root=tree) == before
    training.write_text(training.read_text() + "\nRETRIES = 3\n")
    assert paths.code_version(*MATH, root=tree) != before


def test_a_change_to_one_domain_reruns_its_tasks_only(tree) -> None:
    math, finance = paths.code_version(*MATH, root=tree), paths.code_version(*FINANCE, root=tree)
    assert math != finance
    (tree / "tasks" / "finance.py").write_text((tree / "tasks" / "finance.py").read_text() + "\nWINDOW = 6\n")
    assert paths.code_version(*MATH, root=tree) == math and paths.code_version(*FINANCE, root=tree) != finance
    (tree / "tasks" / "_kit.py").write_text((tree / "tasks" / "_kit.py").read_text() + "\nSHARED = 1\n")
    assert paths.code_version(*MATH, root=tree) != math  # a helper both import reruns both


@pytest.mark.parametrize("rel, reruns", [
    ("ftdojo/report/render.py", False),  # the report reads records; no run executes it
    ("ftdojo/cli.py", False),
    ("ftdojo/prompts/planner.md", True),  # what an LLM planner is asked
    ("ftdojo/sandbox_boot.py", True),  # runs agent code by path, not by import
    ("actors/validator.py", True),
])
def test_what_reruns_a_task(tree, rel, reruns) -> None:
    before = paths.code_version(*MATH, root=tree)
    path = tree / rel
    path.write_text(path.read_text() + ("\nextra line\n" if path.suffix == ".md" else "\nEXTRA = 1\n"))
    assert (paths.code_version(*MATH, root=tree) != before) is reruns


def test_the_bench_keys_each_task_by_its_own_domain_code(math_domain, monkeypatch) -> None:
    """Changed finance code changes the keys of the finance tasks' runs and of no other task's."""
    from ftdojo import bench

    args = bench.parse_args(["all", "--agents", "zero-shot", "--seeds", "0"])
    before = {r.key.task: r.key.config_hash for r in bench.plan_runs(args)[1]}
    real = paths.run_code_version
    monkeypatch.setattr(paths, "run_code_version", lambda d: real(d) + ("-changed" if d.name == "finance" else ""))
    after = {r.key.task: r.key.config_hash for r in bench.plan_runs(args)[1]}
    assert before.keys() == after.keys() and len(before) >= 13
    assert {t for t in before if before[t] != after[t]} == {"fin-trend", "fin-peak"}
