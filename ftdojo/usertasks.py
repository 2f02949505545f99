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
import math
import os
import re
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ftdojo import hub, templating
from ftdojo.hub import HubRef
from ftdojo.config import read_yaml, validate
from ftdojo.datafiles import FORMATS, read_rows
from ftdojo.errors import ConfigError
from ftdojo.tasking import LOWER_IS_BETTER, Domain, Row, SourceSpec, Suggestion, TaskSpec



def _one_group(pattern: str, example: str) -> str:
    """``pattern`` when it is a regex with a capturing group, else a ValueError saying what to write."""
    try:
        if re.compile(pattern).groups < 1:
            raise ValueError(f"needs one capturing group, e.g. '{example}'")
    except re.error as e:
        raise ValueError(f"not a valid regex: {e}") from None
    return pattern


class SourceFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    name: str
    """Catalog name of the source."""
    file: str | None = None
    """Data file (.jsonl, .csv or .parquet), relative to the spec (or ``hub``)."""
    hub: str | None = None
    """A Hugging Face dataset instead of a file: hub id, or a folder laid out like a hub repository."""
    config: str | list[str] | None = None
    """Dataset config (with ``hub``)."""
    data_dir: str | None = None
    """Folder within the dataset repository (with ``hub``)."""
    where: dict[str, str | list[str]] = {}
    """Keep rows whose column equals the value (with ``hub``)."""
    json_columns: list[str] = []
    """Columns holding JSON text, parsed (with ``hub``)."""
    split: str = "train"
    """Dataset split (with ``hub``)."""
    revision: str | None = None
    """Dataset revision (with ``hub``)."""
    data_files: str | list[str] | None = None
    """Data files within the dataset (with ``hub``)."""
    max_rows: int | None = Field(None, ge=1)
    """Stream the split and keep its first N rows (with ``hub``: large sources)."""
    per_file: bool = False
    """Read each file ``data_files`` matches on its own, column ``_file`` naming it (with ``hub``)."""
    on_test_overlap: Literal["drop", "refuse"] = "drop"
    """Rows holding a test item (found at materialisation): dropped and counted on the card, or the
    task refused."""
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

    @model_validator(mode="after")
    def _one_origin(self) -> SourceFile:
        if (self.file is None) == (self.hub is None):
            raise ValueError(f"source {self.name!r}: give exactly one of file (a data file) or hub (a dataset)")
        return self

    def ref(self) -> HubRef:
        assert self.hub is not None
        return HubRef(hub=self.hub, config=self.config, split=self.split, revision=self.revision, data_files=self.data_files,
                      max_rows=self.max_rows, data_dir=self.data_dir, where=self.where, json_columns=self.json_columns,
                      per_file=self.per_file)


class Options(BaseModel):
    """Answer options rendered into an item's input as ``{options}``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    field: str | None = None
    """A column holding the options: a list (labelled A, B, ...) or a mapping (its keys are the labels)."""
    columns: list[str] | None = None
    """Or: columns holding one option each, their names the labels (``[A, B, C, D]``)."""
    template: str = "{label}. {option}"
    """One option's line, over ``label`` and ``option`` (and an option's own fields when it is a mapping)."""
    answer: Literal["as_is", "letter"] = "as_is"
    """as_is: the gold answer is already a label; letter: it is an option's text, scored as that option's label."""

    @model_validator(mode="after")
    def _one(self) -> Options:
        if (self.field is None) == (self.columns is None):
            raise ValueError("give exactly one of field (a column of options) or columns (one option per column)")
        return self


class Derive(BaseModel):
    """A value computed from a column, for templates: a key of a JSON object, or a regex's group."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    column: str
    """The column it comes from."""
    fallback: str | None = None
    """A column used where ``column`` is null or empty (BioProBench ERR: the corrupted step, else the correct one)."""
    key: str | list[str] | None = None
    """If the value is a JSON object (or its text), its first of these keys present ('' when none is);
    any other value stays as it is (ChemCoTBench's answers: ``{"Major Product": ...}`` or a SMILES)."""
    pattern: str | None = None
    """A regex whose first group is taken from the value ('' when it does not match)."""

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        return None if v is None else _one_group(v, "Input Molecule:\\s*(\\S+)")

    def value(self, row: Row) -> Any:
        v = row.get(self.column)
        if (v is None or v == "") and self.fallback is not None:
            v = row.get(self.fallback)
        if self.key is not None:
            obj = v
            if isinstance(v, str) and v.lstrip().startswith("{"):
                try:
                    obj = json.loads(v)
                except ValueError:
                    obj = v
            if isinstance(obj, dict):
                keys = [self.key] if isinstance(self.key, str) else self.key
                v = next((obj[k] for k in keys if obj.get(k) is not None), "")
        if self.pattern is not None:
            m = re.search(self.pattern, "" if v is None else str(v))
            v = m.group(1).strip() if m else ""
        return "" if v is None else v


