"""One distribution, the design's layout, and pins that agree with the lock."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

from wit.testing.dockerfile import instructions

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



def test_the_images_copy_every_package_and_only_what_exists():
    """Docker cannot run here: the images are checked as text. Each COPY source exists, and the
    images that install wit copy every package the distribution holds."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    for name in ("infra/Dockerfile", "infra/dataflow/Dockerfile", "infra/dataflow/flex/Dockerfile",
                 "infra/trainer/Dockerfile"):
        copied = set()
        for keyword, arguments in instructions(ROOT / name):
            if keyword == "COPY" and not arguments.startswith("--from"):
                *sources, _ = arguments.split()
                for source in sources:
                    assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
                    copied.add(source.rstrip("/"))
        assert packages <= copied, f"{name}: does not copy {sorted(packages - copied)}"


def test_the_whole_tool_image_is_the_readme_install_and_passes_doctor():
    steps = instructions(ROOT / "infra" / "Dockerfile")
    (base,) = [a for k, a in steps if k == "FROM"]
    assert base.startswith("python:3.11-")  # the Python the pins are measured on
    runs = [a for k, a in steps if k == "RUN"]
    (install,) = [r for r in runs if r.startswith("pip install")]
    readme = (ROOT / "README.md").read_text()
    assert f"`{install}`" in readme and "pip install -c constraints.txt ." in readme  # the same line as documented
    assert any("wordnet-base" in r for r in runs)
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    doctor = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "wit doctor" in a]
    assert doctor and doctor[-1] > max(i for i, (k, _) in enumerate(steps) if k == "USER")  # as the runtime user
    assert ("ENTRYPOINT", '["wit"]') in steps
    assert "infra/Dockerfile" in (ROOT / "docs" / "runbook.md").read_text().split("## 1.")[0]

