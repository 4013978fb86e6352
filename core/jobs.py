"""The one registry of wit's Beam jobs: command, module, config class, template name, help.

``wit`` (wit/cli.py), ``wit dedup`` (dedup/cli.py), the Flex Template launcher
(infra/dataflow/flex/launch.py) and the generated files (``python -m wit.generated``: Flex
metadata and docs/flags.md) all read this table. Modules are named, not imported: core imports
no stage, and a command imports only its own job.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Job:
    command: tuple[str, ...]  # ("crawl",) -> `wit crawl`; ("dedup", "index") -> `wit dedup index`
    module: str  # has run(argv), build_pipeline(pipeline, config) and the config class
    config: str  # the config class's name in ``module``
    template: str  # Flex Template name: infra/dataflow/flex/{template}.metadata.json, WIT_JOB
    help: str
    title: str  # the Flex Template's display name
    jemalloc: bool = False  # its command starts again with jemalloc preloaded (core.malloc)

    @property
    def prog(self) -> str:
        return " ".join(("wit", *self.command))

    def load(self):
        return importlib.import_module(self.module)

    def config_class(self) -> type:
        return getattr(self.load(), self.config)

    def run_config(self, config, beam_args: tuple[str, ...] = ()) -> object:
        """Run this job on a config built in code (:func:`core.beam.run_config`)."""
        from core.beam import run_config

        if not isinstance(config, self.config_class()):
            raise TypeError(f"{self.prog} runs a {self.config}, not a {type(config).__name__}")
        return run_config(config, self.load().build_pipeline, beam_args)

    def command_line(self, config) -> str:
        """What a user types for ``config`` (:func:`core.config.command_line`)."""
        from core.config import command_line

        return command_line(self.prog, config)


JOBS: tuple[Job, ...] = (
    Job(("queries",), "query_list.build", "QueryListConfig", "queries",
        "build the query list from a Wikipedia dump, page views and WordNet (Beam job)", "wit query list"),
    Job(("curate",), "pipeline.curate", "CurateConfig", "curate",
        "extract, clean, match and balance candidate pairs (Beam job)", "wit curate"),
    Job(("crawl",), "pipeline.crawl", "CrawlConfig", "crawl",
        "download the images of a url list into webdataset shards (Beam job)", "wit crawl", jemalloc=True),
    Job(("dedup", "index"), "dedup.index", "IndexConfig", "dedup_index",
        "index an evaluation set (image folders, globs or webdataset shards)", "wit dedup index"),
    Job(("dedup", "audit"), "dedup.audit", "AuditConfig", "dedup_audit",
        "find evaluation-set near-duplicates in shards; report; write clean shards", "wit dedup audit"),
)

GROUPS = {"dedup": "evaluation-set near-duplicates: `wit dedup index` and `wit dedup audit` (Beam jobs)"}


def by_command(*command: str) -> Job:
    """The job of ``wit crawl`` (``by_command("crawl")``) or ``wit dedup audit``."""
    for job in JOBS:
        if job.command == command:
            return job
    raise KeyError(f"no job `wit {' '.join(command)}`; one of {', '.join(job.prog for job in JOBS)}")


def by_module(module: str) -> Job:
    for job in JOBS:
        if job.module == module:
            return job
    raise KeyError(f"no job in module {module!r}; one of {', '.join(job.module for job in JOBS)}")


def starting(words: Sequence[str]) -> Job | None:
    """The job whose command ``words`` start with (``["crawl", "--urls", ...]``), if any."""
    for job in JOBS:
        if tuple(words[:len(job.command)]) == job.command:
            return job
    return None


def by_template(name: str) -> Job:
    for job in JOBS:
        if job.template == name:
            return job
    raise KeyError(f"no job {name!r}; one of {', '.join(job.template for job in JOBS)}")


def under(group: str) -> dict[str, Job]:
    """The jobs of a command group (``dedup``), by subcommand."""
    return {job.command[1]: job for job in JOBS if len(job.command) == 2 and job.command[0] == group}
