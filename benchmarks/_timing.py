"""Timing a tool's run for the crawl benchmarks: wall seconds and the CPU seconds of its processes."""

from __future__ import annotations

import resource
import subprocess
import time


def timed(command: list[str], **kwargs) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the command's processes, not the server's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
