"""Rows, items and examples on disk: JSONL, CSV and Parquet, written atomically.

The data layer's bottom: it imports nothing of ftdojo, so the repository, the
task registry, user tasks, the curator and the trainer can all use it without
importing each other. Rows are plain column -> value mappings (what a raw
source holds); examples and other protocol models go through ``write_models``
and ``read_models``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

Row = dict[str, str | int | float | None]
"""One row of a raw source: column -> value."""
Item = dict[str, str]
"""One evaluation item: id, input, answer, category."""
Format = Literal["jsonl", "csv", "parquet"]
FORMATS: dict[str, Format] = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}

M = TypeVar("M", bound=BaseModel)


def select(rows: Iterable[dict[str, Any]], where: dict[str, str]) -> list[dict[str, Any]]:
    """The rows whose fields equal ``where``'s values, compared as text (a recipe's and a look-up's ``where``)."""
    return [r for r in rows if all(str(r.get(k)) == v for k, v in where.items())]


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonl(rows: Iterable[Row] | Iterable[Item]) -> str:
    """Rows as JSONL text, keys sorted (same rows, same bytes)."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def write_rows(path: Path, fmt: str, rows: list[Row]) -> None:
    if fmt == "jsonl":
        atomic_write_text(path, jsonl(rows))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(path, buf.getvalue())
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tmp = path.with_suffix(".parquet.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, path)
    else:
        raise ValueError(f"unknown format {fmt}")


def read_rows(path: Path, fmt: str, limit: int | None = None) -> list[Row]:
    if fmt == "jsonl":
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    elif fmt == "csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(path).read().to_pylist()  # not read_table: its dataset layer imports pandas
    else:
        raise ValueError(f"unknown format {fmt}")
    return rows[:limit] if limit is not None else rows


def read_items(path: Path) -> list[Item]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_models(path: Path, models: Iterable[BaseModel]) -> None:
    """One model per JSONL line (training examples)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for m in models:
            f.write(m.model_dump_json() + "\n")


def read_models(path: str | Path, model: type[M]) -> list[M]:
    with open(path) as f:
        return [model.model_validate_json(line) for line in f if line.strip()]
