"""One error hierarchy for ftdojo.

Two families, handled differently:

* ``UserError`` — bad configuration or input. Raised at once, before any
  compute is spent, with a one-line message that names the file, field or
  value and says what is valid. The CLI prints it and exits 2.
* ``RunError`` — something went wrong inside a run (budget exhausted, a
  training crash, bad model output). The run supervisor turns these into
  feedback / a failed iteration in exactly one place; they never abort the
  bench.

Exceptions carry their fields and have no side effects. Every one of them
crosses a Ray actor boundary intact: pickling keeps the type, the message and
the fields, whatever the subclass's ``__init__`` takes (``__reduce__``).
"""

from __future__ import annotations

from typing import Any


def _restore(cls: type[FtdojoError], args: tuple[Any, ...], fields: dict[str, Any]) -> FtdojoError:
    """Rebuild an unpickled error without calling its ``__init__`` (whose arguments are not ``args``)."""
    e = cls.__new__(cls)
    e.args = args
    e.__dict__.update(fields)
    return e


class FtdojoError(Exception):
    """Base of every error ftdojo raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args, dict(self.__dict__))


class UserError(FtdojoError):
    """Bad configuration or input; the message says what to fix."""


class ConfigError(UserError):
    """A YAML file or override does not validate."""

    def __init__(self, path: str, field: str, problem: str) -> None:
        self.path, self.field, self.problem = path, field, problem
        where = f"{path}: {field}" if field else path
        super().__init__(f"{where}: {problem}")


class UnknownName(UserError):
    """A task, agent, suite, profile or source name that does not exist."""

    def __init__(self, what: str, name: str, valid: list[str]) -> None:
        self.what, self.name, self.valid = what, name, valid
        shown = ", ".join(sorted(valid)[:60]) + (" …" if len(valid) > 60 else "")
        super().__init__(f"unknown {what} {name!r}; valid: {shown}")


class ModelNotFound(UserError):
    """A model id or path that cannot be resolved offline."""

    def __init__(self, model: str, hint: str) -> None:
        self.model, self.hint = model, hint
        super().__init__(f"model {model!r} not found: {hint}")


class RunError(FtdojoError):
    """A failure inside a run; becomes feedback, never aborts the bench."""

    reason: str = "run_error"


class BudgetExceeded(RunError):
    """The run asked for more of a budgeted resource than it has left."""

    reason = "budget_exceeded"

    def __init__(self, resource: str, limit: float, used: float) -> None:
        self.resource, self.limit, self.used = resource, limit, used
        super().__init__(f"budget exceeded: {resource} used {used:g} of {limit:g}")


class AccessDenied(RunError):
    """An agent-facing call tried to reach something outside its view."""

    reason = "access_denied"

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"access denied: {what}")


class TrainingFailed(RunError):
    """Training crashed or produced a non-finite loss."""

    reason = "training_failed"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"training failed: {detail}")


class SandboxViolation(RunError):
    """Agent-written code failed or tried something the sandbox forbids.

    ``kind`` is one of network, filesystem, memory, timeout, cpu_time,
    file_size, processes, exception, bad_output.
    """

    reason = "sandbox_violation"

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail
        super().__init__(f"sandbox {kind}: {detail}")


class EvalServerFailed(RunError):
    """The evaluation's inference server did not start, stopped answering or died: the iteration fails."""

    reason = "eval_server_failed"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"evaluation server: {detail}")
