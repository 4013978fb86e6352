"""Where the real public data for tests and benchmarks lies: ``$WIT_SHARED_DATA`` or
``../shared/data`` beside the checkout. It is never copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """The shared data folder, or None when this machine has none."""
    explicit = os.environ.get("WIT_SHARED_DATA")
    candidates = [Path(explicit)] if explicit else [REPO_ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if (candidate / "README.md").is_file():
            return candidate
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
