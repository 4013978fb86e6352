"""``wit dedup index ...`` and ``wit dedup audit ...``: each hands its arguments to its job."""

from __future__ import annotations

import sys
from typing import Sequence

from core.jobs import under

JOBS = under("dedup")  # the registry's dedup jobs, by subcommand


def run(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in JOBS:
        lines = "\n".join(f"  wit dedup {name:6s} {job.help}" for name, job in JOBS.items())
        print(f"usage: wit dedup {{index,audit}} [options]\n\n{lines}\n\nEach takes --help.")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return JOBS[argv[0]].load().run(argv[1:])
