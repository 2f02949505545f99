"""Task and domain specs, and the registry that discovers them.

A *domain* owns a shared raw-data repository (its sources) and the tasks that
draw on it. Built-in domains are modules in the top-level ``tasks`` package,
each exposing ``DOMAIN``; the registry imports every such module. Generators
are deterministic functions of a ``random.Random``: same seed, same bytes.
Users add tasks from their own files with a YAML spec (``ftdojo.usertasks``)
placed in ``tasks/`` or in a folder listed in ``FTDOJO_TASKS``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import random
import sys
from collections.abc import Callable, Container
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from ftdojo.errors import UnknownName, UserError
from ftdojo.paths import sha256_json

Row = dict[str, str | int | float | None]
Item = dict[str, str]  # id, input, answer, category
ItemGenerator = Callable[[random.Random], Item]
RowGenerator = Callable[[random.Random, Container[str]], list[Row]]


@dataclass(frozen=True)
class SourceSpec:
    """One raw source of a domain: a dataset card and a deterministic builder."""

    name: str
    format: Literal["jsonl", "csv", "parquet"]
    readme: str
    fields: dict[str, str]
    build: RowGenerator
    """(rng, reserved) -> rows; must emit no input that is ``in reserved`` (dev/test near-copies)."""
    suggested_prompt: str | None = None
    suggested_answer: str | None = None
    suggested_rationale: str | None = None
    per_task: dict[str, Suggestion] | None = None
    """Task id -> the mapping the card suggests for that task; a task missing here gets none.
    None: the three ``suggested_*`` fields hold for every task of the domain."""
    role: Literal["clean", "traces", "noisy", "irrelevant", "leak", "other"] = "other"
    """What the source is *for the suite's authors and tests*; never shown to agents."""

    def suggestion(self, task_id: str) -> Suggestion:
        if self.per_task is None:
            return Suggestion(self.suggested_prompt, self.suggested_answer, self.suggested_rationale)
        return self.per_task.get(task_id, Suggestion())


@dataclass(frozen=True)
class Suggestion:
    """How a dataset card suggests mapping a source's fields into one task's format."""

    prompt: str | None = None
    answer: str | None = None
    rationale: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A task: what to learn, how it is scored, and how its splits are drawn."""

    id: str
    domain: str
    description: str
    instruction: str
    answer_format: str
    answer_template: str
    answer_pattern: str
    metric: str
    categories: tuple[str, ...]
    generate: ItemGenerator | None = None
    """Draws one item; None for a file-backed task (``items_file``)."""
    items_file: str | None = None
    """JSONL of items (input, answer, category) split into dev and test by ``seed``."""
    dev_size: int = 100
    test_size: int = 200
    tolerance: float = 1e-6
    direction: Literal["max", "min"] = "max"
    max_new_tokens: int = 64
    seed: int = 0

    def render_answer(self, value: str) -> str:
        return self.answer_template.format(answer=value)

    def spec_hash(self) -> str:
        d = {k: v for k, v in self.__dict__.items() if k != "generate"}
        if self.generate is not None:
            d["generator"] = f"{self.generate.__module__}.{self.generate.__qualname__}"
        return sha256_json(d)[:16]


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    sources: tuple[SourceSpec, ...]
    tasks: tuple[TaskSpec, ...]
    seed: int = 0
    origin: str = ""
    """Where the domain was defined: a module name or a YAML path (part of its fingerprint)."""
    verifier: Callable[[str, str], bool | None] | None = None
    """Checks (input, answer) by computation: True / False, or None when it cannot tell."""
    depends: tuple[str, ...] = ()
    """Further modules whose source defines the domain's bytes (shared helpers)."""

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise UnknownName(f"source of domain {self.name}", name, [s.name for s in self.sources])


@cache
def domains() -> dict[str, Domain]:
    import tasks as builtin
    from ftdojo import usertasks

    found: dict[str, Domain] = {}
    for mod in pkgutil.iter_modules(builtin.__path__):
        module = importlib.import_module(f"tasks.{mod.name}")
        dom = getattr(module, "DOMAIN", None)
        if isinstance(dom, Domain):
            found[dom.name] = dom
    folders = [Path(p) for p in builtin.__path__]
    folders += [Path(p) for p in os.environ.get("FTDOJO_TASKS", "").split(os.pathsep) if p]
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            dom = usertasks.load(path)
            if dom.name in found and found[dom.name].origin in sys.modules:
                raise UserError(f"{path}: domain {dom.name!r} is a built-in domain ({found[dom.name].origin}); name another")
            found[dom.name] = usertasks.merge(found[dom.name], dom) if dom.name in found else dom
    return found


def reload() -> None:
    """Forget discovered domains (after FTDOJO_TASKS or a task file changed)."""
    domains.cache_clear()


def all_tasks() -> dict[str, TaskSpec]:
    return {t.id: t for d in domains().values() for t in d.tasks}


def get_task(task_id: str) -> TaskSpec:
    tasks = all_tasks()
    if task_id not in tasks:
        raise UnknownName("task", task_id, list(tasks))
    return tasks[task_id]


def get_domain(name: str) -> Domain:
    if name not in domains():
        raise UnknownName("domain", name, list(domains()))
    return domains()[name]
