"""The project's import graph: no circle, and no building block of ``ftdojo/`` that reaches ``actors/``.

Every ``import`` statement counts, function-level ones included (a circle hidden behind a
function-level import is still a circle). Only the layers above the actors — the bench
driver and the CLI — may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ftdojo", "actors", "tasks")
ABOVE_THE_ACTORS = {"ftdojo.bench", "ftdojo.cli"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Project module -> the project modules it imports anywhere in its source."""
    files = {module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # ``from pkg import name``: the submodule when there is one, else the package itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # ``import a.b.c`` of a non-module attribute: its module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circle() -> None:
    found = cycles(import_graph())
    assert not found, f"import circles: {found}"


def test_no_building_block_imports_an_actor() -> None:
    graph = import_graph()
    wrong = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                   if m.startswith("ftdojo") and m not in ABOVE_THE_ACTORS and t.startswith("actors"))
    assert not wrong, f"building blocks of ftdojo/ import actors/: {wrong}"


def test_the_walk_sees_function_level_imports_and_finds_a_planted_circle(tmp_path) -> None:
    """The checker itself: a circle made only of function-level imports is found, and so is an arrow into actors/."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "ftdojo" / "a.py").write_text("from ftdojo import b\n")
    (tmp_path / "ftdojo" / "b.py").write_text("def f():\n    from ftdojo.a import g\n")
    (tmp_path / "ftdojo" / "c.py").write_text("def f():\n    import actors.x\n")
    (tmp_path / "actors" / "x.py").write_text("")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["ftdojo.a", "ftdojo.b"]]
    assert graph["ftdojo.c"] == {"actors.x"}


def test_no_script_directory_holds_a_module_named_like_the_standard_librarys() -> None:
    """A script's own folder comes first on ``sys.path``: a ``bench/profile.py`` hid the standard ``profile``
    module from every bench script, and transformers' lazy imports then failed with a message that named a model
    class, not the file."""
    import sys

    folders = [ROOT / "bench", ROOT / "tests"]
    clashes = [str(p.relative_to(ROOT)) for d in folders for p in d.glob("*.py") if p.stem in sys.stdlib_module_names]
    assert clashes == []
