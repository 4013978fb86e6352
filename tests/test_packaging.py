"""One distribution, the design's layout, and pins that agree with the lock."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_direct_pins_are_exact_and_match_the_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    locked = lock()
    for requirement in requirements:
        if requirement.startswith("wit["):
            continue
        name, version = requirement.split("==")
        key = re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()
        assert locked.get(key) == version, f"{requirement} vs constraints.txt {locked.get(key)}"


def test_layout():
    for folder in ("query_list", "pipeline", "dedup", "trainer", "wit"):
        assert (ROOT / folder / "__init__.py").is_file(), folder
    for folder in ("infra", "tests", "benchmarks", "docs"):
        assert (ROOT / folder).is_dir(), folder
    assert (ROOT / "setup.py").is_file() and (ROOT / ".ci" / "run").is_file()


def test_sdist_carries_every_package(tmp_path):
    """Dataflow runs `python setup.py sdist` on --setup_file; the packages must be in it."""
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    (archive,) = tmp_path.glob("wit-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    for package in ("query_list", "pipeline", "dedup", "trainer", "wit"):
        assert any(f"/{package}/__init__.py" in n for n in names), package


def test_ci_script_runs_make_test_strictly():
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script and "CI=true make test" in script
