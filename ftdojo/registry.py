"""The task registry: every built-in domain and every user task spec, discovered once per process.

Built-in domains are the modules of the top-level ``tasks`` package that
expose ``DOMAIN``; specs are the YAML files under ``tasks/`` (``tasks/paper/``
holds the paper's dataset-backed tasks) and in the folders on
``FTDOJO_TASKS`` (``ftdojo.usertasks``). ``reload`` forgets what
was found (after ``FTDOJO_TASKS`` or a spec file changed).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from functools import cache
from pathlib import Path

import tasks as builtin
from ftdojo import usertasks
from ftdojo.errors import UnknownName, UserError
from ftdojo.tasking import Domain, TaskSpec


@cache
def domains() -> dict[str, Domain]:
    found: dict[str, Domain] = {}
    for mod in pkgutil.iter_modules(builtin.__path__):
        module = importlib.import_module(f"tasks.{mod.name}")
        dom = getattr(module, "DOMAIN", None)
        if isinstance(dom, Domain):
            found[dom.name] = dom
    specs = [p for folder in builtin.__path__ for p in sorted(Path(folder).rglob("*.yaml"))]  # tasks/ and tasks/paper/
    specs += [p for folder in os.environ.get("FTDOJO_TASKS", "").split(os.pathsep) if folder for p in sorted(Path(folder).glob("*.yaml"))]
    for path in specs:
        dom = usertasks.load(path)
        if dom.name in found and found[dom.name].origin in sys.modules:
            raise UserError(f"{path}: domain {dom.name!r} is a built-in domain ({found[dom.name].origin}); name another")
        found[dom.name] = usertasks.merge(found[dom.name], dom) if dom.name in found else dom
    _one_task_per_id(found)
    return found


def _one_task_per_id(found: dict[str, Domain]) -> None:
    """A task id names one task: a user spec may neither reuse a built-in task's id nor another spec's."""
    where: dict[str, Domain] = {}
    for dom in found.values():
        for t in dom.tasks:
            other = where.get(t.id)
            if other is not None:
                first, second = sorted((other, dom), key=lambda d: d.origin not in sys.modules)
                origin = second.origin.split(os.pathsep)[-1]
                kind = "built-in task" if first.origin in sys.modules else "task"
                raise UserError(f"{origin}: id {t.id!r} is already a {kind} (domain {first.name!r}, "
                                f"{first.origin.split(os.pathsep)[0]}); give this task another id")
            where[t.id] = dom


def data_dirs() -> list[Path]:
    """Every folder outside the data home that holds task definitions or task data: the built-in
    ``tasks`` package, the folders on ``FTDOJO_TASKS``, and the folders of each user task's files."""
    out = [Path(p) for p in builtin.__path__]
    out += [Path(p) for p in os.environ.get("FTDOJO_TASKS", "").split(os.pathsep) if p]
    out += [Path(f).parent for d in domains().values() for f in d.data_files]
    return sorted({p.resolve() for p in out})


def builtin_offline(domain: Domain) -> bool:
    """Whether a domain is one of the generated built-in ones (the offline suite), not a spec."""
    return domain.origin in sys.modules


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
