"""The detector of an earlier commit, importable beside today's: the dedup benchmarks' baseline.

``load(ref, folder)`` writes ``git show REF:dedup/*.py`` into ``folder/dedup_baseline/`` with its
imports renamed, and imports it; nothing of it is kept in the repository. The default ref is the
last commit with the 46-view / 6 x 500 ORB detector (index format ``wit-dedup-index/1``).
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

BASELINE_REF = "a84e937"
ROOT = Path(__file__).resolve().parent.parent
# modules that moved since the baseline (the layering of issue #22): its imports, pointed at
# today's homes of the same functions; TolerantParser only served its command line, unused here
MOVED = [
    ("from wit.beam import TolerantParser, run_job",
     "from argparse import ArgumentParser as TolerantParser\nfrom core.beam import run_job"),
    ("from wit.storage import", "from core.storage import"),
    ("from wit.logs import", "from core.logs import"),
    ("from wit import __version__", "from core import __version__"),
    ("from query_list.sources import expand", "from core.storage import expand_globs as expand"),
    ("from pipeline.shards import add_member", "from core.shards import add_member"),
    ("from pipeline.shards import member_problem", "from core.shards import member_problem"),
    ("from pipeline import images", "from core import image_header as images"),
]


def write(ref: str, folder: Path) -> Path:
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{ref}:dedup"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    package = folder / "dedup_baseline"
    package.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(["git", "show", f"{ref}:dedup/{name}"], cwd=ROOT, check=True, capture_output=True,
                                  text=True).stdout
            text = re.sub(r"\bfrom dedup\b", "from dedup_baseline", text)
            text = re.sub(r"\bimport dedup\.", "import dedup_baseline.", text)
            text = text.replace('import_module("dedup.', 'import_module("dedup_baseline.')
            for before, after in MOVED:
                text = text.replace(before, after)
            (package / name).write_text(text)
    return folder


def load(ref: str, folder: Path):
    """The baseline package (``dedup_baseline``), written under ``folder`` and imported."""
    write(ref, folder)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module("dedup_baseline")


def modules(folder: Path):
    """(detect, quality, store, audit) of a baseline already written under ``folder``."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return tuple(importlib.import_module(f"dedup_baseline.{name}") for name in ("detect", "quality", "store", "audit"))
