"""Each job's typed config is the single source of its flags, Flex Template parameters and docs
table (core.config), and core.jobs is the one registry every front reads."""

from __future__ import annotations

import argparse
import ast
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core import config
from core.config import group, opt, option
from core.jobs import JOBS, by_template, under

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {  # the fewest flags that make each job's line valid
    "queries": ["--wiki", "d.xml", "--out", "o"],
    "curate": ["--pool", "p.tsv", "--queries", "q.json", "--out", "o"],
    "crawl": ["--urls", "u.parquet", "--out", "o"],
    "dedup_index": ["--name", "x", "--images", "d", "--out", "o"],
    "dedup_audit": ["--shards", "s", "--index", "i", "--out", "o"],
}
DIRECT = {  # the same configs built directly, as tests and the demo do
    "queries": dict(wiki=["d.xml"], out="o"),
    "curate": dict(pool=["p.tsv"], queries="q.json", out="o"),
    "crawl": dict(urls=["u.parquet"], out="o"),
    "dedup_index": dict(name="x", images=["d"], out="o"),
    "dedup_audit": dict(shards=["s"], indexes=["i"], out="o"),
}


def test_the_checked_in_flex_metadata_and_flags_doc_are_generated_from_the_configs():
    from wit import generated

    assert generated.stale() == [], "run python -m wit.generated"
    assert {f"infra/dataflow/flex/{job.template}.metadata.json" for job in JOBS} | {"docs/flags.md"} \
        == set(generated.expected())


@pytest.mark.parametrize("template", list(REQUIRED))
def test_flag_defaults_are_the_config_defaults(template):
    """Parsing only the required flags gives the config built directly: no default is written twice."""
    cls = by_template(template).config_class()
    assert config.parse_config(cls, REQUIRED[template]) == cls(**DIRECT[template])


@pytest.mark.parametrize("template", list(REQUIRED))
def test_missing_required_flags_are_named(template, capsys):
    job = by_template(template)
    required = [flag.names[0] for flag in config.flags_of(job.config_class()) if flag.required]
    with pytest.raises(SystemExit) as stopped:
        job.load().run([])
    assert stopped.value.code == 2
    assert f"{' and '.join(required)} {'is' if len(required) == 1 else 'are'} required" in capsys.readouterr().err


def test_job_modules_write_no_flag_by_hand():
    """Flags come from config field metadata alone: no add_argument call, no PipelineOptions class."""
    for job in JOBS:
        path = ROOT / (job.module.replace(".", "/") + ".py")
        calls = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"]
        assert calls == [], (job.module, calls)
        assert "PipelineOptions)" not in path.read_text(), job.module
    import core.beam

    assert not hasattr(core.beam, "TolerantParser")


def test_one_registry_feeds_the_cli_the_dedup_group_and_the_flex_launcher():
    from dedup import cli as dedup_cli
    from wit import cli

    for job in JOBS:
        command = cli.COMMANDS[job.command[0]]
        assert command.passthrough and command.module == (job.module if len(job.command) == 1 else "dedup.cli")
    assert {name: job.module for name, job in dedup_cli.JOBS.items()} == {"index": "dedup.index",
                                                                        "audit": "dedup.audit"}
    assert under("dedup") == dedup_cli.JOBS
    for name in ("train", "tokenizer", "eval", "demo", "doctor"):  # the other commands stay
        assert name in cli.COMMANDS
    with pytest.raises(KeyError, match="no job 'nope'"):
        by_template("nope")


# -- the machinery on a small config ------------------------------------------------------------
@dataclass
class Inner:
    size_bytes: int = 3_000_000
    mode: str = "a"
    hidden: float = 0.5  # not a flag: keeps its default


@dataclass
class Example:
    paths: list[str] = option(metavar="GLOB", gcs=True, help="inputs; repeatable")
    out: str = option(help="output")
    level: float = option(1.0, help="a float")
    loud: bool = option(False, help="a switch")
    checks: bool = option(True, flag="--no-checks", help="a negated switch")
    note: str | None = option(None, flag="--comment", aliases=("--remark",), help="text")
    inner: Inner = group(Inner, size_bytes=opt("megabytes", flag="--size-mb", shown=lambda b: b // 1_000_000,
                                                parse=lambda mb: mb * 1_000_000),
                         mode=opt("mode", choices=("a", "b"), template=False))
    tags: tuple[str, ...] = option((), flag="--tag", help="repeatable tuple")
    internal: int = 7
    extra: list[int] = field(default_factory=list)


def test_the_machinery_types_switches_repeats_groups_and_conversions():
    parsed = config.parse_config(Example, ["--paths", "a", "--paths", "b", "--out", "o", "--level", "2.5", "--loud",
                                           "--no-checks", "--remark", "hi", "--size-mb", "5", "--mode", "b",
                                           "--tag", "x"])
    assert parsed == Example(paths=["a", "b"], out="o", level=2.5, loud=True, checks=False, note="hi",
                             inner=Inner(size_bytes=5_000_000, mode="b"), tags=("x",))
    assert config.parse_config(Example, ["--paths", "a", "--out", "o"]) == Example(paths=["a"], out="o")
    parser = argparse.ArgumentParser(allow_abbrev=False)
    config.add_arguments(parser, Example)
    assert parser.get_default("size_mb") == 3 and parser.get_default("no_checks") is True
    with pytest.raises(SystemExit):
        config.parse_config(Example, ["--paths", "a", "--out", "o", "--mode", "c"])  # not a choice
    with pytest.raises(SystemExit):
        config.parse_config(Example, ["--paths", "a", "--out", "o", "--level", "high"])  # not a float
    with pytest.raises(ValueError, match="--paths and --out are required"):
        config.config_from_args(Example, parser.parse_args([]))


