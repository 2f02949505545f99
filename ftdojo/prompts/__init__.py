"""Model-facing prompt text, kept as data: loaded by name, hashed into run records."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

_DIR = Path(__file__).parent


@cache
def load(name: str) -> str:
    return (_DIR / f"{name}.md").read_text()


def digest(name: str) -> str:
    return hashlib.sha256(load(name).encode()).hexdigest()[:16]
