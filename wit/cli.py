"""The ``wit`` command: one front for every stage.

    wit --help | --version
    wit queries --wiki DUMP --out DIR   build the query list (query_list.build)
    wit curate --pool GLOB --queries metadata.json --out DIR   match and balance (pipeline.curate)
    wit crawl --urls GLOB --out DIR  images into webdataset shards (pipeline.crawl)
    wit dedup index --name NAME --images DIR --out INDEX   index an evaluation set (dedup.index)
    wit dedup audit --shards GLOB --index INDEX --out DIR   overlap report, clean shards (dedup.audit)
    wit train --train-data PATTERN --out DIR [--model NAME]   train (trainer.train; torchrun for DDP)
    wit tokenizer train --captions GLOB --out DIR   a BPE vocabulary from our captions
    wit eval zeroshot --checkpoint DIR --images DIR --labels TSV --classnames JSON
    wit demo [--fast]               the whole chain on a generated world, with a report
    wit doctor                      check this machine and print fixes

Each stage adds its subcommand here as it lands. Stage subcommands that are Beam jobs hand
their arguments to the job module's ``run(argv)`` untouched, so ``wit queries ...`` and
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


COMMANDS: dict[str, Command] = {
    "queries": Command("build the query list from a Wikipedia dump, page views and WordNet (Beam job)",
                       "query_list.build", arguments=None, entry="run", passthrough=True),
    "curate": Command("extract, clean, match and balance candidate pairs (Beam job)",
                      "pipeline.curate", arguments=None, entry="run", passthrough=True),
    "crawl": Command("download the images of a url list into webdataset shards (Beam job)",
                     "pipeline.crawl", arguments=None, entry="run", passthrough=True),
    "dedup": Command("evaluation-set near-duplicates: `wit dedup index` and `wit dedup audit` (Beam jobs)",
                     "dedup.cli", arguments=None, entry="run", passthrough=True),
    "train": Command("train CLIP on webdataset shards (= torchrun -m trainer.train); --list-models",
                     "trainer.train", arguments=None, entry="main", passthrough=True),
    "tokenizer": Command("train a byte-level BPE vocabulary from captions (`wit tokenizer train`)",
                         "trainer.tokenizer"),
    "eval": Command("evaluate a model: `wit eval zeroshot` (prompt-template zero-shot classification)",
                    "trainer.zeroshot"),
    "demo": Command("run the whole chain on a generated local world and write a report (`wit demo --fast`)",
                    "wit.demo"),
    "doctor": Command("check versions, the local Beam runner, WordNet, GCS access and disk; print fixes", "wit.doctor"),
}


def _version() -> str:
    from core import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations anywhere: with them `--cap strict` was taken for `--caption-col strict`.
    parser = argparse.ArgumentParser(
        prog="wit",
        description="wit: CLIP's WIT data engine and trainer (query list -> curation -> crawl -> dedup -> training).",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"wit {_version()}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default INFO; env WIT_LOG_LEVEL)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
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


def main(argv: Sequence[str] | None = None) -> int:
    from core.logs import setup_logging

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
        return int(entry(argv[position + 1:]) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(entry(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
