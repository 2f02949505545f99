"""Task and domain specs: what a task is, not where it comes from.

A *domain* owns a shared raw-data repository (its sources) and the tasks that
draw on it. Built-in domains are modules in the top-level ``tasks`` package,
each exposing a ``Domain``; users write YAML specs (``ftdojo.usertasks``).
``ftdojo.registry`` discovers both. Generators are deterministic functions of
a ``random.Random``: same seed, same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Literal

from ftdojo.datafiles import Item, Row
from ftdojo.errors import UnknownName
from ftdojo.paths import sha256_json

__all__ = ["Domain", "Item", "Row", "SourceSpec", "Suggestion", "TaskSpec"]
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
    on_test_overlap: Literal["drop", "refuse"] = "drop"
    """A user's source found holding test items at materialisation: drop those rows, or refuse."""
    identity: str = ""
    """What defines the rows beyond the spec (a dataset's reference and files); empty for a file."""
    origin: str = ""
    """Where the rows come from, for listings: a generator, a file, or a dataset."""

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


LOWER_IS_BETTER = frozenset({"abs_error"})
"""Metrics whose tasks minimise (``TaskSpec.direction = "min"``); here rather than in ``ftdojo.scoring`` so
that a task spec needs no scoring code (whose chart metric reaches the sandbox, and through it the registry)."""


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
    """Whether a higher score is better (``max``) or a lower one (``min``: ``LOWER_IS_BETTER`` metrics)."""
    max_new_tokens: int = 64
    seed: int = 0
    temperature: float = 0.0
    """Sampling temperature at evaluation (0: greedy)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    samples: int = 1
    """Generations per item; an item scores their mean (avg@n), or pass@k with ``pass_k``."""
    pass_k: int = 1
    """k of pass@k over ``samples`` generations (1: avg@n)."""
    load_test: Callable[[], list[Item]] | None = None
    """The upstream test split, sealed as it is (a dataset-backed task)."""
    load_dev: Callable[[], list[Item]] | None = None
    """The upstream validation split as dev (a dataset-backed task)."""
    dev_from: str | None = None
    """A source whose seeded slice of ``dev_size`` rows becomes dev, removed from that source."""
    dev_from_items: bool = False
    """A benchmark with one split: a seeded slice of ``dev_size`` of its items is dev, the rest sealed."""
    to_item: Callable[[Row, int], Item] | None = None
    """Maps a row of the task's dataset to an item (for ``dev_from``)."""
    origin: str = ""
    """Where the items come from, for listings: a generator, a file, or a dataset (id, config, split, revision)."""
    identity: str = ""
    """What defines the items' bytes beyond this spec (a dataset's reference and files)."""
    sealed_rule: str = ""
    """How the sealed split is drawn from the upstream test split when it is not the split whole (listings)."""

    def render_answer(self, value: str) -> str:
        return self.answer_template.format(answer=value)

    def spec_hash(self) -> str:
        d = {k: v for k, v in self.__dict__.items() if not callable(v) and v is not None or k == "items_file"}
        d.pop("generate", None)
        for k in ("temperature", "top_p", "samples", "pass_k", "origin", "identity", "dev_from_items", "sealed_rule"):  # newer fields: absent at their default,
            if d.get(k) == TaskSpec.__dataclass_fields__[k].default:                # so older tasks keep their hashes
                d.pop(k)
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
    """A check of (input, answer) that recipes may filter with (``verify``): True / False, or None when it
    cannot tell. Only for a check a real task offers its practitioners (a format validator, a test harness);
    no built-in domain sets one."""
    oracle: Callable[[str, str], bool | None] | None = None
    """The generator's own answer check (recomputes the answer from the input): the suite's tests use it,
    no card announces it and no recipe can reach it; agents check what a practitioner could."""
    depends: tuple[str, ...] = ()
    """Further modules whose source defines the domain's bytes (shared helpers)."""
    data_files: tuple[str, ...] = ()
    """Files outside the data home that hold the domain's tasks or sources (a user spec, its items and
    sources): the sandbox hides the folders they sit in."""

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise UnknownName(f"source of domain {self.name}", name, [s.name for s in self.sources])
