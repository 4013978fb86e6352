"""The shared-data resolver: found, skipped locally when absent, a failure under CI=true."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from wit.testing.shared_data import shared_data_dir


def test_resolves_the_real_folder(shared_data):
    assert (shared_data / "README.md").is_file()
    assert (shared_data / "wiki" / "xml").is_dir()


def test_env_override(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("x")
    monkeypatch.setenv("WIT_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("WIT_SHARED_DATA", str(tmp_path / "nowhere"))
    assert shared_data_dir() is None


def _run_probe(tmp_path, ci: str) -> subprocess.CompletedProcess:
    """Run a one-test session that asks for shared data while none exists."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(textwrap.dedent("""
        def test_needs_data(shared_data):
            assert shared_data
    """))
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import shared_data  # noqa: F401\n")
    env = {"WIT_SHARED_DATA": str(tmp_path / "absent"), "CI": ci, "PATH": "/usr/bin:/bin", "WIT_QUIET": "1",
           "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(probe)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_absent_data_skips_locally(tmp_path):
    result = _run_probe(tmp_path, ci="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout


def test_absent_data_fails_in_ci(tmp_path):
    result = _run_probe(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "must not skip" in result.stdout
