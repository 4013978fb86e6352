"""The allocator a job's command runs on (core.malloc): the crawl starts again with jemalloc
preloaded when the machine has it, once, and ``WIT_MALLOC=glibc`` keeps the C library's malloc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_jemalloc
from core import malloc
from core.jobs import JOBS, by_command, starting

# A process that asks for jemalloc the way a job's entry point does, then says what it runs on and
# whether it was started again (the restart leaves its mark in the environment).
SCRIPT = ("from core.malloc import preload_jemalloc, allocator; import os, sys; preload_jemalloc(); "
          "print(allocator(), os.environ.get('WIT_MALLOC_PRELOADED', '-'), sys.argv[1:])")


def run_python(script: str, *args: str, **env: str) -> str:
    """``python -c script args``'s output, in this environment less any allocator setting, plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "WIT_MALLOC", "WIT_MALLOC_PRELOADED")}
    result = subprocess.run([sys.executable, "-c", script, *args], env={**environ, **env}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def run_script(*args: str, **env: str) -> list[str]:
    return run_python(SCRIPT, *args, **env).split(maxsplit=2)


def test_the_registry_puts_the_crawl_alone_on_jemalloc():
    assert [job.prog for job in JOBS if job.jemalloc] == ["wit crawl"]
    assert starting(["crawl", "--urls", "x"]) is by_command("crawl")
    assert starting(["dedup", "audit", "--out", "x"]) is by_command("dedup", "audit")
    assert starting(["train", "--out", "x"]) is None and starting([]) is None


def test_a_process_starts_again_on_jemalloc_with_its_arguments():
    require_jemalloc()
    assert run_script("--urls", "a b.parquet") == ["jemalloc", "1", "['--urls', 'a b.parquet']"]


def test_glibc_when_asked_and_no_second_restart():
    require_jemalloc()
    assert run_script(WIT_MALLOC="glibc") == ["system", "-", "[]"]
    # Started once already (the library would not load): it goes on as it is rather than loop.
    assert run_script(WIT_MALLOC_PRELOADED="1") == ["system", "1", "[]"]


def test_a_bad_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WIT_MALLOC", "tcmalloc")
    with pytest.raises(SystemExit, match="WIT_MALLOC='tcmalloc': use jemalloc"):
        malloc.preload_jemalloc()


def test_the_restart_keeps_a_preload_already_asked_for(monkeypatch):
    name = require_jemalloc()
    monkeypatch.delenv("WIT_MALLOC", raising=False)
    argv, environ = malloc.restart_command({"LD_PRELOAD": "libother.so", "PATH": "/bin"})
    assert argv == sys.orig_argv
    assert environ == {"LD_PRELOAD": f"{name} libother.so", "PATH": "/bin", "WIT_MALLOC_PRELOADED": "1",
                       "MALLOC_CONF": "narenas:2", "ARROW_DEFAULT_MEMORY_POOL": "system"}
    # jemalloc's settings and Arrow's pool given by the user are kept.
    assert malloc.restart_command({"MALLOC_CONF": "narenas:4"})[1]["MALLOC_CONF"] == "narenas:4"
    assert malloc.restart_command({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"})[1]["ARROW_DEFAULT_MEMORY_POOL"] == "mimalloc"
    assert malloc.restart_command({"WIT_MALLOC_PRELOADED": "1"}) is None


@pytest.mark.parametrize("words, expected", [(["-q", "crawl", "--urls", "x"], "jemalloc"),
                                             (["--log-level", "INFO", "crawl"], "jemalloc"),
                                             (["train", "--out", "x"], "system"),
                                             (["dedup", "audit"], "system")])
def test_wit_chooses_by_the_command_before_parsing_it(words, expected):
    """`wit` looks at its command line before building its parser (which imports every command's
    module), and starts again only for a job the registry puts on jemalloc."""
    require_jemalloc()
    script = ("import sys; from wit.cli import choose_allocator; choose_allocator(sys.argv[1:]); "
              "from core.malloc import allocator; print(allocator())")
    assert run_python(script, *words) == expected


def test_the_dataflow_image_sets_what_the_local_restart_sets():
    """On Dataflow the SDK image, not our entry point, starts the workers: the same settings."""
    image = (Path(__file__).parent.parent / "infra" / "dataflow" / "Dockerfile").read_text()
    (env,) = [line for line in image.splitlines() if line.startswith("ENV LD_PRELOAD=")]
    assert set(env.split()[1:]) == {"LD_PRELOAD=libjemalloc.so.2", *(f"{k}={v}" for k, v in malloc.SETTINGS.items())}
