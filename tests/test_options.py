"""Options: no abbreviations, no unknown flags, for every command.

``wit curate ... --cap strict`` was once taken for ``--caption-col strict`` (argparse's prefix
matching, through ``parse_known_args``); the job then read every caption as empty and exited 0.
Every parser now refuses prefixes, and a flag that neither the job nor Beam knows is an error.
"""

from __future__ import annotations

import ast
import argparse
from pathlib import Path

import pytest

from wit import cli
from core.beam import split_args

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wit", "pipeline", "query_list", "dedup", "trainer", "infra", "benchmarks")

# Each command: arguments that make its line valid, then a prefix of one of its own flags
# (which argparse would have expanded).
COMMANDS = {
    ("curate",): (["--pool", "p.tsv", "--queries", "q.json", "--out", "o"], ["--capt", "strict"]),
    ("queries",): (["--wiki", "dump.xml", "--out", "o"], ["--min-c", "5"]),
    ("crawl",): (["--urls", "u.parquet", "--out", "o"], ["--allow-private"]),
    ("dedup", "index"): (["--name", "x", "--images", "d", "--out", "o"], ["--lab", "l.tsv"]),
    ("dedup", "audit"): (["--shards", "s", "--index", "i", "--out", "o"], ["--write-c", "c"]),
    ("train",): (["--train-data", "x", "--out", "o"], ["--save-e", "5"]),
    ("tokenizer", "train"): (["--captions", "x", "--out", "o"], ["--vocab", "500"]),
    ("eval", "zeroshot"): (["--checkpoint", "c", "--images", "i", "--labels", "l", "--classnames", "n"],
                           ["--templ", "t"]),
    ("demo",): ([], ["--fas"]),
    ("doctor",): ([], ["--stric"]),
}


def exit_code_and_error(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_a_prefix_of_a_flag_or_an_unknown_flag_is_an_error(command, capsys):
    valid, prefix = COMMANDS[command]
    code, error = exit_code_and_error([*command, *valid, *prefix], capsys)
    assert code == 2 and f"unrecognized arguments: {prefix[0]}" in error, error
    code, error = exit_code_and_error([*command, *valid, "--no-such-flag", "1"], capsys)
    assert code == 2 and "unrecognized arguments: --no-such-flag" in error, error


def test_the_top_level_takes_no_prefix_and_no_unknown_flag(capsys):
    assert exit_code_and_error(["--log-l", "DEBUG", "doctor"], capsys)[0] == 2
    code, error = exit_code_and_error(["--no-such-flag", "curate", "--pool", "p"], capsys)
    assert code == 2 and "--no-such-flag" in error


def test_beam_flags_pass_and_their_prefixes_do_not():
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--caption-col", default="caption")
    args, beam_args = split_args(parser, ["--caption-col", "TEXT", "--direct_num_workers", "2",
                                          "--runner=DirectRunner"])
    assert args.caption_col == "TEXT" and beam_args == ["--direct_num_workers", "2", "--runner=DirectRunner"]
    with pytest.raises(SystemExit):
        split_args(parser, ["--direct_num", "2"])
    with pytest.raises(SystemExit):
        split_args(parser, ["stray"])  # a value no flag takes
    with pytest.raises(ValueError, match="allow_abbrev=False"):
        split_args(argparse.ArgumentParser(), [])


def parser_calls_taking_prefixes(path: Path) -> list[int]:
    """Lines of ``ArgumentParser(...)`` and ``....add_parser(...)`` calls in ``path`` that do
    not pass ``allow_abbrev=False``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in ("ArgumentParser", "add_parser"):
            continue
        strict = any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant) and k.value.value is False
                     for k in node.keywords)
        if not strict:
            found.append(node.lineno)
    return found


def test_every_parser_refuses_abbreviations():
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 50
    offenders = {str(p.relative_to(ROOT)): lines for p in files if (lines := parser_calls_taking_prefixes(p))}
    assert offenders == {}
