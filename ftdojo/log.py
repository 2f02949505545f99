"""Structured event logging (structlog), one JSON or console line per event."""

from __future__ import annotations

import logging
import os
import sys

import structlog

_configured = False


def setup(json_lines: bool | None = None, level: int = logging.INFO) -> None:
    """Configure structlog once per process; JSON when not on a terminal."""
    global _configured
    if _configured:
        return
    if json_lines is None:
        json_lines = not sys.stderr.isatty() or os.environ.get("FTDOJO_LOG_JSON") == "1"
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # sys.stderr as it is when a logger is made, not when logging was set up: a caller that swaps
        # stderr (pytest's capture, a CLI wrapper) and closes it later must not break later lines
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get(name: str, **ctx: object) -> structlog.typing.FilteringBoundLogger:
    setup()
    return structlog.get_logger(name).bind(**ctx)
