"""structlog, configured once at start-up: JSON lines for machines, console for a terminal."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

import structlog


def configure_logging(log_format: str = "auto", path: Path | None = None, level: int = logging.INFO) -> None:
    """Configure structlog for the process; with ``path`` the lines go to that file instead of stderr."""
    stream: TextIO = path.open("a", encoding="utf-8") if path else sys.stderr
    renderer: structlog.typing.Processor
    if log_format == "json" or (log_format == "auto" and not stream.isatty()):
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    # aio-pika and aiormq log reconnects through the standard library.
    logging.basicConfig(level=logging.WARNING, stream=stream, format="%(levelname)s %(name)s: %(message)s")
