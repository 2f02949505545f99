"""Rows from Hugging Face datasets: a hub id (with config, split and revision), a local folder laid out
like a hub repository, or local files, all read through ``datasets.load_dataset``.

Where a reference points:

* a path (absolute, or relative to the spec that names it) that exists: that folder or file;
* else ``$FTDOJO_HUB_MIRROR/<org>/<name>`` when that folder exists (an offline mirror: the hub
  repository's files as they are, e.g. from ``huggingface-cli download --repo-type dataset``);
* else the hub id itself, which ``datasets`` serves from its local cache when offline
  (``HF_DATASETS_OFFLINE=1``) and downloads otherwise.

A dataset that cannot be had is one ``DatasetUnavailable`` line naming the id and how to fetch it;
a config or split the dataset lacks is a ``ConfigError`` naming the spec, the field and what is valid.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ftdojo.errors import ConfigError, UserError


class HubRef(BaseModel):
    """Where rows come from: a dataset (hub id or folder), its config, split and revision."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    hub: str
    """Hub dataset id (``org/name``), or a folder laid out like a hub repository, or a data file
    (relative paths are relative to the spec)."""
    config: str | list[str] | None = None
    """Dataset config (subset) name; a list reads each and concatenates them (column ``_config`` says which)."""
    data_dir: str | None = None
    """Folder within the repository holding the split files (PANORAMA's ``PAR4PC``)."""
    split: str = "train"
    """Split name."""
    revision: str | None = None
    """Hub revision (a commit, tag or branch); pin it for results that can be reproduced."""
    data_files: str | list[str] | None = None
    """Data files within the dataset, for a repository without configs."""
    max_rows: int | None = Field(None, ge=1)
    """Stream the split and keep its first N rows (large sources)."""
    where: dict[str, str | list[str]] = Field(default_factory=dict)
    """Keep rows whose column equals the value (or one of the values)."""
    json_columns: list[str] = Field(default_factory=list)
    """Columns holding JSON text, parsed into values (ChemCoTBench's ``meta``)."""
    per_file: bool = False
    """Read each file ``data_files`` matches on its own, in name order, column ``_file`` naming it (its
    stem): a repository of one CSV per subject (FinanceIQ's ``data/test/<subject>.csv``)."""

    @model_validator(mode="after")
    def _per_file_needs_files(self) -> HubRef:
        if self.per_file and self.data_files is None:
            raise ValueError("per_file reads the files data_files matches; give data_files (e.g. 'data/test/*.csv')")
        return self


class DatasetUnavailable(UserError):
    """A dataset that is neither local, nor mirrored, nor in the hub cache (offline)."""

    def __init__(self, ref: HubRef, why: str) -> None:
        self.ref, self.why = ref, why
        cfg = f", config {ref.config!r}" if ref.config else ""
        fetch = f"huggingface-cli download --repo-type dataset {ref.hub}" + (f" --revision {ref.revision}" if ref.revision else "")
        super().__init__(f"dataset {ref.hub!r}{cfg}, split {ref.split!r} is not available ({why}); fetch it with "
                         f"`{fetch}` where there is network, or put its files under $FTDOJO_HUB_MIRROR/{ref.hub}/")


def location(ref: HubRef, base: Path | None = None) -> str:
    """The folder, file or hub id ``ref`` resolves to (see the module docstring)."""
    p = Path(ref.hub).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    if p.exists():
        return str(p.resolve())
    mirror = os.environ.get("FTDOJO_HUB_MIRROR")
    if mirror and (Path(mirror) / ref.hub).is_dir():
        return str((Path(mirror) / ref.hub).resolve())
    return ref.hub


