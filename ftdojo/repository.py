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
from ftdojo.errors import ConfigError, UserError
from ftdojo.tasking import Domain, SourceSpec, TaskSpec
from ftdojo.usertasks import read_task_items


def fingerprint(domain: Domain) -> str:
    """Hash of what defines the domain's bytes: its module's source, or its YAML and data files."""
    if domain.origin in sys.modules:
        sources = [inspect.getsource(sys.modules[m]) for m in (domain.origin, *domain.depends, __name__, datafiles.__name__)]
        return paths.sha256_json([*sources, domain.seed])[:12]
    files = domain.origin.split(os.pathsep) + [t.items_file for t in domain.tasks if t.items_file]
    files += [str(s.build.args[0]) for s in domain.sources if not s.identity and hasattr(s.build, "args")]
    datasets = [t.identity for t in domain.tasks if t.identity] + [s.identity for s in domain.sources if s.identity]
    code = [inspect.getsource(sys.modules[__name__])] if datasets else []  # how dataset rows become splits and sources
    return paths.sha256_json([paths.sha256_file(Path(f)) for f in files] + [domain.seed] + datasets + code)[:12]


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
    built: dict[str, list[Row]] = {}  # user sources read once: a task's dev slice is taken out of them
    for task in domain.tasks:
        if task.items_file:  # a user's items: shuffle by seed, then split
            items = read_task_items(task)
            random.Random(f"{task.id}:{task.seed}:split").shuffle(items)
            test, dev = items[: task.test_size], items[task.test_size : task.test_size + task.dev_size]
        elif task.load_test is not None:  # a dataset's test split, sealed as it is
            test = task.load_test()
            dev = []
            if task.dev_from_items:  # one upstream split: a seeded slice of it is dev, the rest sealed
                order = list(range(len(test)))
                random.Random(f"{task.id}:{task.seed}:dev").shuffle(order)
                if len(test) <= task.dev_size:
                    raise ConfigError(_spec_file(domain, task), "dev.size",
                                      f"task {task.id}: the split has {len(test)} items; dev.size={task.dev_size} leaves none to seal")
                pick = set(order[: task.dev_size])
                dev, test = [i for k, i in enumerate(test) if k in pick], [i for k, i in enumerate(test) if k not in pick]
            reserved.add([i["input"] for i in test])  # before a dev slice is drawn, which must avoid them
            if not task.dev_from_items:
                dev = task.load_dev() if task.load_dev is not None else _dev_slice(domain, task, reserved, built)
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
    test_index = overlap.OverlapIndex([i["input"] for i in reserved.test_items])
    mappers = [t.to_item for t in domain.tasks if t.to_item is not None]
    for src in domain.sources:
        rows = built[src.name] if src.name in built else src.build(random.Random(f"{domain.name}:{src.name}:{domain.seed}"), reserved)
        note = ""
        if src.role in GENERATED_ROLES:
            rows = [r for r in rows if not _maps_into(reserved, src, domain.tasks, r)]
        elif src.role == "other":  # a user's file or a dataset: scanned for the sealed items
            kept = [r for r in rows if not any(test_index.contaminated(t) for t in _texts(r, mappers))]
            if len(kept) < len(rows):
                if src.on_test_overlap == "refuse":
                    raise ConfigError(domain.origin.split(os.pathsep)[0], f"source {src.name}",
                                      f"{len(rows) - len(kept)} of its {len(rows)} rows hold test items of this domain; clean it, "
                                      f"or set on_test_overlap: drop")
                note = (f"\n\n{len(rows) - len(kept)} of this source's {len(rows)} rows held a test item of this domain "
                        f"and were removed when the repository was built.")
            rows = kept
        if not rows:
            raise ConfigError(domain.origin.split(os.pathsep)[0], f"source {src.name}", "no rows left to train on")
        write_rows(raw / f"{src.name}.{src.format}", src.format, rows)
        datafiles.atomic_write_text(raw / f"{src.name}.md", f"# {src.name}\n\n{src.readme}{note}\n")


def _spec_file(domain: Domain, task: TaskSpec) -> str:
    """The spec file defining ``task`` (a user domain's origin lists its spec files in task order)."""
    files = domain.origin.split(os.pathsep)
    k = domain.tasks.index(task)
    return files[k] if k < len(files) else files[0]


def _texts(row: Row, mappers: list) -> list[str]:
    """What a row is scanned for test items in: all its text, and its input as each dataset-backed task
    would render it (a training row of the test split's own dataset then compares like for like)."""
    out = [_text(row)]
    for to_item in mappers:
        try:
            out.append(to_item(row, 0)["input"])
        except (UserError, KeyError, IndexError, TypeError, ValueError):
            pass  # a row of another shape
    return out


def _text(row: Row) -> str:
    """Every string a row holds, nested ones included, one per line (what the test-item scan reads)."""
    out: list[str] = []

    def walk(v: object) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(row)
    return "\n".join(out)


def _dev_slice(domain: Domain, task: TaskSpec, reserved: Reserved, built: dict[str, list[Row]]) -> list[Item]:
    """``task.dev_size`` rows of ``task.dev_from``, drawn by seed, none a near-copy of a test item,
    mapped like the task's items and removed from that source (so no source holds a dev item either)."""
    assert task.dev_from is not None and task.to_item is not None
    src = domain.source(task.dev_from)
    if src.name not in built:
        built[src.name] = src.build(random.Random(f"{domain.name}:{src.name}:{domain.seed}"), reserved)
    rows = built[src.name]
    order = list(range(len(rows)))
    random.Random(f"{task.id}:{task.seed}:dev").shuffle(order)
    taken: list[int] = []
    dev: list[Item] = []
    for i in order:
        if len(dev) == task.dev_size:
            break
        item = task.to_item(rows[i], i + 1)
        if item["input"] not in reserved:
            dev.append({**item, "id": f"{task.id}-dev-{i + 1}"})
            taken.append(i)
    if len(dev) < task.dev_size:
        raise ConfigError(_spec_file(domain, task), "dev.size",
                          f"task {task.id}: source {src.name} gives {len(dev)} dev items, fewer than dev.size={task.dev_size}")
    gone = set(taken)
    built[src.name] = [r for i, r in enumerate(rows) if i not in gone]
    return dev


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
