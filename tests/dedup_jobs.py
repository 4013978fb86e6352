"""The dedup tests' way to run `wit dedup index` and `wit dedup audit`: configs built in code,
run through the job registry as `wit` runs them (tests/test_dedup.py, tests/test_dedup_scale.py)."""

from __future__ import annotations

from pathlib import Path

from core.jobs import by_command
from dedup.audit import AuditConfig
from dedup.index import IndexConfig

INDEX, AUDIT = by_command("dedup", "index"), by_command("dedup", "audit")


def run_index(config: IndexConfig, *beam_args: str) -> None:
    assert INDEX.run_config(config, beam_args) is config


def audit_config(shards: str | Path, index: str | Path, out: str | Path, **fields) -> AuditConfig:
    """An audit of one shard glob against one index, built in code."""
    return AuditConfig(shards=[str(shards)], indexes=[str(index)], out=str(out), **fields)


def run_audit(config: AuditConfig, *beam_args: str) -> None:
    assert AUDIT.run_config(config, beam_args) is config


def same_files(a: Path, b: Path) -> None:
    """Two job outputs hold the same files with the same bytes."""
    names = sorted(path.relative_to(a) for path in a.rglob("*") if path.is_file())
    assert names and names == sorted(path.relative_to(b) for path in b.rglob("*") if path.is_file())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
