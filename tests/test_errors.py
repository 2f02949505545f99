"""Every ftdojo error crosses a process boundary intact: pickle keeps its type, message and fields."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import pytest

import actors
import ftdojo
from ftdojo.errors import FtdojoError


def _all_error_types() -> list[type[FtdojoError]]:
    for pkg in (ftdojo, actors):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if not m.name.endswith(("__main__", "sandbox_boot")):
                importlib.import_module(m.name)
    found, todo = [], [FtdojoError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(set(found), key=lambda c: c.__qualname__)


def _example(cls: type[FtdojoError]) -> FtdojoError:
    """An instance built from the constructor's own signature (strings, numbers, lists by annotation)."""
    from ftdojo.hub import HubRef

    values = {"str": "x", "float": 1.5, "int": 3, "list[str]": ["a", "b"], "HubRef": HubRef(hub="org/name")}
    args = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            args.append("message")
            break
        args.append(values.get(str(p.annotation).replace("'", ""), "x"))
    return cls(*args)


TYPES = _all_error_types()


def test_the_walk_finds_the_errors_that_broke_under_ray() -> None:
    names = {c.__name__ for c in TYPES}
    assert {"SandboxViolation", "BudgetExceeded", "ConfigError", "UnknownName", "RecipeError", "BackboneError", "UnusableWorkspace"} <= names


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_every_error_round_trips_through_pickle(cls) -> None:
    e = _example(cls)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls and str(back) == str(e) and back.args == e.args
    assert back.__dict__ == e.__dict__
