"""``wit dedup index ...`` and ``wit dedup audit ...``: each hands its arguments to its job."""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

JOBS = {"index": ("dedup.index", "index an evaluation set (image folders, globs or webdataset shards)"),
        "audit": ("dedup.audit", "find evaluation-set near-duplicates in shards; report; write clean shards")}


def run(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in JOBS:
        lines = "\n".join(f"  wit dedup {name:6s} {text}" for name, (_, text) in JOBS.items())
        print(f"usage: wit dedup {{index,audit}} [options]\n\n{lines}\n\nEach takes --help.")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(JOBS[argv[0]][0]).run(argv[1:])
