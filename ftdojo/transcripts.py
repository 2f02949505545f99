"""A run's transcript: every request to a language model and what came back, one ``Exchange`` per line.

The run gathers its actors' exchanges in time order and hashes them into its record
(``RunRecord.transcript_sha256``); the bench writes them beside the record as
``runs/<run>.transcript.jsonl``; ``ftdojo trace`` reads them back and checks the hash, so an audit of why
an agent did what it did reads what the model was actually asked and answered.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ftdojo.datafiles import atomic_write_text
from ftdojo.messages import Exchange


def text(exchanges: list[Exchange]) -> str:
    """The transcript file's content: one JSON object per exchange."""
    return "".join(e.model_dump_json() + "\n" for e in exchanges)


def digest(exchanges: list[Exchange]) -> str:
    return hashlib.sha256(text(exchanges).encode()).hexdigest()


def path_for(record: Path) -> Path:
    """``runs/<run>.json`` -> ``runs/<run>.transcript.jsonl``."""
    return record.with_name(record.name.removesuffix(".json") + ".transcript.jsonl")


def write(record: Path, exchanges: list[Exchange]) -> None:
    """Write the transcript beside ``record`` (before the record itself, so a record never names a missing one)."""
    atomic_write_text(path_for(record), text(exchanges))


def read(record: Path, sha256: str | None) -> tuple[list[Exchange], str]:
    """The exchanges beside ``record`` and whether they are the ones its record hashed
    (``ok``, ``missing`` or ``altered``)."""
    p = path_for(record)
    if not p.exists():
        return [], "missing"
    raw = p.read_text()
    exchanges = [Exchange.model_validate_json(line) for line in raw.splitlines() if line.strip()]
    return exchanges, "ok" if hashlib.sha256(raw.encode()).hexdigest() == sha256 else "altered"
