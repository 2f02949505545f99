"""Tasks from a user's own files: a small YAML spec next to JSONL/CSV/Parquet data.

A spec file defines one task (and its own domain, unless ``domain`` names a
shared one). ``items`` is a JSONL file of evaluation items — ``input``,
``answer`` and optionally ``category`` — that the dojo splits, by ``seed``,
into a visible dev split and a sealed test split. ``sources`` are the raw
files an agent may train on. Paths are relative to the YAML file.

Example (``my-task.yaml``)::

    id: capitals
    description: Name the capital city of a country.
    instruction: "Reply as 'Answer: <city>'."
    answer_format: "A line 'Answer: <city>'."
    answer_template: "Answer: {answer}"
    answer_pattern: "Answer:\\\\s*(.+)"
    metric: exact
    items: capitals_eval.jsonl
    dev_size: 40
    test_size: 80
    sources:
      - name: capitals_train
        file: capitals_train.jsonl
        readme: Countries and their capitals.
        suggested_prompt: "What is the capital of {country}?"
        suggested_answer: "{capital}"

Put it in ``tasks/`` or in a folder on ``FTDOJO_TASKS`` and it appears in
``ftdojo tasks ls`` and runs in the bench with no code change.
"""

from __future__ import annotations

import json
import os
import re
import string
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ftdojo.config import read_yaml, validate
from ftdojo.datafiles import FORMATS, read_rows
from ftdojo.errors import ConfigError
from ftdojo.tasking import Domain, Row, SourceSpec, Suggestion, TaskSpec



class SourceFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    name: str
    """Catalog name of the source."""
    file: str
    """Data file (.jsonl, .csv or .parquet), relative to the spec."""
    readme: str = ""
    """Dataset card shown to agents."""
    fields: dict[str, str] = {}
    """Column descriptions (default: column names from the first row)."""
    suggested_prompt: str | None = None
    """Template over the columns giving a task input."""
    suggested_answer: str | None = None
    """Template giving the answer."""
    suggested_rationale: str | None = None
    """Template giving reasoning before the answer."""


class TaskFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    id: str
    """Task id (letters, digits, '-')."""
    domain: str | None = None
    """Domain name (default: the task id); spec files naming one domain share their sources."""
    domain_description: str | None = None
    """One line about the domain (default: the task's description)."""
    description: str
    """What the model must do."""
    instruction: str
    """Instruction appended to every input."""
    answer_format: str
    """Required output format, in words."""
    answer_template: str = "{answer}"
    """Renders a gold answer in the required format."""
    answer_pattern: str = r"(?s)(.+)"
    """Regex whose first group is the extracted answer."""
    metric: Literal["exact", "numeric", "choice", "f1"] = "exact"
    """How extracted answers are compared with gold ones."""
    tolerance: float = Field(1e-6, ge=0)
    """Relative tolerance for the numeric metric."""
    items: str
    """JSONL of evaluation items with input, answer and optional category."""
    dev_size: int = Field(ge=1)
    """Items in the visible dev split."""
    test_size: int = Field(ge=1)
    """Items in the sealed test split."""
    max_new_tokens: int = Field(64, ge=1)
    """Generation cap at evaluation."""
    seed: int = 0
    """Seed of the dev/test split."""
    sources: list[SourceFile] = []
    """Raw sources agents may train on."""

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", v):
            raise ValueError("use lower-case letters, digits and '-', e.g. my-task")
        return v

    @model_validator(mode="after")
    def _unique_sources(self) -> TaskFile:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source name {dup[0]!r} is listed twice; give each source its own name")
        return self

    @field_validator("answer_template")
    @classmethod
    def _answer_template(cls, v: str) -> str:
        if _fields(v) != {"answer"}:
            raise ValueError("must name {answer} and nothing else, e.g. 'Answer: {answer}'")
        return v

    @field_validator("answer_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            if re.compile(v).groups < 1:
                raise ValueError("needs one capturing group, e.g. 'Answer:\\s*(.+)'")
        except re.error as e:
            raise ValueError(f"not a valid regex: {e}") from None
        return v


def _fields(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"not a format template ({e})") from None


def _file_rows(path: Path, fmt: str, rng: Any, reserved: Any) -> list[Row]:
    return read_rows(path, fmt)


def read_task_items(task: TaskSpec) -> list[dict[str, str]]:
    """A file-backed task's items, normalised to id / input / answer / category."""
    assert task.items_file is not None
    return _rows_of(task.id, Path(task.items_file))


def _items(spec: TaskFile, path: Path, where: str) -> list[dict[str, str]]:
    items = _rows_of(spec.id, path)
    if len(items) < spec.dev_size + spec.test_size:
        raise ConfigError(where, "dev_size", f"dev_size + test_size = {spec.dev_size + spec.test_size} but {path.name} has {len(items)} items")
    return items


def _rows_of(task_id: str, path: Path) -> list[dict[str, str]]:
    items = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(str(path), f"line {n}", f"not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(str(path), f"line {n}", "not a JSON object; each item is {\"input\": ..., \"answer\": ...}")
            missing = {"input", "answer"} - set(row)
            if missing:
                raise ConfigError(str(path), f"line {n}", f"missing {sorted(missing)}; each item needs input and answer")
            for k in ("input", "answer"):
                if not isinstance(row[k], (str, int, float)) or isinstance(row[k], bool) or str(row[k]).strip() == "":
                    raise ConfigError(str(path), f"line {n}: {k}", f"must be a non-empty string or number (got {json.dumps(row[k])})")
            items.append({"id": str(row.get("id", f"{task_id}-{n}")), "input": str(row["input"]),
                          "answer": str(row["answer"]), "category": str(row.get("category", "all"))})
    return items


def _existing(base: Path, rel: str, where: str, field: str) -> Path:
    p = (base / rel).resolve()
    if not p.is_file():
        raise ConfigError(where, field, f"file {p} not found (paths are relative to the spec)")
    return p


def load(path: Path) -> Domain:
    """Parse and check a task spec; every problem names the file and field."""
    where = str(path)
    spec: TaskFile = validate(TaskFile, read_yaml(path), where)  # type: ignore[arg-type]
    base = path.parent
    items_path = _existing(base, spec.items, where, "items")
    categories = sorted({i["category"] for i in _items(spec, items_path, where)})
    sources = []
    for k, s in enumerate(spec.sources):
        f = _existing(base, s.file, where, f"sources.{k}.file")
        fmt = FORMATS.get(f.suffix)
        if fmt is None:
            raise ConfigError(where, f"sources.{k}.file", f"unknown format {f.suffix!r}; use one of {', '.join(FORMATS)}")
        rows = _file_rows(f, fmt, None, None)
        if not rows:
            raise ConfigError(where, f"sources.{k}.file", f"{f} has no data rows; give a file with a header and at least one row")
        columns = sorted({c for r in rows for c in r})
        for t in ("suggested_prompt", "suggested_answer", "suggested_rationale"):
            template = getattr(s, t)
            try:
                unknown = sorted(_fields(template) - set(columns)) if template else []
            except ValueError as e:
                raise ConfigError(where, f"sources.{k}.{t}", str(e)) from None
            if unknown:
                raise ConfigError(where, f"sources.{k}.{t}", f"names column {unknown[0]!r}, which {f.name} lacks; columns: {', '.join(columns)}")
        fields = s.fields or {c: c for c in columns}
        sources.append(
            SourceSpec(
                name=s.name, format=fmt, readme=s.readme or f"User source {s.name}.", fields=fields,  # type: ignore[arg-type]
                build=partial(_file_rows, f, fmt),
                per_task={spec.id: Suggestion(s.suggested_prompt, s.suggested_answer, s.suggested_rationale)},
            )
        )
    task = TaskSpec(
        id=spec.id, domain=spec.domain or spec.id, description=spec.description, instruction=spec.instruction,
        answer_format=spec.answer_format, answer_template=spec.answer_template, answer_pattern=spec.answer_pattern,
        metric=spec.metric, categories=tuple(categories), items_file=str(items_path), dev_size=spec.dev_size,
        test_size=spec.test_size, tolerance=spec.tolerance, max_new_tokens=spec.max_new_tokens, seed=spec.seed,
    )
    return Domain(
        name=task.domain, description=spec.domain_description or spec.description, sources=tuple(sources), tasks=(task,),
        origin=str(path), data_files=(str(path.resolve()), str(items_path), *(str(s.build.args[0]) for s in sources)),  # type: ignore[attr-defined]
    )


def merge(a: Domain, b: Domain) -> Domain:
    """Two spec files naming one ``domain``: its tasks share every source either lists. A source
    listed by both must be the same file; each task keeps the mapping its own spec suggests."""
    by_name = {s.name: s for s in a.sources}
    for s in b.sources:
        mine = by_name.get(s.name)
        if mine is None:
            by_name[s.name] = s
            continue
        if mine.build.args[0] != s.build.args[0]:  # type: ignore[attr-defined]
            raise ConfigError(b.origin, "sources", f"source {s.name!r} of domain {a.name!r} is already "
                              f"{mine.build.args[0]} in {a.origin.split(os.pathsep)[0]}; use another name or the same file")  # type: ignore[attr-defined]
        by_name[s.name] = replace(mine, per_task={**(mine.per_task or {}), **(s.per_task or {})})
    clash = {t.id for t in a.tasks} & {t.id for t in b.tasks}
    if clash:
        raise ConfigError(b.origin, "id", f"task {sorted(clash)[0]!r} is already defined in {a.origin.split(os.pathsep)[0]}")
    return replace(a, sources=tuple(by_name.values()), tasks=a.tasks + b.tasks, origin=a.origin + os.pathsep + b.origin,
                   data_files=a.data_files + b.data_files)
