"""The layers (docs/development.md, "Layers"): core under the stages under the app, no import
cycles inside a package. The contracts live in .importlinter; import-linter checks them on the
real import graph of the source tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), str(ROOT / ".importlinter"), "--no-cache", "--no-logo"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_core_imports_nothing_above_it_at_run_time():
    # The contract reads the source; this checks what importing core really pulls in.
    code = ("import sys, core, core.storage, core.logs, core.shards, core.image_header, core.beam; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'query_list', 'pipeline', 'dedup', 'trainer', 'wit'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