def test_the_template_and_the_table_come_from_the_same_fields():
    document = config.template_metadata(Example, "example", "text")
    names = [p["name"] for p in document["parameters"]]
    assert names == ["paths", "out", "level", "loud", "no_checks", "comment", "size_mb", "tag"]  # mode: local only
    first = document["parameters"][0]
    assert first["isOptional"] is False and first["regexes"] == [config.GCS_REGEX]
    assert first["helpText"] == "inputs; repeatable"
    table = config.flags_table(Example)
    assert "| `--comment`, `--remark` |  | text |" in table and "| `--size-mb` | 3 | megabytes |" in table
    assert "| `--mode` | a | mode (a, b) |" in table


def test_a_true_switch_needs_a_negative_flag():
    @dataclass
    class Bad:
        checks: bool = option(True, help="on by default")

    with pytest.raises(TypeError, match="--no-"):
        config.flags_of(Bad)


def test_every_job_imports_its_config_class():
    for job in JOBS:
        assert isinstance(getattr(importlib.import_module(job.module), job.config), type)


def test_the_app_joins_the_model_evaluation_to_the_audit_only_when_asked():
    from wit import cli

    argv = ["audit", "--shards", "s", "--index", "ix", "--out", "o"]
    assert cli.joined("dedup", argv) == argv  # no --checkpoint: the job's argv as it is, no model loaded
    assert cli.joined("crawl", ["--checkpoint", "m"]) == ["--checkpoint", "m"]
    with pytest.raises(SystemExit):
        cli.joined("dedup", [*argv, "--task", "cifar10"])  # model flags without a model


SAMPLES = {  # flags whose values are checked or read: a value they accept
    "--allow-network": ["127.0.0.0/8", "10.1.0.0/16"], "--resolve": ["img.example=127.0.0.2"],
    "--max-decode-mb": "300", "--max-per-query": "900", "--resize-mode": "border",
    "--set": ["other=d2,d3"], "--set-labels": ["other=l.tsv"],
}


def _other_value(flag: config.Flag) -> list[str]:
    """Flag tokens for a value that is not the flag's default (what a user might type)."""
    name = flag.names[0]
    if name in SAMPLES:
        sample = SAMPLES[name]
        return [token for value in ([sample] if isinstance(sample, str) else sample) for token in (name, value)]
    if flag.kind == "switch":
        return [name]
    if flag.kind == "repeat":
        return [name, "first", name, "second"]
    if flag.opt.choices:
        return [name, str(next(c for c in flag.opt.choices if c != flag.flag_default))]
    default = flag.flag_default
    if flag.type is int:
        return [name, str((default or 0) + 1)]
    if flag.type is float:
        return [name, "3.5" if default in (None, float("inf")) else str(default + 0.25)]
    return [name, f"value-of-{name[2:]}"]


@pytest.mark.parametrize("template", list(REQUIRED))
def test_every_flag_round_trips_through_a_config_built_in_code(template, tmp_path, monkeypatch):
    """to_argv writes the command line of a config built in code: every flag set to a value other
    than its default comes back equal through the parser, and defaults are left out."""
    monkeypatch.chdir(tmp_path)
    Path("value-of-sets").write_text("- {name: third, images: [d4]}\n")  # --sets is read when the config is made
    cls = by_template(template).config_class()
    pairs = lambda argv: sorted(zip(argv[::2], argv[1::2]))  # noqa: E731 - flag, value
    assert pairs(config.to_argv(cls(**DIRECT[template]))) == pairs(REQUIRED[template])  # defaults left out
    skipped = {"--ca-bundle"}  # holds the file's certificates, not its path: see the next test
    argv = list(REQUIRED[template])
    for flag in config.flags_of(cls):
        if not flag.required and flag.names[0] not in skipped:
            argv += _other_value(flag)
    built = config.parse_config(cls, argv)
    assert config.parse_config(cls, config.to_argv(built)) == built
    assert config.to_argv(config.parse_config(cls, config.to_argv(built))) == config.to_argv(built)


def test_a_field_read_from_a_file_cannot_be_written_back(tmp_path):
    from pipeline.crawl import CrawlConfig
    from wit.testing.tls import TestCA

    pem = TestCA(tmp_path / "ca").ca_file
    built = config.parse_config(CrawlConfig, ["--urls", "u", "--out", "o", "--ca-bundle", str(pem)])
    with pytest.raises(ValueError, match="--ca-bundle: .* give --ca-bundle on the command line"):
        config.to_argv(built)


def test_a_job_runs_from_a_config_built_in_code(tmp_path):
    from core.jobs import by_command
    from dedup.index import IndexConfig
    from wit.testing.photos import web_photos

    images = tmp_path / "eval"
    web_photos(images, 3, short_side=160)
    job = by_command("dedup", "index")
    built = IndexConfig(name="mine", images=[str(images)], out=str(tmp_path / "index"))
    assert job.command_line(built) == f"wit dedup index --out {tmp_path / 'index'} --name mine --images {images}"
    assert job.run_config(built, ("--direct_num_workers", "1")) is built
    assert (tmp_path / "index").is_dir() and any((tmp_path / "index").iterdir())
    with pytest.raises(TypeError, match="runs a IndexConfig, not a CrawlConfig"):
        by_command("dedup", "index").run_config(by_template("crawl").config_class()(urls=["u"], out="o"))
    with pytest.raises(ValueError, match="unrecognized Beam arguments: --colour"):
        job.run_config(built, ("--colour", "red"))
    with pytest.raises(KeyError, match="no job `wit dedup scrub`"):
        by_command("dedup", "scrub")
