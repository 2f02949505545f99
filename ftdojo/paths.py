"""Where ftdojo keeps things outside the repository.

Everything large — converted models, the materialised raw-data repository,
sealed test splits, run workspaces — lives under ``FTDOJO_HOME``
(default ``~/.cache/ftdojo``), never in the source tree.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any


def home() -> Path:
    return Path(os.environ.get("FTDOJO_HOME", Path.home() / ".cache" / "ftdojo")).expanduser()


def models_dir() -> Path:
    """Converted and tiny models; FTDOJO_MODELS lets tests share one cache across homes."""
    return Path(os.environ.get("FTDOJO_MODELS", home() / "models")).expanduser()


def data_dir() -> Path:
    """The shared raw-data repository and visible splits (agent-readable)."""
    return home() / "data"


def sealed_dir() -> Path:
    """Sealed test splits: read only by the referee, never by agent-facing code."""
    return home() / "sealed"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


CODE_PACKAGES = ("ftdojo", "actors", "tasks")
"""The packages whose code can decide a run's result."""
RUN_ENTRIES = ("actors.supervisor", "ftdojo.sandbox_boot")
"""Where a run's code starts: the run loop, and the sandbox's boot script (run by path in a child process,
so no import names it); what they import, directly or not, is the code every run executes."""


def _module_path(root: Path, name: str) -> Path | None:
    """The file of an importable name of the code packages: a module, a package's __init__, or (a namespace
    package such as ``ftdojo.prompts``) its folder; None outside them."""
    if name.split(".")[0] not in CODE_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py", base):
        if p.exists():
            return p
    return None


def _imported(root: Path, name: str, tree: ast.Module, is_package: bool) -> set[str]:
    """The code-package modules a module imports anywhere in its text (function-level imports count: a lazy
    import runs too); ``from a import b`` counts ``a.b`` where that is a module."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level-1 more
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if _module_path(root, m) is not None}


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def code_files(*entries: str, root: Path | None = None) -> dict[str, bytes]:
    """What the modules ``entries`` execute: each code-package module they import, transitively (with the
    parent packages' ``__init__``), as its syntax tree without docstrings or comments, and the prompt and
    text files of the packages among them. Keyed by path relative to the tree's root."""
    root = root or Path(__file__).resolve().parent.parent
    todo, seen, out = list(entries), set(), {}
    while todo:
        name = todo.pop()
        if name in seen or (path := _module_path(root, name)) is None:
            continue
        seen.add(name)
        todo.extend(".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))  # parent packages
        if path.is_dir() or path.name == "__init__.py":
            folder = path if path.is_dir() else path.parent
            out.update({str(p.relative_to(root)): p.read_bytes() for p in sorted(folder.glob("*")) if p.suffix in {".md", ".txt"}})
        if path.suffix == ".py":
            tree = ast.parse(path.read_bytes(), filename=str(path))
            todo.extend(_imported(root, name, tree, path.name == "__init__.py"))
            out[str(path.relative_to(root))] = ast.dump(_without_docstrings(tree)).encode()
    return out


def code_version(*modules: str, root: Path | None = None) -> str:
    """Hash of the code a run executes: what ``RUN_ENTRIES`` import, plus ``modules`` (its
    task's domain module and the helpers it depends on), with docstrings, comments and layout left out.
    Part of every run key, so a run is redone only when code it runs changed, not when a document, a report
    module or another domain did."""
    h = hashlib.sha256()
    for rel, text in sorted(code_files(*RUN_ENTRIES, *modules, root=root).items()):
        h.update(rel.encode() + b"\0" + text + b"\0")
    return h.hexdigest()[:16]


def run_code_version(domain: Any) -> str:
    """``code_version`` of a run of a task of ``domain`` (a ``tasking.Domain``): the run loop's code and the
    domain's own module with its helpers (a spec domain's code is the spec loader, already in the loop's)."""
    root = Path(__file__).resolve().parent.parent
    return _of_this_tree(tuple(m for m in (domain.origin, *domain.depends) if _module_path(root, m)))


@cache
def _of_this_tree(modules: tuple[str, ...]) -> str:
    """Once per process and domain: a run's code does not change under it."""
    return code_version(*modules)
