"""The ``wit`` console script and ``wit doctor``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wit import doctor
from wit.doctor import FAIL, OK, WARN, Check

WIT = Path(sys.executable).with_name("wit")


def run_wit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(WIT), *args], capture_output=True, text=True, env=full_env, timeout=300)


def test_help_and_version():
    from core import __version__

    help_out = run_wit("--help")
    assert help_out.returncode == 0 and "doctor" in help_out.stdout
    version = run_wit("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"wit {__version__}"
    assert __version__ != "0+unknown"


def test_no_command_prints_help_and_fails():
    result = run_wit()
    assert result.returncode == 2 and "usage: wit" in result.stdout


def test_unknown_flag_is_rejected():
    result = run_wit("doctor", "--no-such-flag")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


@pytest.fixture
def wordnet_dir():
    from query_list.wordnet import find_wordnet_dir

    return find_wordnet_dir()


def test_doctor_passes_on_this_machine(wordnet_dir, tmp_path):
    result = run_wit("doctor", "--json", "--disk-path", str(tmp_path), env={"STORAGE_EMULATOR_HOST": ""})
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.returncode == 0, result.stdout
    for name in ("python", "torch", "apache-beam", "img2dataset", "webdataset", "imagededup", "gcsfs"):
        assert checks[name]["status"] in (OK, WARN), checks[name]
    assert checks["clip vocabulary"]["status"] == OK and "49408 tokens" in checks["clip vocabulary"]["detail"]
    import torch

    assert checks["torch"]["detail"] == torch.__version__.split("+")[0] or checks["torch"]["detail"].startswith(torch.__version__.split("+")[0])
    assert checks["beam local runner"]["status"] == OK
    assert "FnApiRunner" in checks["beam local runner"]["detail"]
    assert checks["wordnet"]["status"] == OK and checks["wordnet"]["detail"] == str(wordnet_dir)


def test_doctor_fails_on_an_empty_wordnet_folder(tmp_path):
    empty = tmp_path / "wordnet"
    empty.mkdir()
    result = run_wit("doctor", "--wordnet", str(empty))
    assert result.returncode == 1
    row = next(line for line in result.stdout.splitlines() if line.startswith("wordnet"))
    assert "FAIL" in row and "lacks data.noun" in row
    assert "to fix:" in result.stdout and "apt-get install wordnet-base" in result.stdout


def test_doctor_reports_an_unreachable_emulator(tmp_path):
    from wit.testing import free_port

    result = run_wit("doctor", "--json", env={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"})
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.returncode == 1
    assert checks["gcs"]["status"] == FAIL and "unreachable" in checks["gcs"]["detail"]
    assert "gcp-storage-emulator start" in checks["gcs"]["fix"]


def test_doctor_sees_a_running_emulator(gcs):
    check = doctor.check_gcs(require=True)
    assert check.status == OK and gcs.endpoint in check.detail


def test_gcs_without_credentials_warns_unless_required(monkeypatch, tmp_path):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    assert doctor.check_gcs(require=False).status == WARN
    assert doctor.check_gcs(require=True).status == FAIL
    (tmp_path / "application_default_credentials.json").write_text("{}")
    assert doctor.check_gcs(require=True).status == OK


def test_disk_thresholds(tmp_path):
    free_gb = shutil.disk_usage(tmp_path).free / 1e9
    assert doctor.check_disk(str(tmp_path), 0.0, 0.0).status == OK
    assert doctor.check_disk(str(tmp_path), 0.0, free_gb * 10).status == WARN
    failing = doctor.check_disk(str(tmp_path / "not" / "yet"), free_gb * 10, free_gb * 20)
    assert failing.status == FAIL and failing.fix


def test_missing_package_fails_with_fix():
    check = doctor.check_package("no-such-dist-wit", "no_such_module", {})
    assert check.status == FAIL and "make install" in check.fix


def test_version_mismatch_warns():
    check = doctor.check_package("pyarrow", "pyarrow", {"pyarrow": "0.0.1"})
    assert check.status == WARN and "pinned 0.0.1" in check.detail


def test_exit_code_and_table():
    checks = [Check("a", OK, "fine"), Check("b", WARN, "meh", "do x")]
    assert doctor.exit_code(checks, strict=False) == 0
    assert doctor.exit_code(checks, strict=True) == 1
    assert doctor.exit_code(checks + [Check("c", FAIL, "bad", "do y")], strict=False) == 1
    table = doctor.format_table(checks)
    assert "WARN" in table and "b: do x" in table