def identity(ref: HubRef, base: Path | None = None) -> str:
    """What defines the rows' bytes, cheaply: the reference, and for a local folder or file each
    file's path, size and modification time (a hub id is as exact as its pinned revision)."""
    where = location(ref, base)
    parts: list[Any] = [ref.model_dump(), ref.hub if where == ref.hub else ""]
    p = Path(where)
    if p.exists():
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and ".git" not in f.parts)
        parts += [(str(f.relative_to(p.parent)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def describe(ref: HubRef) -> str:
    """One line for listings: ``org/name (config, split, @revision)``."""
    cfg = "+".join(ref.config) if isinstance(ref.config, list) else ref.config
    files = ",".join(ref.data_files) if isinstance(ref.data_files, list) else ref.data_files
    bits = [b for b in (cfg, ref.data_dir, files if ref.per_file else None, ref.split, f"@{ref.revision}" if ref.revision else None) if b]
    return f"{ref.hub} ({', '.join(bits)})"


def rows(ref: HubRef, base: Path | None = None, where: str = "", field: str = "") -> list[dict[str, Any]]:
    """The split's rows as plain Python values (a streamed prefix when ``max_rows`` is set), filtered
    by ``where``, JSON columns parsed."""
    if isinstance(ref.config, list):
        out = []
        for c in ref.config:
            out += [{**r, "_config": c} for r in rows(ref.model_copy(update={"config": c}), base, where, field)]
        return out
    got = _per_file(ref, base, where, field) if ref.per_file else _rows(ref, base, where, field)
    for c in ref.json_columns:
        for r in got:
            if isinstance(r.get(c), str):
                try:
                    r[c] = json.loads(r[c])
                except ValueError:
                    raise ConfigError(where, f"{field}.json_columns", f"column {c!r} holds text that is not JSON") from None
    return [r for r in got if _keep(ref, r)] if ref.where else got


def _keep(ref: HubRef, row: dict[str, Any]) -> bool:
    """Whether a row passes the reference's ``where`` filter."""
    return all(str(row.get(k)) in ({v} if isinstance(v, str) else set(v)) for k, v in ref.where.items())


def _per_file(ref: HubRef, base: Path | None, where: str, field: str) -> list[dict[str, Any]]:
    """Each matched file's rows in turn, tagged with the file's stem."""
    patterns = [ref.data_files] if isinstance(ref.data_files, str) else list(ref.data_files or [])
    target = location(ref, base)
    if Path(target).is_dir():
        folder = Path(target)
    else:  # a hub id: the repository's matching files, from the local cache when offline
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(ref.hub, repo_type="dataset", revision=ref.revision, allow_patterns=patterns))
        except Exception as e:  # noqa: BLE001 - huggingface_hub raises its own hierarchy (LocalEntryNotFoundError, ...)
            raise DatasetUnavailable(ref, (str(e).splitlines() or [type(e).__name__])[0][:200]) from None
    files = sorted({f for p in patterns for f in folder.glob(p) if f.is_file()})
    if not files:
        raise ConfigError(where or f"dataset {ref.hub}", f"{field}.data_files" if field else "data_files",
                          f"no file of {folder} matches {', '.join(patterns)}")
    one = {"per_file": False, "data_files": None, "config": None, "data_dir": None}
    return [{**r, "_file": f.stem} for f in files for r in _rows(ref.model_copy(update={**one, "hub": str(f)}), None, where, field)]


def _rows(ref: HubRef, base: Path | None, where: str, field: str) -> list[dict[str, Any]]:
    import datasets

    where = where or f"dataset {ref.hub}"
    datasets.disable_progress_bars()
    target = location(ref, base)
    p = Path(target)
    kwargs: dict[str, Any] = {"split": ref.split, "revision": ref.revision}
    if p.is_file():  # a data file: its builder by suffix
        builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(p.suffix)
        if builder is None:
            raise ConfigError(where, field, f"{p.name}: use a .jsonl, .json, .csv or .parquet file, or a dataset folder")
        args: tuple[Any, ...] = (builder,)
        kwargs["data_files"] = {ref.split: str(p)}
    else:
        args = (target, ref.config) if ref.config else (target,)
        if ref.data_files is not None:
            kwargs["data_files"] = ref.data_files
        if ref.data_dir is not None:
            kwargs["data_dir"] = ref.data_dir
    try:
        if ref.max_rows is not None:
            stream = datasets.load_dataset(*args, streaming=True, **kwargs)
            if ref.where:  # the cap counts kept rows
                stream = stream.filter(lambda r: _keep(ref, r))
            return [dict(r) for _, r in zip(range(ref.max_rows), stream)]
        return datasets.load_dataset(*args, **kwargs).to_list()
    except ValueError as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "BuilderConfig" in text or "Unknown split" in text or "split" in text.lower():
            name = "config" if "BuilderConfig" in text else "split"
            raise ConfigError(where, f"{field}.{name}" if field else name, text) from None
        raise DatasetUnavailable(ref, text) from None
    except (ConnectionError, FileNotFoundError, OSError) as e:
        raise DatasetUnavailable(ref, (str(e).splitlines() or [type(e).__name__])[0][:200]) from None
    except Exception as e:  # noqa: BLE001 - datasets raises its own hierarchy (DatasetNotFoundError, ...)
        if type(e).__module__.startswith(("datasets", "huggingface_hub")):
            raise DatasetUnavailable(ref, (str(e).splitlines() or [type(e).__name__])[0][:200]) from None
        raise
