"""Where ftdojo keeps things outside the repository.

Everything large — converted models, the materialised raw-data repository,
sealed test splits, run workspaces — lives under ``FTDOJO_HOME``
(default ``~/.cache/ftdojo``), never in the source tree.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def home() -> Path:
    return Path(os.environ.get("FTDOJO_HOME", Path.home() / ".cache" / "ftdojo")).expanduser()


def models_dir() -> Path:
    """Converted and tiny models; FTDOJO_MODELS lets tests share one cache across homes."""
    return Path(os.environ.get("FTDOJO_MODELS", home() / "models")).expanduser()


def data_dir() -> Path:
    """The shared raw-data repository and visible splits (agent-readable)."""
    return home() / "data"


def sealed_dir() -> Path:
    """Sealed test splits: read only by the referee, never by agent-facing code."""
    return home() / "sealed"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def code_version() -> str:
    """Hash of the ftdojo, actors and tasks sources: part of every run key."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in ("ftdojo", "actors", "tasks"):
        for p in sorted((root / pkg).rglob("*")):
            if p.suffix in {".py", ".txt", ".md", ".yaml"} and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]