class Tail(BaseModel):
    """Seal only each group's last rows: RD-Agent's split of a benchmark whose only labelled data is its
    test split (FinanceIQ)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    rows: int = Field(ge=1)
    """At most this many rows per group are sealed."""
    fraction: float = Field(1.0, gt=0, le=1)
    """And at most this share of the group (rounded up): min(ceil(n * fraction), rows)."""
    per: str | None = None
    """Template giving a row's group (``{_file}``: each subject's file); default: one group."""


class DatasetItems(HubRef):
    """Evaluation items from a dataset split, mapped by templates over its columns."""

    input: str = "{input}"
    """Template giving the item's input (``{options}`` inserts the rendered options)."""
    answer: str = "{answer}"
    """Template giving the gold answer (a list renders one element per line)."""
    category: str | None = None
    """Template giving the item's category (default: all)."""
    id: str | None = None
    """Template giving the item's id (default: task id and row number)."""
    options: Options | None = None
    """Answer options (multiple choice)."""
    derive: dict[str, Derive] = {}
    """Values computed from columns, named for the templates (``{source}`` from a regex over ``query``)."""
    tail: Tail | None = None
    """Seal only each group's last rows, in file order (the benchmark's only labelled split); the other
    rows are no items: a source reading the same files keeps them to train on, and the materialisation
    scan removes the sealed ones from it (the card says how many)."""
    split: str = "test"
    """The upstream test split: sealed as it is, never re-split (unless ``tail`` says otherwise)."""


