"""One logging set-up for the CLI, the Beam jobs and the trainer.

Levels come from ``--log-level`` / ``-q`` / ``-v`` on the command line or ``WIT_LOG_LEVEL``;
tests set ``WIT_QUIET=1`` so only warnings reach the terminal. Progress bars (tqdm) go to
stderr, are drawn only on a terminal, and are switched off by ``WIT_QUIET`` or
``WIT_PROGRESS=0``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"

# Libraries that are chatty at INFO and say nothing a wit user needs.
_NOISY = (
    "apache_beam",
    "faiss",
    "google",
    "urllib3",
    "gcsfs",
    "fsspec",
    "matplotlib",
    "PIL",
    "asyncio",
    "werkzeug",
    "filelock",
)


def quiet_mode() -> bool:
    return os.environ.get("WIT_QUIET", "") not in ("", "0", "false")


def resolve_level(level: str | int | None = None, verbose: int = 0, quiet: bool = False) -> int:
    """Turn the command-line and environment settings into one numeric level."""
    if level is None:
        level = os.environ.get("WIT_LOG_LEVEL") or ("WARNING" if quiet_mode() else "INFO")
    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
        level = numeric
    level -= 10 * verbose
    if quiet:
        level = max(level, logging.WARNING)
    return max(logging.DEBUG, min(level, logging.CRITICAL))


# Warnings Beam's local runner relays from every worker process at its start, about nothing a
# user can act on (wit registers no schemas or logical types).
_KNOWN_NOISE = ("No semi_persistent_directory found",)


def _drop_known_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in _KNOWN_NOISE)


def setup_logging(level: str | int | None = None, verbose: int = 0, quiet: bool = False) -> int:
    """Configure the root logger once (idempotent); returns the level in force."""
    numeric = resolve_level(level, verbose, quiet)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_wit", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._wit = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        handler.addFilter(_drop_known_noise)
        root.addHandler(handler)
    root.setLevel(numeric)
    noisy_level = logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
    for name in _NOISY:
        logging.getLogger(name).setLevel(noisy_level)
    return numeric


def progress_enabled() -> bool:
    if quiet_mode() or os.environ.get("WIT_PROGRESS", "1") in ("0", "false"):
        return False
    return sys.stderr.isatty() or os.environ.get("WIT_PROGRESS") == "1"


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A tqdm bar for a long local step; a plain pass-through when bars are off."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False)
