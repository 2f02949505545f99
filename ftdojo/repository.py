"""The shared raw-data repository and the task splits, materialised on disk.

Layout under ``FTDOJO_HOME``::

    data/<domain>/<fingerprint>/raw/<source>.<fmt>   agent-readable sources
    data/<domain>/<fingerprint>/raw/<source>.md      dataset cards
    data/<domain>/<fingerprint>/dev/<task>.jsonl     visible dev splits
    sealed/<domain>/<fingerprint>/<task>.jsonl       sealed test splits

The fingerprint hashes the domain module's source, this one's and the file writers', so a generator change
yields a new folder instead of silently mixing versions. Test items are drawn
first, dev items are disjoint from them, and every source skips the inputs of
all dev and test items and their near-copies (the referee's n-gram rule), also
once a row is mapped as its card suggests; a
leak-trap source (``role="leak"``) is the one deliberate exception: it is
built from the test items so that the referee's overlap check has something
to catch. Files are written atomically under a lock, so
concurrent runs on one machine materialise once.
"""

from __future__ import annotations

import inspect
import os
import random
import sys
from pathlib import Path

from filelock import FileLock

from ftdojo import datafiles, overlap, paths
from ftdojo.datafiles import Item, Row, jsonl, write_rows
from ftdojo.tasking import Domain, SourceSpec, TaskSpec
from ftdojo.usertasks import read_task_items


def fingerprint(domain: Domain) -> str:
    """Hash of what defines the domain's bytes: its module's source, or its YAML and data files."""
    if domain.origin in sys.modules:
        sources = [inspect.getsource(sys.modules[m]) for m in (domain.origin, *domain.depends, __name__, datafiles.__name__)]
        return paths.sha256_json([*sources, domain.seed])[:12]
    files = domain.origin.split(os.pathsep) + [t.items_file for t in domain.tasks if t.items_file]
    files += [str(s.build.args[0]) for s in domain.sources if hasattr(s.build, "args")]
    return paths.sha256_json([paths.sha256_file(Path(f)) for f in files] + [domain.seed])[:12]


def raw_dir(domain: Domain) -> Path:
    return paths.data_dir() / domain.name / fingerprint(domain) / "raw"


def dev_path(task: TaskSpec, domain: Domain) -> Path:
    return paths.data_dir() / domain.name / fingerprint(domain) / "dev" / f"{task.id}.jsonl"


def sealed_path(task: TaskSpec, domain: Domain) -> Path:
    return paths.sealed_dir() / domain.name / fingerprint(domain) / f"{task.id}.jsonl"


class Reserved:
    """Inputs no other split or source may contain, by the referee's own overlap rule."""

    def __init__(self) -> None:
        self.inputs: list[str] = []
        self.test_items: list[Item] = []
        """The domain's sealed test items (with ``task``): only a leak-trap builder reads them."""
        self._index = overlap.OverlapIndex([])

    def add(self, inputs: list[str]) -> None:
        self.inputs += inputs
        self._index = overlap.OverlapIndex(self.inputs)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self._index.contaminated(text)


def draw_items(task: TaskSpec, n: int, rng: random.Random, exclude: Reserved) -> list[Item]:
    """n distinct items, none a near-copy of an excluded input."""
    items: list[Item] = []
    seen: set[str] = set()
    tries = 0
    assert task.generate is not None, task.id
    while len(items) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise RuntimeError(f"task {task.id}: generator cannot produce {n} distinct items")
        item = task.generate(rng)
        if item["input"] in seen or item["input"] in exclude:
            continue
        seen.add(item["input"])
        items.append(item)
    return items


def materialize(domain: Domain) -> Path:
    """Write the domain's sources and splits once; return the raw folder."""
    root = paths.data_dir() / domain.name / fingerprint(domain)
    done = root / ".complete"
    if done.exists():
        return root / "raw"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if not done.exists():
            _write_all(domain, root)
            done.write_text("ok\n")
    return root / "raw"


def _write_all(domain: Domain, root: Path) -> None:
    reserved = Reserved()
    for task in domain.tasks:
        if task.items_file:  # a user's items: shuffle by seed, then split
            items = read_task_items(task)
            random.Random(f"{task.id}:{task.seed}:split").shuffle(items)
            test, dev = items[: task.test_size], items[task.test_size : task.test_size + task.dev_size]
        else:
            test = draw_items(task, task.test_size, random.Random(f"{task.id}:{task.seed}:test"), reserved)
            reserved.add([i["input"] for i in test])
            dev = draw_items(task, task.dev_size, random.Random(f"{task.id}:{task.seed}:dev"), reserved)
        reserved.add([i["input"] for i in test + dev])
        reserved.test_items += [{**i, "task": task.id} for i in test]
        sealed = sealed_path(task, domain)
        sealed.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(sealed.parent, 0o700)
        datafiles.atomic_write_text(sealed, jsonl(test))
        os.chmod(sealed, 0o400)
        datafiles.atomic_write_text(dev_path(task, domain), jsonl(dev))
    raw = root / "raw"
    for src in domain.sources:
        rows = src.build(random.Random(f"{domain.name}:{src.name}:{domain.seed}"), reserved)
        if src.role in GENERATED_ROLES:
            rows = [r for r in rows if not _maps_into(reserved, src, domain.tasks, r)]
        write_rows(raw / f"{src.name}.{src.format}", src.format, rows)
        datafiles.atomic_write_text(raw / f"{src.name}.md", f"# {src.name}\n\n{src.readme}\n")


GENERATED_ROLES = ("clean", "traces", "noisy", "irrelevant")
"""Roles of the built-in generated sources that must hold no held-out question (not the leak trap; not a
user's own files, whose leaks the referee's overlap check is there to flag)."""


def _maps_into(reserved: Reserved, src: SourceSpec, tasks: tuple[TaskSpec, ...], row: Row) -> bool:
    """Whether the mapping the source's card suggests for some task turns ``row`` into a near-copy of a
    dev or test input: a row drawn for one task can be another task's held-out question once mapped."""
    for task in tasks:
        prompt = src.suggestion(task.id).prompt
        if prompt and prompt.format(**row) in reserved:
            return True
    return False