class DevSplit(BaseModel):
    """Where a dataset-backed task's visible dev split comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    split: str | None = None
    """Another split of the items' dataset (its validation split), mapped like the items."""
    from_source: str | None = None
    """Or: a source (the task's training data, same columns as the items) whose seeded slice of
    ``size`` rows becomes dev and is removed from that source."""
    from_items: bool = False
    """Or, for a benchmark that ships one split and no labelled training data: a seeded slice of
    ``size`` items of the test split becomes dev, and only the rest is sealed (the card says so)."""
    size: int | None = Field(None, ge=1)
    """Dev items (``from_source``: required; ``split``: a cap, the split's first rows)."""
    data_files: str | list[str] | None = None
    """With ``split``: the dev split's files, where they are not the items' (FinanceIQ's ``data/dev/*.csv``)."""
    input: str | None = None
    """Template giving a dev item's input where the dev rows' columns differ from the items' (a source)."""
    answer: str | None = None
    """Template giving a dev item's gold answer, likewise."""
    category: str | None = None
    """Template giving a dev item's category, likewise."""

    @model_validator(mode="after")
    def _one(self) -> DevSplit:
        if sum([self.split is not None, self.from_source is not None, self.from_items]) != 1:
            raise ValueError("give exactly one of split (an upstream validation split), from_source (a slice of a source) "
                             "or from_items: true (a slice of the test split)")
        if self.data_files is not None and self.split is None:
            raise ValueError("data_files goes with split (the files of an upstream dev split)")
        if self.split is None and self.size is None:
            raise ValueError("from_source and from_items need size (how many rows become dev)")
        return self


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
    metric: Literal["exact", "numeric", "choice", "f1", "math", "rouge_l", "set_f1", "prior_art", "gold_silver", "macro_f1", "kendall_tau", "smiles", "smiles_valid", "tanimoto", "abs_error",
                    "mol_edit", "mol_opt", "chart"] = "exact"
    """How extracted answers are compared with gold ones (``ftdojo.scoring``)."""
    tolerance: float = Field(1e-6, ge=0)
    """Relative tolerance for the numeric metric."""
    items: str | DatasetItems
    """JSONL of evaluation items with input, answer and optional category (split into dev and test
    by ``seed``), or a dataset's test split (``hub``, ``config``, ``split``, templates), sealed as it is."""
    dev: DevSplit | None = None
    """A dataset-backed task's dev split: an upstream validation split, or a slice of a source."""
    dev_size: int | None = Field(None, ge=1)
    """Items in the visible dev split (a file of items)."""
    test_size: int | None = Field(None, ge=1)
    """Items in the sealed test split (a file of items)."""
    max_new_tokens: int = Field(64, ge=1, le=32768)
    """Generation cap at evaluation (reasoning tasks: thousands); the trainer's max length follows it."""
    temperature: float = Field(0.0, ge=0, le=2)
    """Sampling temperature at evaluation (0: greedy)."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling mass."""
    samples: int = Field(1, ge=1, le=64)
    """Generations per item (avg@n, or pass@k with ``pass_k``)."""
    pass_k: int = Field(1, ge=1)
    """k of pass@k over ``samples`` (1: the mean over samples, avg@n)."""
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
    def _splits(self) -> TaskFile:
        if isinstance(self.items, str):
            if self.dev_size is None or self.test_size is None:
                raise ValueError("a file of items needs dev_size and test_size (it is split by seed)")
            if self.dev is not None:
                raise ValueError("dev is for dataset-backed items; a file of items is split by dev_size and test_size")
        else:
            if self.dev is None:
                raise ValueError("dataset-backed items need dev: {split: validation}, {from_source: NAME, size: N} "
                                 "or {from_items: true, size: N}")
            if self.test_size is not None or self.dev_size is not None:
                raise ValueError("a dataset's test split is sealed as it is: drop test_size and dev_size (dev.size caps dev)")
            if self.dev.from_source is not None and self.dev.from_source not in {s.name for s in self.sources}:
                raise ValueError(f"dev.from_source {self.dev.from_source!r} is not one of this spec's sources")
        if self.pass_k > self.samples:
            raise ValueError(f"pass_k={self.pass_k} needs at least as many samples (samples={self.samples})")
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("several samples need a temperature > 0 (greedy decoding gives the same answer each time)")
        return self

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
        if templating.fields(v) != {"answer"}:
            raise ValueError("must name {answer} and nothing else, e.g. 'Answer: {answer}'")
        return v

    @field_validator("answer_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return _one_group(v, "Answer:\\s*(.+)")


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
    """Parse and check a task spec; every problem names the file and field. A file of items or a
    data file is read here; a dataset is only referenced (read at materialisation), so a listing
    needs no network."""
    where = str(path)
    spec: TaskFile = validate(TaskFile, read_yaml(path), where)  # type: ignore[arg-type]
    base = path.parent
    sources = [_source(spec, k, s, base, where) for k, s in enumerate(spec.sources)]
    common = dict(
        id=spec.id, domain=spec.domain or spec.id, description=spec.description, instruction=spec.instruction,
        answer_format=spec.answer_format, answer_template=spec.answer_template, answer_pattern=spec.answer_pattern,
        metric=spec.metric, tolerance=spec.tolerance, max_new_tokens=spec.max_new_tokens, seed=spec.seed,
        temperature=spec.temperature, top_p=spec.top_p, samples=spec.samples, pass_k=spec.pass_k,
        direction="min" if spec.metric in LOWER_IS_BETTER else "max",
    )
    data_files = [str(path.resolve()), *(str(s.build.args[0]) for s in sources if isinstance(s.build.args[0], Path))]  # type: ignore[attr-defined]
    data_files += [loc for s in spec.sources if s.hub and Path(loc := hub.location(s.ref(), base)).exists()]
    if isinstance(spec.items, str):
        items_path = _existing(base, spec.items, where, "items")
        categories = sorted({i["category"] for i in _items(spec, items_path, where)})
        task = TaskSpec(**common, categories=tuple(categories), items_file=str(items_path), dev_size=spec.dev_size,  # type: ignore[arg-type]
                        test_size=spec.test_size, origin=f"file {items_path.name}")
        data_files.append(str(items_path))
    else:
        items, dev = spec.items, spec.dev
        assert dev is not None
        to_item = partial(_to_item, items, spec.id, where)
        overrides = {k: v for k in ("input", "answer", "category") if (v := getattr(dev, k)) is not None}
        dev_item = partial(_to_item, items.model_copy(update=overrides), spec.id, where) if overrides else to_item
        load_dev, dev_ref = None, None
        if dev.split is not None:
            dev_ref = items.model_copy(update={"split": dev.split, "tail": None, **({"data_files": dev.data_files} if dev.data_files else {})})
            split_item = partial(_to_item, items.model_copy(update=overrides), f"{spec.id}-dev", where)  # ids apart from the test split's
            load_dev = partial(_dataset_items, dev_ref, base, where, "dev.split", split_item, dev.size)
        loc = hub.location(items, base)
        if Path(loc).exists():
            data_files.append(loc)
        task = TaskSpec(
            **common, categories=(), dev_size=dev.size or 0, test_size=0,  # type: ignore[arg-type]
            load_test=partial(_dataset_items, items, base, where, "items", to_item, None), load_dev=load_dev,
            dev_from=dev.from_source, dev_from_items=dev.from_items, to_item=dev_item, origin=f"dataset {hub.describe(items)}",
            sealed_rule=(f"the last min(ceil(n * {items.tail.fraction:g}), {items.tail.rows}) rows of each "
                         f"{items.tail.per or 'split'} of the upstream test split") if items.tail else "",
            identity=hub.identity(items, base) + (hub.identity(dev_ref, base) if dev_ref is not None else ""),
        )
    return Domain(
        name=task.domain, description=spec.domain_description or spec.description, sources=tuple(sources), tasks=(task,),
        origin=str(path), data_files=tuple(data_files),
    )


def _source(spec: TaskFile, k: int, s: SourceFile, base: Path, where: str) -> SourceSpec:
    suggestion = {spec.id: Suggestion(s.suggested_prompt, s.suggested_answer, s.suggested_rationale)}
    readme = s.readme or f"User source {s.name}."
    if s.hub is not None:  # columns are checked against the templates once the rows are read
        ref = s.ref()
        return SourceSpec(name=s.name, format="jsonl", readme=readme, fields=dict(s.fields), per_task=suggestion,
                          build=partial(_dataset_rows, ref, base, where, f"sources.{k}", s), identity=hub.identity(ref, base),
                          on_test_overlap=s.on_test_overlap, origin=f"dataset {hub.describe(ref)}")
    assert s.file is not None
    f = _existing(base, s.file, where, f"sources.{k}.file")
    fmt = FORMATS.get(f.suffix)
    if fmt is None:
        raise ConfigError(where, f"sources.{k}.file", f"unknown format {f.suffix!r}; use one of {', '.join(FORMATS)}")
    rows = _file_rows(f, fmt, None, None)
    if not rows:
        raise ConfigError(where, f"sources.{k}.file", f"{f} has no data rows; give a file with a header and at least one row")
    columns = _check_templates(s, rows, where, f"sources.{k}", f.name)
    return SourceSpec(
        name=s.name, format=fmt, readme=readme, fields=s.fields or {c: c for c in columns},  # type: ignore[arg-type]
        build=partial(_file_rows, f, fmt), per_task=suggestion, on_test_overlap=s.on_test_overlap, origin=f"file {f.name}",
    )


def _check_templates(s: SourceFile, rows: list[Row], where: str, field: str, what: str) -> list[str]:
    """The source's columns; a suggested template naming another column is a ConfigError."""
    columns = sorted({c for r in rows for c in r})
    for t in ("suggested_prompt", "suggested_answer", "suggested_rationale"):
        template = getattr(s, t)
        try:
            unknown = sorted(templating.fields(template) - set(columns)) if template else []
        except ValueError as e:
            raise ConfigError(where, f"{field}.{t}", str(e)) from None
        if unknown:
            raise ConfigError(where, f"{field}.{t}", f"names column {unknown[0]!r}, which {what} lacks; columns: {', '.join(columns)}")
    return columns


def _dataset_rows(ref: HubRef, base: Path, where: str, field: str, s: SourceFile, rng: Any, reserved: Any) -> list[Row]:
    rows = hub.rows(ref, base, where, field)
    if not rows:
        raise ConfigError(where, field, f"dataset {hub.describe(ref)} has no rows")
    _check_templates(s, rows, where, field, f"dataset {ref.hub}")
    return rows


def _dataset_items(ref: DatasetItems, base: Path, where: str, field: str, to_item: Any, cap: int | None) -> list[dict[str, str]]:
    rows = hub.rows(ref, base, where, field)
    if ref.tail is not None:
        rows = _tail(rows, ref.tail, where)
    if cap is not None:
        rows = rows[:cap]
    if not rows:
        raise ConfigError(where, field, f"dataset {hub.describe(ref)} has no rows")
    return [to_item(r, n) for n, r in enumerate(rows, 1)]


def _tail(rows: list[Row], tail: Tail, where: str) -> list[Row]:
    """Each group's last min(ceil(n * fraction), rows) rows, groups and rows in their order."""
    groups: dict[str, list[Row]] = {}
    for n, r in enumerate(rows, 1):
        try:
            key = templating.render(tail.per, r) if tail.per else ""
        except KeyError as e:
            raise ConfigError(where, "items.tail.per", f"row {n}: names column {e}, which the dataset lacks; columns: {', '.join(sorted(r))}") from None
        groups.setdefault(key, []).append(r)
    out: list[Row] = []
    for g in groups.values():
        k = min(math.ceil(len(g) * tail.fraction), tail.rows)
        out += g[len(g) - k :]
    return out


def _to_item(spec: DatasetItems, task_id: str, where: str, row: Row, n: int) -> dict[str, str]:
    """One dataset row as an item: the templates over its columns (and derived values), options
    rendered into ``{options}``."""
    ctx: dict[str, Any] = dict(row)
    ctx.update({name: d.value(row) for name, d in spec.derive.items()})
    labels: list[str] = []
    texts: list[str] = []
    if spec.options is not None:
        o = spec.options
        if o.columns is not None:
            pairs = [(c, row.get(c)) for c in o.columns]
        else:
            value = row.get(o.field or "")
            if isinstance(value, dict):
                pairs = list(value.items())
            elif isinstance(value, list):
                pairs = [(chr(ord("A") + i), v) for i, v in enumerate(value)]
            else:
                raise ConfigError(where, "items.options.field", f"row {n}: column {o.field!r} holds {type(value).__name__}, not a list or mapping of options")
        lines = []
        for label, option in pairs:
            if option is None:  # a mapping stored as a struct: the keys other rows have
                continue
            fields = {**option} if isinstance(option, dict) else {}
            lines.append(templating.render(o.template, {**fields, "label": label, "option": option}))
            labels.append(str(label))
            texts.append(str(option))
        ctx["options"] = "\n".join(lines)
    try:
        item = {
            "id": templating.render(spec.id, ctx) if spec.id and templating.fields(spec.id) <= set(ctx) else f"{task_id}-{n}",
            "input": templating.render(spec.input, ctx),
            "answer": templating.render(spec.answer, ctx).strip(),
            "category": templating.render(spec.category, ctx) if spec.category else "all",
        }
    except KeyError as e:
        raise ConfigError(where, "items", f"row {n}: a template names column {e}, which the dataset lacks; columns: {', '.join(sorted(row))}") from None
    if spec.options is not None and spec.options.answer == "letter":
        gold = item["answer"].strip().lower()
        match = [lab for lab, t in zip(labels, texts) if t.strip().lower() == gold]
        if not match:
            raise ConfigError(where, "items.options.answer", f"row {n}: the answer {item['answer'][:60]!r} is none of the options")
        item["answer"] = match[0]
    if not item["input"].strip() or not item["answer"]:
        raise ConfigError(where, "items", f"row {n}: empty {'input' if not item['input'].strip() else 'answer'}")
    return item


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
