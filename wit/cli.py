"""The ``wit`` command: one front for every stage.

    wit --help | --version
    wit queries --wiki DUMP --out DIR   build the query list (query_list.build)
    wit curate --pool GLOB --queries metadata.json --out DIR   match and balance (pipeline.curate)
    wit crawl --urls GLOB --out DIR  images into webdataset shards (pipeline.crawl)
    wit dedup index --name NAME --images DIR --out INDEX   index an evaluation set (dedup.index)
    wit dedup audit --shards GLOB --index INDEX --out DIR [--checkpoint MODEL]   overlap report, clean
                                    shards (dedup.audit; with a model, its top-1 on All/Clean/Overlap)
    wit train --train-data PATTERN --out DIR [--model NAME | --init MODEL]   train (trainer.train; torchrun for DDP)
    wit tokenizer train --captions GLOB --out DIR   a BPE vocabulary from our captions
    wit eval suite --checkpoint MODEL --tasks TASKS.yaml|NAME,... --data-root DIR --out DIR   CLIP's evaluation
    wit eval zeroshot|linear-probe|retrieval|audit-items ...   the single-task commands
    wit export --format open_clip MODEL OUT   a model for OpenCLIP
    wit import --from open_clip|openai FILE OUT   OpenCLIP / OpenAI weights as a wit model folder
    wit demo [--fast]               the whole chain on a generated world, with a report
    wit doctor                      check this machine and print fixes

The Beam jobs come from the one job registry, core/jobs.py (which `wit dedup`, the Flex
Template launcher and the generated docs/flags.md read too); other commands are listed here.
Stage subcommands that are Beam jobs hand their arguments to the job module's ``run(argv)`` untouched
(but for what only the app may join: :func:`joined`), so ``wit queries ...`` and
``python -m query_list.build ...`` take the same flags, Beam and Dataflow ones included.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

# Library update checks reach for the internet at import time; a wit run never should.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@dataclass(frozen=True)
class Command:
    """A subcommand: either parsed here (``arguments`` + ``main``) or handed to a job's ``run``."""

    help: str
    module: str
    arguments: str | None = "add_arguments"  # module function that adds argparse arguments
    entry: str = "main"  # module function: main(namespace) -> int, or run(argv) -> int for jobs
    passthrough: bool = False  # a Beam job parsing its own argv (our flags and Beam's)


def _beam_jobs() -> dict[str, Command]:
    """The Beam jobs, from the one registry (core.jobs): `wit JOB` runs the module's ``run``;
    a group (`wit dedup index|audit`) goes through its own small dispatcher."""
    from core.jobs import GROUPS, JOBS

    commands = {}
    for job in JOBS:
        group = job.command[0]
        if len(job.command) == 1:
            commands[group] = Command(job.help, job.module, arguments=None, entry="run", passthrough=True)
        elif group not in commands:
            commands[group] = Command(GROUPS[group], f"{group}.cli", arguments=None, entry="run", passthrough=True)
    return commands


COMMANDS: dict[str, Command] = {
    **_beam_jobs(),
    "train": Command("train CLIP on webdataset shards (= torchrun -m trainer.train); --list-models",
                     "trainer.train", arguments=None, entry="main", passthrough=True),
    "tokenizer": Command("train a byte-level BPE vocabulary from captions (`wit tokenizer train`)",
                         "trainer.tokenizer"),
    "eval": Command("evaluate a model: `wit eval suite` (zero-shot, retrieval, probes, robustness; one report)",
                    "trainer.evaluation.cli"),
    "export": Command("write a model as an OpenCLIP config + weights (`wit export --format open_clip MODEL OUT`)",
                      "trainer.interop", arguments="add_export_arguments", entry="export_main"),
    "import": Command("an OpenCLIP or OpenAI checkpoint into a model folder (`wit import --from openai FILE OUT`)",
                      "trainer.interop", arguments="add_import_arguments", entry="import_main"),
    "demo": Command("run the whole chain on a generated local world and write a report (`wit demo --fast`)",
                    "wit.demo"),
    "doctor": Command("check versions, the local Beam runner, WordNet, GCS access and disk; print fixes", "wit.doctor"),
}


def _version() -> str:
    from core import __version__

    return __version__


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default INFO; env WIT_LOG_LEVEL)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def choose_allocator(argv: Sequence[str]) -> None:
    """Start this command again with jemalloc preloaded when its job runs on it (the registry's
    ``Job.jemalloc``; core.malloc). Done before the parser is built, which imports the modules
    of the commands parsed here."""
    from core.jobs import starting
    from core.malloc import preload_jemalloc

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_logging_options(parser)
    _, words = parser.parse_known_args(argv)
    job = starting(words)
    if job is not None and job.jemalloc:
        preload_jemalloc()


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations anywhere: with them `--cap strict` was taken for `--caption-col strict`.
    parser = argparse.ArgumentParser(
        prog="wit",
        description="wit: CLIP's WIT data engine and trainer (query list -> curation -> crawl -> dedup -> training).",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"wit {_version()}")
    _add_logging_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        if command.passthrough:
            sub.add_parser(name, help=command.help, add_help=False, allow_abbrev=False)
        else:
            child = sub.add_parser(name, help=command.help, description=command.help, allow_abbrev=False)
            module = importlib.import_module(command.module)
            if command.arguments:
                getattr(module, command.arguments)(child)
    return parser


def joined(command: str, job_argv: list[str]) -> list[str]:
    """What the layers keep apart and only the app may join: `wit dedup audit --checkpoint MODEL`
    first writes the model's per-image zero-shot results on the indexed sets (the trainer's
    evaluation) beside the report, then runs the audit job with ``--zero-shot-items`` (dedup
    imports no trainer code). Returns the job's argv. Only when asked for, as it imports torch."""
    if command != "dedup" or job_argv[:1] != ["audit"]:
        return job_argv
    from trainer.evaluation.cli import add_audit_item_arguments

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_audit_item_arguments(parser, required=False)
    parser.add_argument("--index", dest="indexes", action="append", default=[])
    parser.add_argument("--out", default=None)
    model, rest = parser.parse_known_args(job_argv[1:])
    if model.checkpoint is None:
        if model.classnames or model.templates or model.task:
            parser.error("--classnames/--templates/--task go with --checkpoint")
        return job_argv
    if not model.out or not model.indexes:
        return job_argv  # the job reports what is missing
    from core.storage import join
    from trainer.evaluation.audit import write_audit_items

    items = write_audit_items(join(model.out, "zero_shot_items.json"), model.indexes, model.checkpoint,
                              classnames=model.classnames, templates=model.templates, task=model.task)
    return ["audit", *[arg for pair in (("--index", i) for i in model.indexes) for arg in pair],
            "--out", model.out, *rest, "--zero-shot-items", items]


def main(argv: Sequence[str] | None = None) -> int:
    from core.logs import setup_logging

    if argv is None:  # this process's own command line: its allocator can still be chosen
        choose_allocator(sys.argv[1:])
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(args.log_level, args.verbose, args.quiet)
    command = COMMANDS[args.command]
    module = importlib.import_module(command.module)
    entry: Callable = getattr(module, command.entry)
    if command.passthrough:
        # Everything after the subcommand name goes to the job, which owns its own flags; what
        # comes before it is ours, parsed strictly.
        position = argv.index(args.command)
        parser.parse_args(argv[:position + 1])
        return int(entry(joined(args.command, argv[position + 1:])) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(entry(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
