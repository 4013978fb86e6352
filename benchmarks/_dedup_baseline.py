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
